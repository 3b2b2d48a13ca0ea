"""Log lines on stderr that journald reads well: a <priority> prefix under systemd, and
logfmt fields (key=value) that stay on one terminal-safe line."""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

from .. import PROG
from ..escape import escape

_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6,
             logging.DEBUG: 7}


class JournalFormatter(logging.Formatter):
    def __init__(self, journald: bool) -> None:
        super().__init__()
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        text = escape(record.getMessage(), backslash=False)
        if record.exc_info:  # kept on the record's one line: its newlines escaped
            text += " " + escape(self.formatException(record.exc_info), backslash=False)
        if self.journald:  # journald stamps time and name itself
            return f"<{_PRIORITY.get(record.levelno, 6)}>{text}"
        return f"{PROG}: {record.levelname.lower()}: {text}"


def setup(stream: TextIO = sys.stderr, level: int = logging.INFO) -> None:
    """Route the package's logs to stderr; JOURNAL_STREAM says systemd connected it."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JournalFormatter("JOURNAL_STREAM" in os.environ))
    root = logging.getLogger("kcmp_monitor")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def logfmt(**fields: object) -> str:
    """key=value pairs; a value with spaces, quotes or an equals sign is quoted."""
    parts = []
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = escape(str(value))
        if not text or any(c in text for c in ' "='):
            text = '"' + text.replace('"', '\\"') + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts)
