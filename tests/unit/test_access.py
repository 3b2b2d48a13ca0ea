"""/metrics behind a web configuration, served by the real server on loopback: TLS with client
certificates, basic auth before any metric byte, headers, the rate limit, and the file re-read
when it changes (the last good one kept while it is bad)."""

import base64
import logging
import os
import shutil
import socket
import ssl
import time

import pytest
from kcmp_monitor.exporter.access import Access
from tests import pki
from tests.unit.test_httpd import serve

AUTH = "Basic " + base64.b64encode(f"prometheus:{pki.PASSWORD}".encode()).decode()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    where = pki.pki(tmp_path_factory.mktemp("pki"))
    pki.issue(where, "stranger", "DNS:stranger", usage="clientAuth")
    pki.issue(where, "server2", "DNS:localhost,IP:127.0.0.1")
    return where


@pytest.fixture
def web(certs, tmp_path):
    """A configuration file beside the certificates; its server, once made."""
    made = []

    def make(text):
        path = tmp_path / "web.yml"
        path.write_text(text.replace("@", str(certs) + "/"))
        made.append(serve(Access(str(path))))
        return made[-1]

    yield make
    for server in made:
        server.shutdown()


MTLS = ("tls_server_config:\n  cert_file: @server.crt\n  key_file: @server.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: @ca.crt\n")


def client(certs, cert="client", **versions):
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    if cert:
        ctx.load_cert_chain(str(certs / f"{cert}.crt"), str(certs / f"{cert}.key"))
    for name, value in versions.items():
        setattr(ctx, name, value)
    if versions:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


