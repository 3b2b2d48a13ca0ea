"""The /metrics server against hostile clients: silent ones, many ones, malformed ones."""

import gzip
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter

from kcmp_monitor.exporter.collector import RefusalCollector
from kcmp_monitor.exporter.httpd import MAX_HEADER, Limits, MetricsServer


LIMITS = Limits(connections=8, requests=2, read_timeout_s=0.5)


def serve(access=None, limits=LIMITS) -> MetricsServer:
    """A started server of one counter (kcmp_test_total 3) on a free loopback port (.port),
    with access: behind that web configuration, its refusals exported."""
    registry = CollectorRegistry()
    Counter("kcmp_test", "a counter", registry=registry).inc(3)
    if access is not None:
        registry.register(RefusalCollector(access.refusals))
    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    srv = MetricsServer(registry, "127.0.0.1", port, limits, access)
    srv.start()
    srv.port = port
    return srv


@pytest.fixture
def server():
    srv = serve()
    yield srv
    srv.shutdown()


def _scrape(port, **headers):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers)
    with urllib.request.urlopen(request, timeout=2) as response:
        return response.headers, response.read()


def test_metrics_are_served_as_prometheus_client_makes_them(server):
    headers, body = _scrape(server.port)
    assert b"kcmp_test_total 3.0" in body and headers["Content-Type"].startswith("text/plain")
    headers, body = _scrape(server.port, **{"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip"
    assert b"kcmp_test_total 3.0" in gzip.decompress(body)


def test_many_silent_connections_neither_block_a_scrape_nor_hold_threads(server):
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(200)]
    try:
        started = time.monotonic()
        assert b"kcmp_test_total" in _scrape(server.port)[1]
        assert time.monotonic() - started < 1
        assert server.evicted > 100  # (some may still wait in the listen backlog)
        workers = [t for t in threading.enumerate() if t.name.startswith("metrics")]
        assert len(workers) <= 2 + 1  # the workers and the one waiting on every connection
    finally:
        for sock in idle:
            sock.close()


def test_a_client_that_sends_nothing_is_dropped_at_the_read_deadline(server):
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(3)
        started = time.monotonic()
        assert sock.recv(1) == b""  # closed by the server, not answered
        assert 0.4 < time.monotonic() - started < 2


def test_malformed_and_oversized_requests(server):
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"nonsense\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400 Bad Request")
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(3)
        try:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * (MAX_HEADER + 10))
        except OSError:
            pass  # already closed on us
        assert sock.recv(100) == b""


def test_a_collector_that_raises_is_answered_500_and_said_once_with_its_traceback(caplog):
    class Refusing:
        def collect(self):
            raise PermissionError(1, "Operation not permitted")

    registry = CollectorRegistry()
    registry.register(Refusing())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    srv = MetricsServer(registry, "127.0.0.1", port, Limits(requests=1))
    srv.start()
    try:
        for _ in range(3):
            with pytest.raises(urllib.error.HTTPError) as answer:
                _scrape(port)
            assert answer.value.code == 500
    finally:
        srv.shutdown()
    lines = [r for r in caplog.records if "could not answer a scrape" in r.getMessage()]
    assert len(lines) == 3 and srv.failed == 3
    assert "PermissionError: [Errno 1] Operation not permitted" in lines[0].getMessage()
    assert [bool(r.exc_info) for r in lines] == [True, False, False]


def test_clients_closed_to_make_room_while_they_send_do_not_stop_the_server(server):
    """A connection evicted by a newer one in the same poll as its own bytes arrived: once, that
    ended the thread waiting on every connection, and /metrics with it."""
    for _ in range(10):
        crowd = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(50)]
        for sock in crowd:
            sock.sendall(b"GET")
        for sock in crowd:
            sock.close()
    assert b"kcmp_test_total" in _scrape(server.port)[1]
