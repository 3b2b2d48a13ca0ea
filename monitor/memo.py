"""Bounded tables of values by key: a memo keyed by the identity of the objects a value was
made of, and state by key where the least recently seen gives way.

The enricher hands out the same cached caller and targets again and again; hashing those
named tuples per event costs more than what is made of them, while their ids cost nothing.
The objects are kept with the value, so no id in a key can be reused while its entry is there.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Generic, TypeVar

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


class Keyed(OrderedDict):
    """State by key, at most `most` of them: the least recently seen gives way."""

    def __init__(self, most: int) -> None:
        super().__init__()
        self.most = most
        self.evicted = 0

    def touch(self, key: Any, make) -> Any:
        """key's state, made where it has none, and now the most recently seen."""
        state = self.get(key)
        if state is None:
            return self.put(key, make())
        self.move_to_end(key)
        return state

    def put(self, key: Any, state: Any) -> Any:
        """key's state replaced (or made, letting the least recently seen go if full)."""
        if key not in self and len(self) >= self.most:
            self.popitem(last=False)
            self.evicted += 1
        self[key] = state
        self.move_to_end(key)
        return state
