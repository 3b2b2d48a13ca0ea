"""A memo keyed by the identity of the objects a value was made of.

The enricher hands out the same cached caller and targets again and again; hashing those
named tuples per event costs more than what is made of them, while their ids cost nothing.
The objects are kept with the value, so no id in a key can be reused while its entry is there.
"""

from __future__ import annotations

from typing import Generic, TypeVar

V = TypeVar("V")


class IdentityMemo(Generic[V]):
    def __init__(self, size: int) -> None:
        self.size = size  # then it starts again from empty: a working set is small
        self._table: dict[tuple, tuple[tuple, V]] = {}

    def get(self, key: tuple) -> V | None:
        """key: the ids of the objects, and any plain values beside them."""
        hit = self._table.get(key)
        return None if hit is None else hit[1]

    def put(self, key: tuple, objects: tuple, value: V) -> V:
        """objects: those whose ids are in key, kept alive with the value."""
        if len(self._table) >= self.size:
            self._table.clear()
        self._table[key] = (objects, value)
        return value
