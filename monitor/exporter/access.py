"""Who may read /metrics: the web configuration in force, re-read when its file or a file it
names changes (looked at for every new connection, as the toolkit re-reads it for each), the
last good one kept while a change is bad; and the basic auth, rate limit and headers it sets."""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import ssl
import threading
import time
from collections import Counter

import bcrypt

from ..errors import UsageError
from ..memo import Keyed
from ..ratelimit import TokenBucket
from . import tls, webconfig
from .webconfig import WebConfig

log = logging.getLogger(__name__)

# The toolkit's stand-in for a user that does not exist ("fakepassword"): the same bcrypt work
# either way, so timing does not tell which users exist.
UNKNOWN_USER_HASH = b"$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi"
VERDICTS = 100  # credentials whose bcrypt verdict is kept, each way
SAY_EVERY_S = 10.0  # a refusal's reason is logged at most this often


class Refusals:
    """Counts of what was refused, by reason, and a log line per reason at most every
    SAY_EVERY_S (a client repeating one cannot flood the log)."""

    REASONS = ("tls_handshake", "plain_http", "client_san", "unauthorized", "rate_limited")

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._said: dict[str, tuple[float, int]] = {}  # reason -> (last said, count then)
        self._lock = threading.Lock()

    def refuse(self, reason: str, detail: str) -> None:
        assert reason in self.REASONS, reason
        with self._lock:
            self.counts[reason] += 1
            now = time.monotonic()
            last, then = self._said.get(reason, (float("-inf"), 0))
            if now - last < SAY_EVERY_S:
                return
            self._said[reason] = (now, self.counts[reason])
            more = self.counts[reason] - then - 1 if then else 0
        log.warning("refused %s%s", detail, f" (and {more} more since)" if more > 0 else "")


def _stamps(paths: tuple[str, ...]) -> tuple:
    """What changes when a file is rewritten or replaced (a Secret's symlink swap too)."""
    out: list[tuple] = []
    for path in paths:
        try:
            st = os.stat(path)
            out.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
        except OSError as exc:
            out.append((exc.errno,))
    return tuple(out)


def load(path: str) -> tuple[WebConfig, ssl.SSLContext | None]:
    """The file and the TLS context it describes, checked whole (UsageError)."""
    config = webconfig.read(path)
    return config, tls.context(config.tls, path) if config.tls else None


class Access:
    """The web configuration in force and what it lets through."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.config, self.context = load(path)
        self._stamps = _stamps(self.config.files)
        self._bad_stamps: tuple | None = None  # of a change already found bad
        self.refusals = Refusals()
        self._verdicts = {True: Keyed(VERDICTS), False: Keyed(VERDICTS)}
        self._lock = threading.Lock()
        self._bcrypt = threading.Lock()  # one hashing at a time: they are CPU-bound
        self._bucket = _bucket(self.config)

    @property
    def tls(self) -> bool:
        return self.context is not None

    def refresh(self) -> None:
        """Re-read the configuration if a file of it changed (the accept thread, before it
        takes a connection)."""
        stamps = _stamps(self.config.files)
        if stamps == self._stamps or stamps == self._bad_stamps:
            return
        try:
            config, context = load(self.path)
            if (context is None) != (self.context is None):
                raise UsageError(f"{self.path}: TLS turned {'off' if context is None else 'on'}"
                                 ": that takes a restart")
        except UsageError as exc:
            self._bad_stamps = stamps
            log.error("%s; serving with the last good web configuration", exc)
            return
        with self._lock:
            if config.rate_limit != self.config.rate_limit:
                self._bucket = _bucket(config)
            self.config, self.context = config, context
            self._stamps, self._bad_stamps = _stamps(config.files), None
            for verdicts in self._verdicts.values():
                verdicts.clear()
        log.info("web configuration re-read: %s", config.describe())

    def headers(self) -> list[tuple[str, str]]:
        return list(self.config.headers)

    def check(self, head: dict[str, str], peer: str) -> str | None:
        """None if the request may be answered; else its refusal's status line."""
        with self._lock:
            config = self.config
            if self._bucket is not None and not self._bucket.take():
                self.refusals.refuse("rate_limited", f"a request from {peer}: over the rate "
                                     "limit")
                return "429 Too Many Requests"
        if not config.users:
            return None
        credentials = _basic(head.get("authorization", ""))
        if credentials is None:
            self.refusals.refuse("unauthorized", f"a request from {peer}: no basic auth "
                                 "credentials")
            return "401 Unauthorized"
        user, password = credentials
        hashed = config.users.get(user)
        if self._verified(user, hashed, password):
            return None
        self.refusals.refuse("unauthorized", f"a request from {peer}: " + (
            "wrong password" if hashed is not None else "unknown user") + f" for {user!r}")
        return "401 Unauthorized"

    def _verified(self, user: str, hashed: bytes | None, password: bytes) -> bool:
        """bcrypt's verdict, kept for the credentials last seen (a scraper's, every scrape).
        The kept verdicts are keyed by a digest, not by the password."""
        key = hashlib.sha256(b"\0".join((user.encode(), hashed or b"", password))).digest()
        with self._lock:
            for verdict, kept in self._verdicts.items():
                if key in kept:
                    kept.move_to_end(key)
                    return verdict
        with self._bcrypt:
            try:
                ok = bcrypt.checkpw(password, hashed or UNKNOWN_USER_HASH) and hashed is not None
            except ValueError:  # a password bcrypt cannot take (over 72 bytes)
                ok = False
        with self._lock:
            self._verdicts[ok].put(key, None)
        return ok


def _bucket(config: WebConfig) -> TokenBucket | None:
    limit = config.rate_limit
    return None if limit is None else TokenBucket(1 / limit.interval_s, limit.burst)


def _basic(header: str) -> tuple[str, bytes] | None:
    """(user, password) from an Authorization header of the Basic scheme."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = raw.partition(b":")
    if not sep:
        return None
    return user.decode("utf-8", "replace"), password
