"""A token bucket: what lets a log line or a request through at a rate, with bursts."""

from __future__ import annotations

import time
from typing import Callable


class TokenBucket:
    """`rate` a second on average, bursts of up to `burst`."""

    def __init__(self, rate: float, burst: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = burst
        self.last = clock()

    def ready(self) -> bool:
        """Whether one could go now (nothing is taken)."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        return self.tokens >= 1

    def take(self) -> bool:
        """Whether one goes now (a token taken if so)."""
        if self.ready():
            self.tokens -= 1
            return True
        return False
