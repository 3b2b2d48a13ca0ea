"""A table read whole from the system and read again when a key is missing from it, at most
so often: what is new appears at once, while a flood of unknown keys costs one read per
interval."""

from __future__ import annotations

import time
from typing import Callable, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class MissRefreshed(Generic[K, V]):
    def __init__(self, load: Callable[..., dict[K, V]], refresh_s: float) -> None:
        """load: reads the whole table (given get()'s extra arguments)."""
        self.load = load
        self.refresh_s = refresh_s
        self._table: dict[K, V] = {}
        self._when = -refresh_s

    def get(self, key: K, *load_args) -> V | None:
        if key not in self._table and time.monotonic() - self._when >= self.refresh_s:
            self._table = self.load(*load_args)
            self._when = time.monotonic()
        return self._table.get(key)