def get(port, ctx=None, auth=AUTH, path="/metrics"):
    """The raw answer to one request (over TLS with ctx)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=3)
    if ctx is not None:
        sock = ctx.wrap_socket(sock, server_hostname="127.0.0.1")
    with sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n".encode()
                     + (f"Authorization: {auth}\r\n".encode() if auth else b"") + b"\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_mutual_tls_with_basic_auth_serves_the_metrics_with_the_files_headers(web, certs):
    server = web(MTLS + f"basic_auth_users:\n  prometheus: '{pki.hashed()}'\n"
                 "http_server_config:\n  headers:\n    X-Frame-Options: deny\n")
    answer = get(server.port, client(certs))
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"kcmp_test_total 3.0" in answer
    assert b"\r\nX-Frame-Options: deny\r\n" in answer


@pytest.mark.parametrize("auth", [None, "Basic " + base64.b64encode(b"prometheus:wrong").decode(),
                                  "Basic " + base64.b64encode(b"nobody:" + pki.PASSWORD.encode()
                                                              ).decode(),
                                  "Bearer x", "Basic !!!"])
def test_without_the_password_401_before_any_metric_byte(web, certs, auth, caplog):
    server = web(MTLS + f"basic_auth_users:\n  prometheus: '{pki.hashed()}'\n"
                 "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n")
    with caplog.at_level(logging.WARNING, "kcmp_monitor"):
        answer = get(server.port, client(certs), auth=auth)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401 Unauthorized\r\n") and body == b"Unauthorized\n"
    assert b"\r\nWWW-Authenticate: Basic" in head and b"X-Content-Type-Options: nosniff" in head
    assert server.access.refusals.counts == {"unauthorized": 1}
    assert "refused a request from 127.0.0.1" in caplog.text and pki.PASSWORD not in caplog.text


def test_a_scrapers_password_is_hashed_once(web, certs, monkeypatch):
    server = web(f"basic_auth_users:\n  prometheus: '{pki.hashed()}'\n")
    calls = []
    import bcrypt

    real = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda *a: calls.append(1) or real(*a))
    for _ in range(5):
        assert get(server.port).startswith(b"HTTP/1.1 200")
    assert len(calls) == 1


def unanswered(port, ctx) -> bool:
    """Whether the connection ends without an answer (under TLS 1.3 the client may learn it
    was refused only when it reads)."""
    try:
        return get(port, ctx) == b""
    except (ssl.SSLError, ConnectionError):
        return True


def test_no_client_certificate_a_stranger_and_plain_http_are_refused(web, certs):
    server = web(MTLS)
    assert unanswered(server.port, client(certs, cert=None))
    assert get(server.port) == (b"HTTP/1.0 400 Bad Request\r\n\r\n"
                                b"Client sent an HTTP request to an HTTPS server.\n")
    assert get(server.port, client(certs, cert="stranger")).startswith(b"HTTP/1.1 200")
    allowed = web(MTLS + "  client_allowed_sans: [prometheus]\n")
    assert get(allowed.port, client(certs)).startswith(b"HTTP/1.1 200")
    assert unanswered(allowed.port, client(certs, cert="stranger"))
    time.sleep(0.2)
    assert server.access.refusals.counts == {"tls_handshake": 1, "plain_http": 1}
    assert allowed.access.refusals.counts == {"client_san": 1}
    assert b'kcmp_monitor_web_refused_total{reason="plain_http"} 1.0' in \
        get(server.port, client(certs))


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
def test_tls_versions_are_the_files(web, certs):
    old = {"minimum_version": ssl.TLSVersion.TLSv1_1, "maximum_version": ssl.TLSVersion.TLSv1_1}
    default = web(MTLS)
    with pytest.raises(ssl.SSLError):
        get(default.port, client(certs, **old))
    allowing = web(MTLS + "  min_version: TLS11\n")
    assert get(allowing.port, client(certs, **old)).startswith(b"HTTP/1.1 200")
    only13 = web(MTLS + "  min_version: TLS13\n")
    with pytest.raises(ssl.SSLError):
        get(only13.port, client(certs, maximum_version=ssl.TLSVersion.TLSv1_2))


def test_the_rate_limit_answers_429(web):
    server = web("rate_limit:\n  interval: 1h\n  burst: 2\n")
    answers = [get(server.port)[:30] for _ in range(3)]
    assert [a[:15] for a in answers[:2]] == [b"HTTP/1.1 200 OK"] * 2
    assert answers[2].startswith(b"HTTP/1.1 429 Too Many Requests")


def _served_serial(port, certs):
    ctx = client(certs)
    with socket.create_connection(("127.0.0.1", port)) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        return ssl.DER_cert_to_PEM_cert(sock.getpeercert(binary_form=True))


def test_a_rotated_certificate_is_served_at_the_next_connection_and_a_bad_change_waits(
        web, certs, tmp_path, caplog):
    live = tmp_path / "live"
    live.mkdir()
    for name in ("server.crt", "server.key"):
        shutil.copy(certs / name, live / name)
    server = web(MTLS.replace("@server", str(live) + "/server"))
    first = _served_serial(server.port, certs)
    # A half-done rotation (the new certificate, the old key): the last good one stays.
    shutil.copy(certs / "server2.crt", live / "server.crt.new")
    os.rename(live / "server.crt.new", live / "server.crt")
    with caplog.at_level(logging.INFO, "kcmp_monitor"):
        assert _served_serial(server.port, certs) == first
        assert _served_serial(server.port, certs) == first
        shutil.copy(certs / "server2.key", live / "server.key.new")
        os.rename(live / "server.key.new", live / "server.key")
        rotated = _served_serial(server.port, certs)
    assert rotated != first and rotated == ssl.DER_cert_to_PEM_cert(
        ssl.PEM_cert_to_DER_cert((certs / "server2.crt").read_text()))
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "the key is not the certificate's" in errors[0].getMessage()
    assert "serving with the last good web configuration" in errors[0].getMessage()
    assert "web configuration re-read: TLS on" in caplog.text


def test_turning_tls_off_takes_a_restart(web, certs, caplog):
    server = web(MTLS)
    path = server.access.path
    with open(path, "w") as f:
        f.write("basic_auth_users: {}\n")
    with caplog.at_level(logging.ERROR, "kcmp_monitor"):
        assert get(server.port, client(certs)).startswith(b"HTTP/1.1 200")
    assert "TLS turned off: that takes a restart" in caplog.text


def test_a_stalled_handshake_holds_nothing_past_the_deadline(web, certs):
    server = web(MTLS)
    stalled = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(50)]
    half = socket.create_connection(("127.0.0.1", server.port))
    half.sendall(b"\x16\x03\x01\x02\x00\x01")  # a ClientHello's first bytes, then nothing
    try:
        started = time.monotonic()
        assert get(server.port, client(certs)).startswith(b"HTTP/1.1 200")
        assert time.monotonic() - started < 1
        time.sleep(1.0)
        assert half.recv(100) == b""  # closed at the read deadline
    finally:
        for sock in [*stalled, half]:
            sock.close()
