"""What every signature has: its metadata, its parameters (from the rule file), an allowlist,
and state bounded by a number of keys (callers, pairs) of which the oldest give way."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Any, ClassVar, NamedTuple

from ..memo import Keyed
from .types import Finding, Meta, Observation

MAX_KEYS = 4096  # callers or pairs a signature keeps state for at once


class Allow(NamedTuple):
    """Known legitimate callers: a call matching any entry is not looked at."""

    executables: frozenset[str] = frozenset()  # paths, or file names
    comms: frozenset[str] = frozenset()
    images: frozenset[str] = frozenset()  # container images, with or without their tag
    uids: frozenset[int] = frozenset()

    def merged(self, other: Allow) -> Allow:
        return Allow(self.executables | other.executables, self.comms | other.comms,
                     self.images | other.images, self.uids | other.uids)

    def allows(self, obs: Observation) -> bool:
        exe = obs.exe
        if exe is not None and (exe in self.executables or
                                os.path.basename(exe) in self.executables):
            return True
        image = obs.container_image
        return (obs.comm in self.comms or obs.uid in self.uids or
                (image is not None and (image in self.images or
                                        image.rsplit(":", 1)[0] in self.images)))


class Signature(ABC):
    """A kcmp signature: look() at each call, a Finding when it has seen the behaviour (once
    per behaviour: the same key is not reported again within the window)."""

    META: ClassVar[Meta]
    # parameter -> (default, what it is); every one a positive number
    PARAMS: ClassVar[dict[str, tuple[float, str]]] = {
        "window_s": (300, "seconds within which a key is reported once")}

    def __init__(self, params: dict[str, float] | None = None,
                 allow: Allow | None = None) -> None:
        values = {name: default for name, (default, _) in self.PARAMS.items()}
        values.update(params or {})
        self.params = values
        self.window_ns = int(values["window_s"] * 1e9)
        self.allow = allow or Allow()
        self.state = Keyed(MAX_KEYS)

    @abstractmethod
    def look(self, obs: Observation) -> Finding | None:
        """The finding a call completes, if any. It asks allowed() only once the call is of
        its kind, so that the calls of no interest cost a test or two."""

    def allowed(self, obs: Observation) -> bool:
        return self.allow.allows(obs)

    def once(self, key: Any, obs: Observation, summary: str,
             events: tuple[Observation, ...] = ()) -> Finding | None:
        """A finding for key, unless one was made for it within the window."""
        last = self.state.get(key)
        if last is not None and obs.timestamp - last < self.window_ns:
            return None
        self.state.put(key, obs.timestamp)
        return Finding(self.META, summary, events or (obs,), str(key))


class Window:
    """What a key did within a window from its first call: calls (for a signature that counts
    them), distinct items (kept up to the threshold), the first call, and whether it was
    reported."""

    __slots__ = ("start", "calls", "items", "first", "reported")

    def __init__(self, obs: Observation) -> None:
        self.start = obs.timestamp
        self.calls = 0
        self.items: set = set()
        self.first = obs
        self.reported = False


class Threshold(Signature):
    """A signature that counts a key's calls, or distinct things they name, in a window."""

    def window(self, key: Any, obs: Observation) -> Window:
        w = self.state.touch(key, lambda: Window(obs))
        if obs.timestamp - w.start >= self.window_ns:
            w = self.state.put(key, Window(obs))
        return w
