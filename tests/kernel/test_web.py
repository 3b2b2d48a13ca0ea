"""/metrics secured as a user deploys it: the real exporter on the real kernel, scraped by a
real Prometheus over mutual TLS with basic auth; the scrapes it must refuse, each said in its
log; a certificate rotated under the scraping Prometheus; a thousand stalled handshakes."""

import base64
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request

import pytest

from tests import pki
from tests.helpers import monitor_command, patience

from .conftest import Daemon, Prometheus

pytestmark = pytest.mark.kernel

CALLS = 1000


class SecureDaemon(Daemon):
    """The exporter with a web configuration, read over TLS with Prometheus's certificate and
    password."""

    def __init__(self, tmp, certs, config: str) -> None:
        path = tmp / "web.yml"
        path.write_text(config)
        self.ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        self.ctx.load_cert_chain(str(certs / "client.crt"), str(certs / "client.key"))
        super().__init__(tmp, "--web.config.file", str(path))

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/metrics"

    def metrics(self) -> str:
        auth = base64.b64encode(f"prometheus:{pki.PASSWORD}".encode()).decode()
        request = urllib.request.Request(self.url, headers={"Authorization": f"Basic {auth}"})
        with urllib.request.urlopen(request, timeout=patience(5), context=self.ctx) as answer:
            return answer.read().decode()


def web_config(certs, live) -> str:
    return (f"tls_server_config:\n  cert_file: {live}/server.crt\n  key_file: {live}/server.key\n"
            f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {certs}/ca.crt\n"
            f"basic_auth_users:\n  prometheus: '{pki.hashed(cost=10)}'\n")


