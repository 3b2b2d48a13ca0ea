"""Events as JSON lines in a file that rotates by size, for a log shipper to tail (Fluent Bit,
Vector, Filebeat): whole lines only, never one split across two files; a few backups, the
older ones compressed."""

from __future__ import annotations

import gzip
import os
import shutil
from typing import BinaryIO

from ..context.types import Containers
from .jsonout import JsonLines

DEFAULT_MAX_MB = 100
DEFAULT_BACKUPS = 5


class RotatingLines:
    """PATH, then PATH.1 (left plain: a tailer may still be reading it), PATH.2(.gz) ... up to
    PATH.<backups>; what rotates past the last is removed."""

    def __init__(self, path: str, max_bytes: int, backups: int, compress: bool) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.compress = compress
        self.lines = 0  # written, in every file
        self._file: BinaryIO = self._open()
        self._size = self._file.tell()

    def _open(self) -> BinaryIO:
        # Events name processes, users and paths: for the owner alone.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return os.fdopen(fd, "ab")

    def _name(self, n: int) -> str:
        plain = f"{self.path}.{n}"
        return plain + ".gz" if self.compress and n >= 2 else plain

    def _rotate(self) -> None:
        self._file.close()
        if self.backups == 0:
            os.unlink(self.path)
        else:
            last = self._name(self.backups)
            if os.path.exists(last):
                os.unlink(last)
            for n in range(self.backups - 1, 0, -1):
                if not os.path.exists(self._name(n)):
                    continue
                if n == 1 and self.compress and self.backups >= 2:
                    # PATH.1 was left plain; compressed as it moves on (delaycompress).
                    with open(f"{self.path}.1", "rb") as src, gzip.open(self._name(2),
                                                                       "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    os.unlink(f"{self.path}.1")
                else:
                    os.rename(self._name(n), self._name(n + 1))
            os.rename(self.path, f"{self.path}.1")
        self._file = self._open()
        self._size = 0

    def write(self, lines: list[str]) -> None:
        """Each line whole in one file: a rotation comes between lines, never inside one."""
        for line in lines:
            data = (line + "\n").encode("ascii")
            if self._size and self._size + len(data) > self.max_bytes:
                self._file.flush()
                self._rotate()
            self._file.write(data)
            self._size += len(data)
            self.lines += 1
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class FileSink(JsonLines):
    """The JSON stream's lines (its schema), and the losses, to a RotatingLines."""

    def __init__(self, out: RotatingLines, runtime: Containers | None = None) -> None:
        super().__init__(runtime)
        self.out = out

    def start(self, notes: list[str]) -> None:
        pass

    def flush(self) -> None:
        lines = self.take()
        if lines:
            self.out.write(lines)
