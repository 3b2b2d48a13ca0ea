"""Certificates for the TLS tests, made with openssl(1) as the README's "Securing /metrics"
makes them: a CA, a server certificate for 127.0.0.1 and localhost, client certificates."""

from __future__ import annotations

import subprocess
from pathlib import Path

import bcrypt

PASSWORD = "scrape-secret"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def ca(where: Path, name: str = "ca") -> Path:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", f"{name}.key", "-out", f"{name}.crt", "-subj", f"/CN=kcmp-monitor {name}",
             cwd=where)
    return where / f"{name}.crt"


def issue(where: Path, name: str, sans: str, usage: str = "serverAuth", by: str = "ca") -> Path:
    """name.crt and name.key, signed by the CA `by`, for the SANs given (e.g. "IP:127.0.0.1")."""
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
             "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=where)
    (where / f"{name}.ext").write_text(f"subjectAltName={sans}\nextendedKeyUsage={usage}\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{by}.crt", "-CAkey", f"{by}.key",
             "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", "-extfile", f"{name}.ext",
             cwd=where)
    return where / f"{name}.crt"


def pki(where: Path) -> Path:
    """A CA, the server's certificate and a client's ("prometheus"), in where."""
    ca(where)
    issue(where, "server", "DNS:localhost,IP:127.0.0.1")
    issue(where, "client", "DNS:prometheus", usage="clientAuth")
    return where


def hashed(password: str = PASSWORD, cost: int = 4) -> str:
    """A bcrypt hash (cost 4: the tests hash often; the README says 10)."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()
