"""The signatures over recorded events: JSON lines as the stream or the event file wrote them
(gzipped backups too), in the order written."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from typing import IO

from .engine import Detector
from .observe import NotAnEvent, from_record
from .types import Finding


class Skipped:
    """Lines that were no event: how many, and the first one's place and reason."""

    def __init__(self) -> None:
        self.count = 0
        self.first: str | None = None

    def add(self, where: str, why: str) -> None:
        self.count += 1
        if self.first is None:
            self.first = f"{where}: {why}"


def open_events(path: str, stdin: IO[bytes]) -> IO[bytes]:
    """The file (or - for stdin), gunzipped where it is gzip."""
    raw: IO[bytes] = stdin if path == "-" else open(path, "rb")
    peek = raw.peek(2)[:2] if isinstance(raw, io.BufferedReader) else b""
    if peek == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]  # an IO[bytes] too
    return raw


def findings(stream: IO[bytes], name: str, detector: Detector,
             skipped: Skipped) -> Iterator[Finding]:
    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        try:
            record = json.loads(line)
        except ValueError:
            skipped.add(where, "not JSON")
            continue
        if not isinstance(record, dict):
            skipped.add(where, "not a JSON object")
            continue
        try:
            obs = from_record(record)
        except NotAnEvent as exc:
            skipped.add(where, str(exc))
            continue
        if obs is not None:
            yield from detector.observe(obs)
