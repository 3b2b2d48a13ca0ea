"""Serving /metrics with bounds a hostile client cannot stretch.

prometheus-client's own server gives every connection a thread and no deadline: a thousand
silent connections hold a thousand threads and the process's fds. Here one thread waits on
every connection at once and reads each request with a deadline; only a complete request
reaches one of a few worker threads, which run prometheus-client's WSGI app. Connections are
capped: the newest one always gets in, and the one idle longest makes room. With a web
configuration, the TLS handshake is made in that same thread within the same deadline, and a
request is checked (rate limit, basic auth) before the app sees it.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import ssl
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import unquote

from .tls import san_allowed

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from .access import Access

log = logging.getLogger(__name__)

MAX_HEADER = 16384  # bytes of request head read at most
MAX_REASONS = 32  # failures whose traceback is logged


@dataclass(frozen=True)
class Limits:
    connections: int = 64  # open at once; beyond, the longest idle is closed
    requests: int = 4  # served at once (worker threads)
    read_timeout_s: float = 5.0  # to send the whole request head
    write_timeout_s: float = 10.0  # to take the whole answer


DEFAULT_LIMITS = Limits()
# What Go's server answers plain HTTP on a TLS port with: a scraper's log then says why.
PLAIN_ON_TLS = (b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS "
                b"server.\n")


@dataclass
class _Pending:
    """A connection not yet handed to a worker."""
    since: float  # accepted at (monotonic)
    peer: str
    head: bytearray = field(default_factory=bytearray)
    secured: bool = True  # its TLS handshake is done, or it has none


class MetricsServer:
    """Serves the registry's metrics on a socket from two kinds of thread: one that waits on
    every connection, and a few that answer complete requests."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int,
                 limits: Limits = DEFAULT_LIMITS, access: Access | None = None) -> None:
        # Imported here: the command line reads the default limits without it.
        from prometheus_client import make_wsgi_app

        self.limits = limits
        self.access = access
        self._app = make_wsgi_app(registry)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and not host:
            self._listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        try:
            self._listener.bind((host or "0.0.0.0", port))
            self._listener.listen(128)
        except OSError:
            self._listener.close()
            raise
        self._listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._waiting: dict[socket.socket, _Pending] = {}
        self._workers = ThreadPoolExecutor(limits.requests, thread_name_prefix="metrics")
        self._stop = threading.Event()
        self.evicted = 0  # connections closed to make room
        self.failed = 0  # requests the app raised on (answered 500)
        self._said: set[str] = set()  # failures logged with their traceback, bounded
        self._thread = threading.Thread(target=self._loop, name="metrics-accept", daemon=True)

    def start(self) -> None:
        """Serve from now on. Apart from binding: capabilities belong to each thread, so its
        threads are started once the process has dropped what it will not use."""
        self._thread.start()

    def shutdown(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        else:
            self._selector.close()
            self._listener.close()
        self._workers.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                for key, _ in self._selector.select(timeout=0.2):
                    if key.fileobj is self._listener:
                        self._accept()
                    elif key.fileobj in self._waiting:  # not closed to make room meanwhile
                        self._receive(key.fileobj)
                self._expire()
        finally:
            for sock in list(self._waiting):
                self._close(sock)
            self._selector.close()
            self._listener.close()

    def _accept(self) -> None:
        try:
            sock, address = self._listener.accept()
        except OSError:  # gone before it was taken, or out of fds: the others are served
            return
        if len(self._waiting) >= self.limits.connections:
            oldest = min(self._waiting, key=lambda s: self._waiting[s].since)
            self._close(oldest)
            self.evicted += 1
        sock.setblocking(False)
        pending = _Pending(time.monotonic(), str(address[0]))
        if self.access is not None:
            self.access.refresh()
            if self.access.context is not None:
                sock = self.access.context.wrap_socket(sock, server_side=True,
                                                       do_handshake_on_connect=False)
                pending.secured = False
        self._waiting[sock] = pending
        self._selector.register(sock, selectors.EVENT_READ)

    def _receive(self, sock: socket.socket) -> None:
        pending = self._waiting[sock]
        if not pending.secured and not self._handshake(sock, pending):
            return
        data = b""
        try:
            data = sock.recv(4096)
            # TLS may hold more of the head already decrypted, which no poll would report.
            while isinstance(sock, ssl.SSLSocket) and data and sock.pending():
                data += sock.recv(4096)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError,
                ssl.SSLWantWriteError):
            if not data:
                return
        except OSError:
            data = b""
        head = pending.head
        head += data
        if not data or len(head) > MAX_HEADER:
            self._close(sock)
        elif b"\r\n\r\n" in head:
            self._selector.unregister(sock)
            del self._waiting[sock]
            self._workers.submit(self._answer, sock, bytes(head), pending.peer)

    def _handshake(self, sock: socket.socket, pending: _Pending) -> bool:
        """A step of the TLS handshake; whether it is done (and its client allowed)."""
        assert isinstance(sock, ssl.SSLSocket) and self.access is not None
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._selector.modify(sock, selectors.EVENT_READ)
            return False
        except ssl.SSLWantWriteError:
            self._selector.modify(sock, selectors.EVENT_WRITE)
            return False
        except ssl.SSLError as exc:
            if exc.reason in ("HTTP_REQUEST", "HTTPS_PROXY_REQUEST"):
                self.access.refusals.refuse("plain_http", f"plain HTTP from {pending.peer} "
                                            "on the TLS port")
                _say_plainly(sock)
            else:
                self.access.refusals.refuse("tls_handshake", f"a TLS handshake from "
                                            f"{pending.peer}: {_reason(exc)}")
            self._close(sock)
            return False
        except OSError:
            self._close(sock)
            return False
        sans = self.access.config.tls.client_allowed_sans if self.access.config.tls else None
        if sans is not None and not san_allowed(sock.getpeercert(), sans):
            self.access.refusals.refuse("client_san", f"a client certificate from "
                                        f"{pending.peer}: none of its SANs is allowed")
            self._close(sock)
            return False
        pending.secured = True
        self._selector.modify(sock, selectors.EVENT_READ)
        return True

    def _expire(self) -> None:
        deadline = time.monotonic() - self.limits.read_timeout_s
        for sock in [s for s, p in self._waiting.items() if p.since < deadline]:
            self._close(sock)

    def _close(self, sock: socket.socket) -> None:
        self._waiting.pop(sock, None)
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):
            pass
        sock.close()

    def _answer(self, sock: socket.socket, head: bytes, peer: str) -> None:
        """Run the WSGI app on one request and write its answer, within the write deadline."""
        try:
            answer = self._respond(head, peer)
        except Exception as exc:  # noqa: BLE001 - a worker's exception is lost in its future
            answer = self._failed(exc)
        try:
            sock.setblocking(True)
            sock.settimeout(self.limits.write_timeout_s)
            sock.sendall(answer)
        except OSError:
            pass  # the client went away or was too slow: nothing to tell it
        finally:
            sock.close()

    def _failed(self, exc: Exception) -> bytes:
        """Say why a request could not be answered (the traceback once per reason, so a client
        repeating it cannot flood the log) and answer 500."""
        self.failed += 1
        reason = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        first = reason not in self._said and len(self._said) < MAX_REASONS
        if first:
            self._said.add(reason)
        log.error("could not answer a scrape: %s", reason, exc_info=exc if first else None)
        return _http_answer("500 Internal Server Error", [("Content-Type", "text/plain")],
                            b"metrics failed: see log\r\n")

    def _respond(self, head: bytes, peer: str) -> bytes:
        lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            return _http_answer("400 Bad Request", [], b"")
        method, target, _version = parts
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        extra = self.access.headers() if self.access is not None else []
        refused = self.access.check(fields, peer) if self.access is not None else None
        if refused is not None:
            # Before the app runs: not a byte of the metrics.
            if refused.startswith("401"):
                extra.append(("WWW-Authenticate", "Basic"))
            return _http_answer(refused, [("Content-Type", "text/plain; charset=utf-8"), *extra],
                           refused.split(" ", 1)[1].encode() + b"\n")
        path, _, query = target.partition("?")
        environ = {"REQUEST_METHOD": method, "PATH_INFO": unquote(path), "QUERY_STRING": query,
                   "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.input": None, "wsgi.errors": sys.stderr,
                   "wsgi.url_scheme": "https" if self.access and self.access.tls else "http",
                   "wsgi.version": (1, 0), "SCRIPT_NAME": ""}
        for name, value in fields.items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        status_headers: list = []

        def start_response(status, headers, exc_info=None):
            status_headers[:] = [status, headers]

        body = b"".join(self._app(environ, start_response))
        status, headers = status_headers
        return _http_answer(status, [*headers, *extra], body)


def _reason(exc: ssl.SSLError) -> str:
    """OpenSSL's reason, readable: PEER_DID_NOT_RETURN_A_CERTIFICATE as words."""
    return exc.reason.lower().replace("_", " ") if exc.reason else str(exc)


def _say_plainly(sock: socket.socket) -> None:
    """PLAIN_ON_TLS on the socket under TLS, after what the client sent is read (unread, it
    would make the close a reset, which can lose the answer)."""
    try:
        while os.read(sock.fileno(), MAX_HEADER):
            pass
    except OSError:
        pass
    try:
        os.write(sock.fileno(), PLAIN_ON_TLS)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _http_answer(status: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    """An HTTP/1.1 answer whole, its length its body's, the connection then closed."""
    head_out = [f"HTTP/1.1 {status}"] + [f"{k}: {v}" for k, v in headers
                                        if k.lower() != "content-length"]
    head_out += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(head_out).encode("latin-1") + body