def jobs(certs, port):
    target = {"static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
    tls = {"ca_file": f"{certs}/ca.crt", "cert_file": f"{certs}/client.crt",
           "key_file": f"{certs}/client.key"}
    auth = {"username": "prometheus", "password": pki.PASSWORD}
    return {
        "good": {**target, "scheme": "https", "tls_config": tls, "basic_auth": auth},
        "wrong_password": {**target, "scheme": "https", "tls_config": tls,
                           "basic_auth": {**auth, "password": "guess"}},
        "no_certificate": {**target, "scheme": "https",
                           "tls_config": {"ca_file": f"{certs}/ca.crt"}, "basic_auth": auth},
        "plain_http": {**target, "basic_auth": auth},
    }


def served_certificate(port, certs) -> bytes:
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    ctx.load_cert_chain(str(certs / "client.crt"), str(certs / "client.key"))
    with socket.create_connection(("127.0.0.1", port)) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        return sock.getpeercert(binary_form=True)


def replace(src, dst) -> None:
    """As cert-manager and kubelet do: the new file whole, then renamed into place."""
    shutil.copy(src, f"{dst}.new")
    os.rename(f"{dst}.new", dst)


@pytest.fixture(scope="module")
def secured(loop, prometheus_bin, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("web")
    certs = pki.pki(tmp)
    pki.issue(certs, "rotated", "DNS:localhost,IP:127.0.0.1")
    live = tmp / "live"
    live.mkdir()
    for name in ("server.crt", "server.key"):
        shutil.copy(certs / name, live / name)
    daemon = SecureDaemon(tmp, certs, web_config(certs, live))
    try:
        daemon.wait_ready()
        prom = Prometheus(prometheus_bin, tmp, [], jobs=jobs(certs, daemon.port))
        try:
            subprocess.run([str(loop), "kcmp", str(CALLS)], check=True,
                           stdout=subprocess.DEVNULL)
            prom.wait_for('kcmp_caller_calls_total{job="good",comm="kcmpbench"}', CALLS)
            time.sleep(patience(3))  # every job scraped since
            before = served_certificate(daemon.port, certs)
            # Rotated under the scraping Prometheus, the certificate first (for a moment the
            # key is the old one's: the last good pair is served meanwhile).
            replace(certs / "rotated.crt", live / "server.crt")
            time.sleep(0.5)
            between = served_certificate(daemon.port, certs)
            replace(certs / "rotated.key", live / "server.key")
            rotated_at = time.time()
            time.sleep(0.5)
            after = served_certificate(daemon.port, certs)
            time.sleep(patience(5))
            span = f"{int(time.time() - rotated_at) + 20}s"
            results = {
                "calls": prom.query('kcmp_caller_calls_total{job="good",comm="kcmpbench"}'),
                "up": {r["metric"]["job"]: r["value"][1] for r in prom.query("up")},
                "worst": prom.query(f'min_over_time(up{{job="good"}}[{span}])'),
                "scrapes": prom.query(f'count_over_time(up{{job="good"}}[{span}])'),
                "refused": {r["metric"]["reason"]: float(r["value"][1]) for r in prom.query(
                    'kcmp_monitor_web_refused_total{job="good"}')},
            }
        finally:
            prom.stop()
        yield dict(daemon=daemon, certs=certs, results=results, before=before, after=after,
                   between=between)
    finally:
        daemon.stop()


def test_prometheus_scrapes_over_mutual_tls_with_basic_auth_and_counts_are_exact(secured):
    results = secured["results"]
    assert [float(r["value"][1]) for r in results["calls"]] == [CALLS]
    assert results["up"]["good"] == "1"
    assert results["refused"]["unauthorized"] > 0 and results["refused"]["plain_http"] > 0
    assert results["refused"]["tls_handshake"] > 0


def test_a_wrong_password_no_certificate_and_plain_http_are_down_and_said(secured):
    up = secured["results"]["up"]
    assert (up["wrong_password"], up["no_certificate"], up["plain_http"]) == ("0", "0", "0")
    log = secured["daemon"].stderr()
    assert "refused a request from 127.0.0.1: wrong password for 'prometheus'" in log
    assert "refused a TLS handshake from 127.0.0.1: peer did not return a certificate" in log
    assert "refused plain HTTP from 127.0.0.1 on the TLS port" in log
    assert "Traceback" not in log and pki.PASSWORD not in log


def test_a_certificate_rotated_under_prometheus_fails_no_scrape(secured):
    certs, results = secured["certs"], secured["results"]
    new = ssl.PEM_cert_to_DER_cert((certs / "rotated.crt").read_text())
    assert secured["before"] != new and secured["after"] == new
    assert secured["between"] == secured["before"]  # the new certificate with the old key
    assert float(results["worst"][0]["value"][1]) == 1  # no failed scrape since before it
    assert float(results["scrapes"][0]["value"][1]) >= 5
    log = secured["daemon"].stderr()
    assert "the key is not the certificate's" in log and "serving with the last good" in log
    assert "web configuration re-read: TLS on" in log


def test_the_exporter_says_its_web_configuration_and_why_it_stays_root(secured):
    log = secured["daemon"].stderr()
    assert 'web="TLS on (TLS12 to TLS13), client certificates: RequireAndVerifyClientCert; ' \
           'basic auth: 1 user"' in log
    assert "running as root: it re-reads" in log and "which nobody may not read" in log


def test_a_thousand_stalled_handshakes_do_not_slow_a_scrape(secured):
    """Connections that complete TCP and never send a ClientHello, or stop inside it."""
    daemon = secured["daemon"]
    assert daemon.proc.poll() is None, daemon.stderr()[-3000:]
    stalled = [socket.create_connection(("127.0.0.1", daemon.port)) for _ in range(1000)]
    for sock in stalled[::2]:
        sock.sendall(b"\x16\x03\x01\x02\x00\x01")
    slowest = 0.0
    try:
        for _ in range(30):
            started = time.monotonic()
            assert "kcmp_calls_total" in daemon.metrics()
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.1)
    finally:
        for sock in stalled:
            sock.close()
    assert slowest < 1


def test_check_reports_the_web_configuration_without_secrets(kernel_ready, tmp_path):
    certs = pki.pki(tmp_path)
    path = tmp_path / "web.yml"
    path.write_text(web_config(certs, certs))
    result = subprocess.run([monitor_command(), "--check", "--web.config.file", str(path)],
                            capture_output=True, text=True, timeout=patience(120))
    assert result.returncode == 0, result.stderr
    assert ("web configuration: TLS on (TLS12 to TLS13), client certificates: "
            "RequireAndVerifyClientCert; basic auth: 1 user\n") in result.stdout
    assert "$2" not in result.stdout + result.stderr
