"""The tracing loop: ring buffer -> decode -> enrich -> sink, with lost events accounted for."""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass
from typing import Callable, Protocol

from .abi import EPERM
from .enrich import Context, ProcReader, enrich
from .events import STAT_DROPPED, STAT_INFLIGHT, Event, decode
from .logs import logfmt

log = logging.getLogger(__name__)
POLL_MS = 100


class Sink(Protocol):
    def event(self, event: Event, ctx: Context, wall_ns: int) -> None: ...

    def lost(self, count: int, wall_ns: int) -> None: ...

    def flush(self) -> None: ...


class EventLog(Protocol):
    def event(self, event: Event, ctx: Context) -> None: ...

    def report_suppressed(self) -> None: ...


class EventSource(Protocol):
    def open_events(self) -> None: ...

    def read(self, timeout_ms: int) -> list[bytes]: ...

    def stat(self, index: int) -> int: ...


@dataclass
class Summary:
    events: int = 0
    lost: int = 0  # ring buffer full
    unpaired: int = 0  # entries the in-flight map could not keep (their exits came alone)


def monotonic_to_wall_ns() -> int:
    """What to add to a bpf_ktime_get_ns() stamp (CLOCK_MONOTONIC) to get epoch time."""
    return time.time_ns() - time.monotonic_ns()


class Tracer:
    """Hands each streamed record to the trace sink (if it passed the trace filters) and each
    permission failure to the EPERM log; either may be absent."""

    def __init__(self, source: EventSource, proc: ProcReader, sink: Sink | None = None,
                 eperm_log: EventLog | None = None) -> None:
        self.source = source
        self.sink = sink
        self.eperm_log = eperm_log
        self.proc = proc
        self.summary = Summary()
        self._offset = monotonic_to_wall_ns()
        source.open_events()

    def run(self, should_stop: Callable[[], bool]) -> Summary:
        """Poll until should_stop() says so, then drain what is left."""
        # Events make no reference cycles: keep the collector off the objects made so far.
        gc.freeze()
        while not should_stop():
            self.step(POLL_MS)
        self.step(0)
        if self.eperm_log is not None:
            self.eperm_log.report_suppressed()
        return self.summary

    def step(self, timeout_ms: int) -> None:
        """One read: records reach the sinks in order, then any new loss is reported."""
        sink, eperm_log, proc, offset = self.sink, self.eperm_log, self.proc, self._offset
        traced = 0
        for raw in self.source.read(timeout_ms):  # the hot loop: locals only
            event = decode(raw)
            to_sink = event.traced and sink is not None
            to_log = eperm_log is not None and event.ret == -EPERM
            if not (to_sink or to_log):
                continue
            ctx = enrich(event, proc)
            if to_sink:
                sink.event(event, ctx, event.ts_ns + offset)
                traced += 1
            if to_log:
                eperm_log.event(event, ctx)
        self.summary.events += traced
        dropped = self.source.stat(STAT_DROPPED)
        if dropped > self.summary.lost:
            if sink is not None:
                sink.lost(dropped - self.summary.lost, time.time_ns())
            else:
                log.warning(logfmt(msg="events lost: ring buffer full (counters stay exact)",
                                   lost=dropped - self.summary.lost))
            self.summary.lost = dropped
        self.summary.unpaired = self.source.stat(STAT_INFLIGHT)
        if sink is not None:
            sink.flush()
