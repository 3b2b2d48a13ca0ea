"""The exporter-toolkit's web configuration file (--web.config.file), read into values: the
same keys, defaults and checks as node_exporter's, so one file serves both. Reading it checks
its shape; tls.py checks what its files hold."""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from .. import yamlfile
from ..errors import UsageError
from ..flags import flag

TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
# Go's client auth policies that verify what they ask for. Python's ssl verifies every client
# certificate it takes, so the toolkit's unverified ones (RequestClientCert,
# RequireAnyClientCert) cannot be honoured: they are refused rather than made stricter.
CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
               "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert")
# Go's tls.CipherSuites() up to TLS 1.2, the names the toolkit takes: (IANA number, OpenSSL's
# name). TLS 1.3's three are taken and, as in Go, not configurable.
CIPHER_SUITES = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": (0xC009, "ECDHE-ECDSA-AES128-SHA"),
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": (0xC00A, "ECDHE-ECDSA-AES256-SHA"),
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": (0xC013, "ECDHE-RSA-AES128-SHA"),
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": (0xC014, "ECDHE-RSA-AES256-SHA"),
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": (0xC02B, "ECDHE-ECDSA-AES128-GCM-SHA256"),
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": (0xC02C, "ECDHE-ECDSA-AES256-GCM-SHA384"),
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": (0xC02F, "ECDHE-RSA-AES128-GCM-SHA256"),
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": (0xC030, "ECDHE-RSA-AES256-GCM-SHA384"),
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": (0xCCA8, "ECDHE-RSA-CHACHA20-POLY1305"),
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": (0xCCA9, "ECDHE-ECDSA-CHACHA20-POLY1305"),
}
TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                "TLS_CHACHA20_POLY1305_SHA256")
# Go's curve names, OpenSSL's. Python's ssl sets one group (set_ecdh_curve), not a list.
CURVES = {"CurveP256": "prime256v1", "CurveP384": "secp384r1", "CurveP521": "secp521r1",
          "X25519": "X25519"}
# The toolkit's response headers, and the values it allows where it names them.
HEADERS: dict[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (), "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"), "X-XSS-Protection": (),
    "Content-Security-Policy": ()}
# bcrypt's modular crypt form: $2a$, $2b$ or $2y$, a two-digit cost, 53 characters of salt and
# hash. Only its shape is checked at start (checking it with bcrypt costs a hashing).
BCRYPT = re.compile(r"\$2[aby]?\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
HASH_IT = "hash it: htpasswd -nBC 10 \"\" prints :<hash>, or Python's bcrypt.hashpw"
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}

_KEYS = {
    "": ("tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"),
    "tls_server_config": ("cert", "key", "client_ca", "cert_file", "key_file",
                          "client_auth_type", "client_ca_file", "client_allowed_sans",
                          "min_version", "max_version", "cipher_suites",
                          "prefer_server_cipher_suites", "curve_preferences"),
    "http_server_config": ("http2", "headers"),
    "rate_limit": ("interval", "burst"),
}


@dataclass(frozen=True)
class TLSSettings:
    cert_file: str | None = None  # paths joined with the config file's directory
    key_file: str | None = None
    client_ca_file: str | None = None
    cert: str | None = None  # inline PEM, in place of a file
    key: str | None = None
    client_ca: str | None = None
    client_auth: str = "NoClientCert"
    client_allowed_sans: tuple[str, ...] | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    cipher_suites: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True
    curve: str | None = None

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(p for p in (self.cert_file, self.key_file, self.client_ca_file) if p)


@dataclass(frozen=True)
class RateLimit:
    interval_s: float  # between two requests, on average
    burst: int


@dataclass(frozen=True)
class WebConfig:
    path: str
    tls: TLSSettings | None = None  # None: plain HTTP
    users: Mapping[str, bytes] = field(default_factory=dict)  # name: bcrypt hash; {}: none
    headers: tuple[tuple[str, str], ...] = ()
    rate_limit: RateLimit | None = None
    http2: bool = True  # taken, not served: HTTP/1.1 only (clients fall back through ALPN)

    @property
    def files(self) -> tuple[str, ...]:
        """Every file it is read from: itself and the files it names."""
        return (self.path, *(self.tls.files if self.tls else ()))

    def describe(self) -> str:
        """What it configures, without secrets."""
        if self.tls is None:
            tls = "TLS off"
        else:
            tls = f"TLS on ({self.tls.min_version} to {self.tls.max_version}), client " \
                  f"certificates: {self.tls.client_auth}"
            if self.tls.client_allowed_sans is not None:
                tls += f" (SANs allowed: {len(self.tls.client_allowed_sans)})"
        users = f"basic auth: {len(self.users)} user{'s' * (len(self.users) != 1)}" \
            if self.users else "basic auth off"
        extra = [f"headers: {', '.join(name for name, _ in self.headers)}"] \
            if self.headers else []
        if self.rate_limit:
            extra.append(f"rate limit: 1 per {self.rate_limit.interval_s:g} s, "
                         f"burst {self.rate_limit.burst}")
        return "; ".join([tls, users, *extra])


