"""The tracing loop: ring buffer -> decode -> enrich -> sink, with lost events accounted for."""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from .abi import EPERM
from .context.enrich import enrich
from .context.processes import ProcReader
from .context.types import BOUNDARIES, Containers, Context
from .detect.engine import Detector
from .detect.observe import from_event, quiet
from .detect.types import Finding
from .kernel.counters import STAT_DROPPED, STAT_DROPPED_PRIORITY, STAT_INFLIGHT
from .kernel.events import Event, decode
from .sinks.logs import logfmt

log = logging.getLogger(__name__)
POLL_MS = 100
LOST_EVERY_S = 5.0  # how often, at most, the log says events were lost


class Sink(Protocol):
    def event(self, event: Event, ctx: Context, wall_ns: int) -> None: ...

    def lost(self, count: int, wall_ns: int, lane: str = "bulk") -> None: ...

    def finding(self, finding: Finding) -> None: ...

    def flush(self) -> None: ...


class EventLog(Protocol):
    def ready(self) -> bool: ...

    def admit(self) -> bool: ...

    def event(self, event: Event, ctx: Context) -> None: ...

    def tick(self) -> None: ...

    def report_suppressed(self) -> None: ...


class FindingSink(Protocol):
    def finding(self, finding: Finding) -> None: ...

    def tick(self) -> None: ...

    def report_suppressed(self) -> None: ...


class EventSource(Protocol):
    def open_events(self) -> None: ...

    def read(self, timeout_ms: int, final: bool = False) -> list[bytes]: ...

    def stat(self, index: int) -> int: ...


@dataclass
class Summary:
    events: int = 0  # traced calls given their context (a folded record's every call)
    folded: int = 0  # of those, the calls folded records stood for
    lost: int = 0  # ring buffer full, in either lane
    lost_priority: int = 0  # of those, the priority lane's (both rings were full)
    unpaired: int = 0  # entries the in-flight map could not keep (their exits came alone)
    # traced calls that crossed each kind of boundary
    crossings: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BOUNDARIES, 0))
    unresolved: int = 0  # traced calls whose caller or a target could not be resolved


def monotonic_to_wall_ns() -> int:
    """What to add to a bpf_ktime_get_ns() stamp (CLOCK_MONOTONIC) to get epoch time."""
    return time.time_ns() - time.monotonic_ns()


class Tracer:
    """Hands each streamed record to the trace sink (if it passed the trace filters) and each
    permission failure to the EPERM log; either may be absent."""

    def __init__(self, source: EventSource, proc: ProcReader, sink: Sink | None = None,
                 eperm_log: EventLog | None = None, count_context: bool = False,
                 detector: Detector | None = None, runtime: Containers | None = None,
                 finding_log: FindingSink | None = None) -> None:
        """count_context: give every traced call its context and count crossings even
        without a sink (the daemon's --context); detector: the signatures every traced call
        goes through (findings to the sink and to finding_log, each where given); runtime:
        what names the containers they see."""
        self.source = source
        self.sink = sink
        self.detector = detector
        self.finding_log = finding_log
        self.runtime = runtime
        self.traces = sink is not None or count_context or detector is not None
        self.eperm_log = eperm_log
        self.proc = proc
        self.summary = Summary()
        self._offset = monotonic_to_wall_ns()
        self._unreported = {"priority": 0, "bulk": 0}  # losses not yet in the log
        self._reported_at = time.monotonic()
        source.open_events()

    def run(self, should_stop: Callable[[], bool]) -> Summary:
        """Poll until should_stop() says so, then drain what is left."""
        # Events make no reference cycles: keep the collector off the objects made so far.
        gc.freeze()
        while not should_stop():
            self.step(POLL_MS)
        self.step(0, final=True)
        for limited in (self.eperm_log, self.finding_log):
            if limited is not None:
                limited.report_suppressed()
        return self.summary

    def _report_lost(self, final: bool) -> None:
        """Without a sink the losses go to the log: a line at most every LOST_EVERY_S, with
        what was lost since and in all."""
        if not any(self._unreported.values()):
            return
        now = time.monotonic()
        if not final and now - self._reported_at < LOST_EVERY_S:
            return
        self._reported_at = now
        summary = self.summary
        for lane, total in (("priority", summary.lost_priority),
                            ("bulk", summary.lost - summary.lost_priority)):
            if self._unreported[lane]:
                log.warning(logfmt(msg="events lost: ring buffer full (counters stay exact)",
                                   lost=self._unreported[lane], lane=lane, total=total))
                self._unreported[lane] = 0

    def step(self, timeout_ms: int, final: bool = False) -> None:
        """One read: records reach the sinks in order, then any new loss is reported (final:
        the last, which takes every folded run)."""
        sink, eperm_log, proc, offset = self.sink, self.eperm_log, self.proc, self._offset
        detector = self.detector
        traces, summary = self.traces, self.summary
        crossed = summary.crossings
        traced = unresolved = folded = 0
        if not traces and not final and (eperm_log is None or not eperm_log.ready()):
            # Only the EPERM log reads the stream, and it may write nothing now: the records
            # wait in the ring, and what it cannot hold the kernel counts as dropped.
            time.sleep(timeout_ms / 1000)
            records: list[bytes] = []
        else:
            records = self.source.read(timeout_ms, final)
        for raw in records:  # the hot loop: locals only
            if not traces and (eperm_log is None or not eperm_log.admit()):
                continue  # only the EPERM log reads these (STREAM_EPERM): not even decoded
            event = decode(raw)
            to_trace = event.traced and traces
            # Admitted before any context is made: a flood costs a token test each.
            to_log = eperm_log is not None and event.ret == -EPERM and (
                not traces or eperm_log.admit())
            if not (to_trace or to_log):
                continue
            ctx = enrich(event, proc)
            if to_trace:
                calls = event.repeat
                traced += calls
                if event.last_ns is not None:
                    folded += calls
                for kind in ctx.crossings:
                    crossed[kind] += calls
                if ctx.unresolved:
                    unresolved += 1
                if sink is not None:
                    sink.event(event, ctx, event.ts_ns + offset)
                if detector is not None and not quiet(event, ctx):
                    for finding in detector.observe(
                            from_event(event, ctx, event.ts_ns + offset, self.runtime)):
                        if sink is not None:
                            sink.finding(finding)
                        if self.finding_log is not None:
                            self.finding_log.finding(finding)
            if to_log and eperm_log is not None:
                eperm_log.event(event, ctx)
        summary.events += traced
        summary.folded += folded
        summary.unresolved += unresolved
        bulk = self.source.stat(STAT_DROPPED)
        urgent = self.source.stat(STAT_DROPPED_PRIORITY)
        for lane, new in (("priority", urgent - summary.lost_priority),
                          ("bulk", bulk - (summary.lost - summary.lost_priority))):
            if new > 0 and sink is not None:
                sink.lost(new, time.time_ns(), lane)
            elif new > 0:
                self._unreported[lane] += new
        summary.lost, summary.lost_priority = bulk + urgent, urgent
        if sink is None:
            self._report_lost(final)
        if eperm_log is not None:
            eperm_log.tick()
        if self.finding_log is not None:
            self.finding_log.tick()
        self.summary.unpaired = self.source.stat(STAT_INFLIGHT)
        if sink is not None:
            sink.flush()
