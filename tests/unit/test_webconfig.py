"""The web configuration file: the toolkit's keys and defaults, and every bad file one line
naming the problem, exit 2, before anything is loaded."""

import ssl
import subprocess

import pytest

from kcmp_monitor import cli
from kcmp_monitor.errors import UsageError
from kcmp_monitor.exporter import tls, webconfig
from kcmp_monitor.kernel import kcmp as loader
from tests import pki


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    where = pki.pki(tmp_path_factory.mktemp("pki"))
    pki.ca(where, "other-ca")
    pki.issue(where, "other", "DNS:other", by="other-ca")
    subprocess.run(["openssl", "pkey", "-in", "server.key", "-aes256", "-passout", "pass:x",
                    "-out", "encrypted.key"], cwd=where, check=True, capture_output=True)
    (where / "notes.txt").write_text("not a certificate\n")
    return where


TLS = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
MTLS = TLS + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"

# (file text, or None for no file; what the error names)
BAD = [
    (None, "No such file or directory"),
    ("tls_config: {}\n", "tls_config: unknown key"),
    ("tls_server_config:\n  certfile: server.crt\n", "tls_server_config.certfile: unknown key"),
    ("basic_auth_users:\n  prometheus: hunter2\n", "basic_auth_users.prometheus: not a bcrypt "
     "hash (hash it: htpasswd"),
    ("tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n",
     "cert_file: "),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n",
     "key_file: the key is not the certificate's"),
    ("tls_server_config: [\n", "not YAML at line 2"),
    ("- tls_server_config\n", "the file: expected a mapping"),
    ("basic_auth_users: {}\nbasic_auth_users: {}\n", "key 'basic_auth_users' given twice"),
    ("tls_server_config:\n  cert_file: server.crt\n", "missing one of key or key_file"),
    (TLS + "  client_auth_type: Always\n", "client_auth_type: unknown policy 'Always'"),
    (TLS + "  client_auth_type: RequireAnyClientCert\n", "without verifying them"),
    (TLS + "  client_ca_file: ca.crt\n", "client CAs given without a client auth policy"),
    (TLS + "  min_version: TLS14\n", "min_version: unknown TLS version 'TLS14'"),
    (TLS + "  min_version: TLS13\n  max_version: TLS12\n", "TLS13 is above max_version"),
    (TLS + "  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n", "unknown cipher"),
    (TLS + "  curve_preferences: [X25519, CurveP256]\n", "sets one curve"),
    ("http_server_config:\n  headers:\n    X-Powered-By: us\n", "this header cannot be set"),
    ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "expected one of deny"),
    ("rate_limit:\n  interval: fast\n  burst: 1\n", "'fast' is not a duration"),
    ("rate_limit:\n  interval: 1s\n", "0 lets no request through"),
    (MTLS.replace("client_ca_file: ca.crt", "client_ca_file: notes.txt"),
     "client_ca_file: holds no PEM certificate"),
    (TLS.replace("cert_file: server.crt", "cert_file: server.key"),
     "cert_file: holds no PEM certificate"),
    (TLS.replace("key_file: server.key", "key_file: encrypted.key"),
     "holds no unencrypted PEM private key"),
    (TLS + "  cert: inline\n", "give cert or cert_file, not both"),
    ("http_server_config:\n  http2: sometimes\n", "http2: expected true or false"),
]


@pytest.mark.parametrize("text, named", BAD, ids=[b[1][:40] for b in BAD])
def test_a_bad_web_configuration_is_one_line_exit_2_and_nothing_loaded(
        text, named, certs, tmp_path, capsys, monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("a program was loaded before the bad configuration was said")

    monkeypatch.setattr(loader.KcmpProgram, "__init__", refuse)
    path = certs / f"web-{tmp_path.name}.yml"
    if text is not None:
        path.write_text(text)
    assert cli.main(["--web.config.file", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"kcmp-monitor: error: --web.config.file {path}: ") and named in err


def test_a_directory_is_not_a_web_configuration(tmp_path, capsys):
    assert cli.main(["--web.config.file", str(tmp_path)]) == 2
    assert "Is a directory" in capsys.readouterr().err


def test_the_web_configuration_needs_the_exporter(tmp_path, capsys):
    assert cli.main(["--trace", "--web.config.file", str(tmp_path / "w.yml")]) == 2
    assert "secures /metrics, which --trace alone does not serve (add --web.listen-address)" \
        in capsys.readouterr().err


def test_the_toolkits_defaults_and_paths_beside_the_file(certs):
    path = certs / "good.yml"
    path.write_text(MTLS + "basic_auth_users:\n  prometheus: '" + pki.hashed() + "'\n"
                    "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"
                    "    Content-Security-Policy: ''\n")
    config = webconfig.read(str(path))
    assert config.tls.cert_file == str(certs / "server.crt")
    assert (config.tls.min_version, config.tls.max_version) == ("TLS12", "TLS13")
    assert config.tls.prefer_server_cipher_suites and config.http2
    assert config.headers == (("X-Content-Type-Options", "nosniff"),)  # a blank one unset
    assert config.files == (str(path), *(str(certs / n) for n in ("server.crt", "server.key",
                                                                   "ca.crt")))
    described = config.describe()
    assert described == ("TLS on (TLS12 to TLS13), client certificates: "
                         "RequireAndVerifyClientCert; basic auth: 1 user; headers: "
                         "X-Content-Type-Options")
    assert "$2" not in described


def test_no_tls_keys_is_plain_http_and_inline_pem_is_taken(certs):
    assert webconfig.parse({"tls_server_config": {"min_version": "TLS13"}}, "w").tls is None
    settings = webconfig.parse({"tls_server_config": {
        "cert": (certs / "server.crt").read_text(), "key": (certs / "server.key").read_text(),
        "client_auth_type": "VerifyClientCertIfGiven",
        "client_ca": (certs / "ca.crt").read_text()}}, "w").tls
    ctx = tls.context(settings, "w")
    assert ctx.verify_mode == ssl.CERT_OPTIONAL and ctx.cert_store_stats()["x509_ca"] == 1


@pytest.mark.parametrize("go, numbers", sorted(webconfig.CIPHER_SUITES.items()))
def test_each_go_cipher_name_is_the_openssl_suite_of_its_number(go, numbers):
    iana, openssl_name = numbers
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_ciphers(openssl_name)
    assert {c["id"] & 0xFFFF for c in ctx.get_ciphers() if c["protocol"] != "TLSv1.3"} == {iana}


@pytest.mark.parametrize("text, seconds", [("250ms", 0.25), ("1m30s", 90.0), ("2h", 7200.0),
                                           (".5s", 0.5), (1_000_000_000, 1.0)])
def test_rate_limit_intervals_are_go_durations(text, seconds):
    limit = webconfig.parse({"rate_limit": {"interval": text, "burst": 3}}, "w").rate_limit
    assert limit == webconfig.RateLimit(seconds, 3)


def test_bad_values_name_their_key():
    with pytest.raises(UsageError, match=r"basic_auth_users: 'a:b' is not a user name"):
        webconfig.parse({"basic_auth_users": {"a:b": pki.hashed()}}, "w")
    with pytest.raises(UsageError, match=r"headers.Strict-Transport-Security: expected a "
                       "one-line string"):
        webconfig.parse({"http_server_config": {"headers": {
            "Strict-Transport-Security": "max-age=1\r\nX-Evil: 1"}}}, "w")
