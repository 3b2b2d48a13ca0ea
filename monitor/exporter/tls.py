"""/metrics over TLS: an ssl.SSLContext from the web configuration's settings, its files read
and checked (a key for another certificate, a CA file with no certificate), and the toolkit's
check of a client certificate's SANs."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import ssl
from collections.abc import Iterator

from ..errors import UsageError
from ..flags import flag
from .webconfig import CIPHER_SUITES, CLIENT_AUTH, TLS_VERSIONS, TLSSettings

# OpenSSL 3 allows TLS 1.0 and 1.1 only at security level 0: where min_version asks for them,
# the level the toolkit's Go would have.
_OLD_TLS = "@SECLEVEL=0"
_SAN_TYPES = ("DNS", "email", "IP Address", "URI")


def context(settings: TLSSettings, path: str) -> ssl.SSLContext:
    """The server's context; UsageError naming the file and what is wrong with it."""
    def bad(key: str, what: str) -> UsageError:
        return UsageError(f"{flag('web_config')} {path}: tls_server_config.{key}: {what}")

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = TLS_VERSIONS[settings.min_version]
    ctx.maximum_version = TLS_VERSIONS[settings.max_version]
    old = ctx.minimum_version < ssl.TLSVersion.TLSv1_2
    suites = [CIPHER_SUITES[n][1] for n in settings.cipher_suites if n in CIPHER_SUITES]
    if suites or old:
        ctx.set_ciphers(":".join(suites or ["DEFAULT"]) + (":" + _OLD_TLS if old else ""))
    if settings.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    if settings.curve:
        ctx.set_ecdh_curve(settings.curve)
    with _pem(settings.cert_file, settings.cert) as cert, \
            _pem(settings.key_file, settings.key) as key:
        _check_certificate(cert, "cert_file" if settings.cert_file else "cert", bad)
        try:
            # A password callback: an encrypted key fails here rather than prompting a terminal.
            ctx.load_cert_chain(cert, key, password=lambda: b"")
        except OSError as exc:
            if isinstance(exc, ssl.SSLError) and exc.reason == "KEY_VALUES_MISMATCH":
                raise bad("key_file" if settings.key_file else "key",
                          "the key is not the certificate's (a key for another certificate)"
                          ) from None
            if not isinstance(exc, ssl.SSLError):
                raise bad("key_file", f"{settings.key_file}: {exc.strerror}") from None
            raise bad("key_file" if settings.key_file else "key",
                      "holds no unencrypted PEM private key") from None
    ctx.verify_mode = CLIENT_AUTH[settings.client_auth]
    if ctx.verify_mode != ssl.CERT_NONE:
        _client_cas(ctx, settings, bad)
    return ctx


@contextlib.contextmanager
def _pem(path: str | None, inline: str | None) -> Iterator[str]:
    """A path to the PEM text: the file's, or an inline value's in a memory file (ssl loads
    certificates and keys from paths only)."""
    if path is not None:
        yield path
        return
    fd = os.memfd_create("kcmp-monitor-pem", os.MFD_CLOEXEC)
    try:
        os.write(fd, (inline or "").encode())
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def _check_certificate(cert: str, key: str, bad) -> None:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=cert)
    except ssl.SSLError:
        raise bad(key, "holds no PEM certificate") from None
    except OSError as exc:
        raise bad(key, f"{cert}: {exc.strerror}") from None


def _client_cas(ctx: ssl.SSLContext, settings: TLSSettings, bad) -> None:
    """The CAs client certificates are verified against: the system's where none is given, as
    Go's x509 does."""
    try:
        if settings.client_ca_file:
            ctx.load_verify_locations(cafile=settings.client_ca_file)
        elif settings.client_ca:
            ctx.load_verify_locations(cadata=settings.client_ca)
        else:
            ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    except ssl.SSLError:
        raise bad("client_ca_file" if settings.client_ca_file else "client_ca",
                  "holds no PEM certificate") from None
    except OSError as exc:
        raise bad("client_ca_file", f"{settings.client_ca_file}: {exc.strerror}") from None


def _normal(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return value


def san_allowed(peer: dict | None, allowed: tuple[str, ...]) -> bool:
    """Whether the verified client certificate (ssl's getpeercert()) names one of the allowed
    SANs, DNS, e-mail, IP or URI, exactly (IPs compared as addresses)."""
    if not peer:
        return False
    wanted = {_normal(a) for a in allowed}
    return any(kind in _SAN_TYPES and _normal(value) in wanted
               for kind, value in peer.get("subjectAltName", ()))