class _StrictLoader(yaml.SafeLoader):
    """Refuses a key given twice, as the toolkit's strict YAML does."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read(path: str) -> WebConfig:
    """The file at path, checked whole; UsageError naming the key and the fix."""
    where = f"{flag('web_config')} {path}"
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{where}: {getattr(exc, 'strerror', None) or exc}") from None
    return parse(yamlfile.parse(text, where, _StrictLoader), path)


def parse(doc: Any, path: str) -> WebConfig:
    def bad(key: str, what: str) -> UsageError:
        return UsageError(f"{flag('web_config')} {path}: {key}: {what}")

    top = _mapping(doc, "", bad)
    base = os.path.dirname(os.path.abspath(path))
    tls = _tls(_mapping(top.get("tls_server_config"), "tls_server_config", bad), base, bad)
    http = _mapping(top.get("http_server_config"), "http_server_config", bad)
    return WebConfig(path=path, tls=tls, users=_users(top.get("basic_auth_users"), bad),
                     headers=_headers(http.get("headers"), bad),
                     rate_limit=_rate_limit(_mapping(top.get("rate_limit"), "rate_limit", bad),
                                            bad),
                     http2=_bool(http, "http2", True, "http_server_config", bad))


def _mapping(value: Any, key: str, bad) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad(key or "the file", "expected a mapping")
    known = _KEYS[key]
    for name in value:
        if name not in known:
            raise bad(f"{key}.{name}" if key else str(name),
                      f"unknown key (expected {', '.join(known)})")
    return value


def _string(conf: dict, name: str, section: str, bad) -> str | None:
    value = conf.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise bad(f"{section}.{name}", "expected a string")
    return value


def _strings(conf: dict, name: str, section: str, bad) -> tuple[str, ...] | None:
    value = conf.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad(f"{section}.{name}", "expected a list of strings")
    return tuple(value)


def _bool(conf: dict, name: str, default: bool, section: str, bad) -> bool:
    value = conf.get(name, default)
    if not isinstance(value, bool):
        raise bad(f"{section}.{name}", "expected true or false")
    return value


def _tls(conf: dict, base: str, bad) -> TLSSettings | None:
    section = "tls_server_config"

    def text(name: str) -> str | None:
        return _string(conf, name, section, bad)

    def file(name: str) -> str | None:
        value = text(name)
        return None if value is None else os.path.join(base, value)

    settings = TLSSettings(
        cert_file=file("cert_file"), key_file=file("key_file"),
        client_ca_file=file("client_ca_file"), cert=text("cert"), key=text("key"),
        client_ca=text("client_ca"), client_auth=text("client_auth_type") or "NoClientCert",
        client_allowed_sans=_strings(conf, "client_allowed_sans", section, bad),
        min_version=text("min_version") or "TLS12", max_version=text("max_version") or "TLS13",
        cipher_suites=_strings(conf, "cipher_suites", section, bad) or (),
        prefer_server_cipher_suites=_bool(conf, "prefer_server_cipher_suites", True, section,
                                          bad),
        curve=_curve(_strings(conf, "curve_preferences", section, bad), bad))
    given = [k for k in ("cert", "key", "client_ca", "cert_file", "key_file", "client_ca_file",
                         "client_auth_type") if text(k)]
    if not given:
        # As the toolkit: without these, plain HTTP (and the other TLS keys unused).
        return None
    for inline, named in (("cert", "cert_file"), ("key", "key_file"),
                          ("client_ca", "client_ca_file")):
        if text(inline) and text(named):
            raise bad(f"{section}.{named}", f"give {inline} or {named}, not both")
        if inline != "client_ca" and not (text(inline) or text(named)):
            raise bad(section, f"missing one of {inline} or {named}")
    _client_auth(settings, section, bad)
    for name in ("min_version", "max_version"):
        if getattr(settings, name) not in TLS_VERSIONS:
            raise bad(f"{section}.{name}", f"unknown TLS version {getattr(settings, name)!r} "
                      f"(expected one of {', '.join(TLS_VERSIONS)})")
    if TLS_VERSIONS[settings.min_version] > TLS_VERSIONS[settings.max_version]:
        raise bad(f"{section}.min_version", f"{settings.min_version} is above max_version "
                  f"{settings.max_version}")
    for name in settings.cipher_suites:
        if name not in CIPHER_SUITES and name not in TLS13_SUITES:
            raise bad(f"{section}.cipher_suites", f"unknown cipher {name!r} (expected Go's "
                      f"names, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)")
    return settings


def _client_auth(settings: TLSSettings, section: str, bad) -> None:
    mode = settings.client_auth
    if mode in UNVERIFIED_CLIENT_AUTH:
        raise bad(f"{section}.client_auth_type", f"{mode} takes certificates without "
                  "verifying them, which Python's ssl does not do: use VerifyClientCertIfGiven "
                  "or RequireAndVerifyClientCert with client_ca_file")
    if mode not in CLIENT_AUTH:
        raise bad(f"{section}.client_auth_type", f"unknown policy {mode!r} (expected one of "
                  f"{', '.join(CLIENT_AUTH)})")
    has_ca = bool(settings.client_ca_file or settings.client_ca)
    if has_ca and mode == "NoClientCert":
        raise bad(f"{section}.client_ca_file", "client CAs given without a client auth "
                  "policy: set client_auth_type: RequireAndVerifyClientCert")
    if settings.client_allowed_sans is not None and mode == "NoClientCert":
        raise bad(f"{section}.client_allowed_sans", "SANs of client certificates need a "
                  "client_auth_type that asks for them")


def _curve(names: tuple[str, ...] | None, bad) -> str | None:
    if not names:
        return None
    key = "tls_server_config.curve_preferences"
    for name in names:
        if name not in CURVES:
            raise bad(key, f"unknown curve {name!r} (expected one of {', '.join(CURVES)})")
    if len(names) > 1:
        raise bad(key, "Python's ssl sets one curve, not a list: give one")
    return CURVES[names[0]]


def _users(value: Any, bad) -> dict[str, bytes]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad("basic_auth_users", "expected a mapping of user names to bcrypt hashes")
    users = {}
    for name, hashed in value.items():
        if not isinstance(name, str) or not name or ":" in name:
            raise bad("basic_auth_users", f"{name!r} is not a user name (a string without ':')")
        if not isinstance(hashed, str) or not BCRYPT.fullmatch(hashed):
            raise bad(f"basic_auth_users.{name}", f"not a bcrypt hash ({HASH_IT})")
        users[name] = hashed.encode("ascii")
    return users


def _headers(value: Any, bad) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    key = "http_server_config.headers"
    if not isinstance(value, dict):
        raise bad(key, "expected a mapping of header names to values")
    headers = []
    for name, text in value.items():
        if name not in HEADERS:
            raise bad(f"{key}.{name}", f"this header cannot be set (expected one of "
                      f"{', '.join(HEADERS)})")
        if not isinstance(text, str) or any(c in text for c in "\r\n\0"):
            raise bad(f"{key}.{name}", "expected a one-line string")
        allowed = HEADERS[name]
        if allowed and text not in allowed:
            raise bad(f"{key}.{name}", f"expected one of {', '.join(allowed)}")
        if text:  # unset where blank
            headers.append((name, text))
    return tuple(headers)


def _rate_limit(conf: dict, bad) -> RateLimit | None:
    interval = conf.get("interval", 0)
    if isinstance(interval, str):
        interval = _duration(interval, bad)
    elif isinstance(interval, bool) or not isinstance(interval, int) or interval < 0:
        raise bad("rate_limit.interval", "expected a duration, e.g. 100ms or 1s")
    else:
        interval = interval * 1e-9  # a bare number is nanoseconds, as Go's time.Duration
    burst = conf.get("burst", 0)
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 0:
        raise bad("rate_limit.burst", "expected a whole number, 0 or more")
    if interval == 0:
        return None
    if burst == 0:
        raise bad("rate_limit.burst", "0 lets no request through: give 1 or more")
    return RateLimit(interval, burst)


def _duration(text: str, bad) -> float:
    """Go's time.ParseDuration for what it takes here: 0, or units like 1m30s, 250ms."""
    if text == "0":
        return 0.0
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise bad("rate_limit.interval", f"{text!r} is not a duration (e.g. 100ms, 1s, 1m)")
    return sum(float(n) * _UNIT_S[u] for n, u in parts)
