"""Serving /metrics with bounds a hostile client cannot stretch.

prometheus-client's own server gives every connection a thread and no deadline: a thousand
silent connections hold a thousand threads and the process's fds. Here one thread waits on
every connection at once and reads each request with a deadline; only a complete request
reaches one of a few worker threads, which run prometheus-client's WSGI app. Connections are
capped: the newest one always gets in, and the one idle longest makes room.
"""

from __future__ import annotations

import logging
import selectors
import socket
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

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


class MetricsServer:
    """Serves the registry's metrics on a socket from two kinds of thread: one that waits on
    every connection, and a few that answer complete requests."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int,
                 limits: Limits = DEFAULT_LIMITS) -> None:
        # Imported here: the command line reads the default limits without it.
        from prometheus_client import make_wsgi_app

        self.limits = limits
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
        # socket -> (when accepted, the request head read so far)
        self._waiting: dict[socket.socket, tuple[float, bytearray]] = {}
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
                    else:
                        self._receive(key.fileobj)  # type: ignore[arg-type]
                self._expire()
        finally:
            for sock in list(self._waiting):
                self._close(sock)
            self._selector.close()
            self._listener.close()

    def _accept(self) -> None:
        try:
            sock, _ = self._listener.accept()
        except OSError:  # gone before it was taken, or out of fds: the others are served
            return
        if len(self._waiting) >= self.limits.connections:
            oldest = min(self._waiting, key=lambda s: self._waiting[s][0])
            self._close(oldest)
            self.evicted += 1
        sock.setblocking(False)
        self._waiting[sock] = (time.monotonic(), bytearray())
        self._selector.register(sock, selectors.EVENT_READ)

    def _receive(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        head = self._waiting[sock][1]
        head += data
        if not data or len(head) > MAX_HEADER:
            self._close(sock)
        elif b"\r\n\r\n" in head:
            self._selector.unregister(sock)
            del self._waiting[sock]
            self._workers.submit(self._answer, sock, bytes(head))

    def _expire(self) -> None:
        deadline = time.monotonic() - self.limits.read_timeout_s
        for sock in [s for s, (since, _) in self._waiting.items() if since < deadline]:
            self._close(sock)

    def _close(self, sock: socket.socket) -> None:
        self._waiting.pop(sock, None)
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):
            pass
        sock.close()

    def _answer(self, sock: socket.socket, head: bytes) -> None:
        """Run the WSGI app on one request and write its answer, within the write deadline."""
        try:
            answer = self._respond(head)
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
        body = b"metrics failed: see log\r\n"
        return (b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))

    def _respond(self, head: bytes) -> bytes:
        lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            return b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        method, target, _version = parts
        path, _, query = target.partition("?")
        environ = {"REQUEST_METHOD": method, "PATH_INFO": unquote(path), "QUERY_STRING": query,
                   "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.input": None, "wsgi.errors": sys.stderr,
                   "wsgi.url_scheme": "http", "wsgi.version": (1, 0), "SCRIPT_NAME": ""}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            environ["HTTP_" + name.strip().upper().replace("-", "_")] = value.strip()
        status_headers: list = []

        def start_response(status, headers, exc_info=None):
            status_headers[:] = [status, headers]

        body = b"".join(self._app(environ, start_response))
        status, headers = status_headers
        head_out = [f"HTTP/1.1 {status}"] + [f"{k}: {v}" for k, v in headers
                                            if k.lower() != "content-length"]
        head_out += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
        return "\r\n".join(head_out).encode("latin-1") + body
