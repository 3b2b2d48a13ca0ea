"""The tracing loop as named stages: read -> gate -> decode -> enrich -> observe -> sinks, with
lost events accounted for."""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass, field
from collections.abc import Iterable, Sequence
from typing import Callable, Protocol

from .abi import EPERM
from .context.enrich import enrich
from .context.processes import ProcReader
from .context.types import BOUNDARIES, Containers, Context
from .detect.engine import Detector
from .detect.observe import from_event, quiet
from .detect.types import Finding
from .kernel.counters import STAT_DROPPED, STAT_DROPPED_PRIORITY, STAT_INFLIGHT
from .kernel.events import EV_POLICY, Event, decode, peek
from .kernel.policy import PolicyTable
from .sinks.logs import logfmt

log = logging.getLogger(__name__)
POLL_MS = 100
LOST_EVERY_S = 5.0  # how often, at most, the log says events were lost


class Sink(Protocol):
    def start(self, notes: list[str]) -> None: ...

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


# The signatures over a traced call: the findings it completes.
Observer = Callable[[Event, Context, int], Iterable[Finding]]


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

    def add(self, event: Event, ctx: Context) -> None:
        """One traced record: the calls it stands for, and the boundaries they crossed."""
        calls = event.repeat
        self.events += calls
        if event.last_ns is not None:
            self.folded += calls
        for kind in ctx.crossings:
            self.crossings[kind] += calls
        if ctx.unresolved:
            self.unresolved += 1


def monotonic_to_wall_ns() -> int:
    """What to add to a bpf_ktime_get_ns() stamp (CLOCK_MONOTONIC) to get epoch time."""
    return time.time_ns() - time.monotonic_ns()


class Tracer:
    """The loop as stages: read -> gate -> decode -> enrich -> observe -> sinks. Each streamed
    record that passed the trace filters reaches every sink, and each permission failure the
    EPERM log; the signatures' findings reach the sinks and the finding logs."""

    def __init__(self, source: EventSource, proc: ProcReader, sinks: Sequence[Sink] = (),
                 eperm_log: EventLog | None = None, observer: Observer | None = None,
                 finding_logs: Sequence[FindingSink] = (), count_context: bool = False,
                 policy: PolicyTable | None = None,
                 enforcement_log: EventLog | None = None) -> None:
        """count_context: give every traced call its context and count crossings even
        without a sink (the daemon's --context); observer: the signatures every traced call
        goes through; policy: names what the kernel's policy made of a call (each such call
        to the enforcement log, if any)."""
        self.source = source
        self.proc = proc
        self.sinks = tuple(sinks)
        self.eperm_log = eperm_log
        self.observer = observer
        self.finding_logs = tuple(finding_logs)
        self.policy = policy
        self.enforcement_log = enforcement_log
        self.traces = bool(self.sinks) or count_context or observer is not None
        self._limited = tuple(c for c in (eperm_log, enforcement_log, *self.finding_logs)
                              if c is not None)
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
        for limited in self._limited:
            limited.report_suppressed()
        return self.summary

    def step(self, timeout_ms: int, final: bool = False) -> None:
        """One read: records reach the sinks in order, then any new loss is reported (final:
        the last, which takes every folded run)."""
        for raw in self.read(timeout_ms, final):
            self.handle(raw)
        self.account_losses(final)
        for limited in self._limited:
            limited.tick()
        self.summary.unpaired = self.source.stat(STAT_INFLIGHT)
        for sink in self.sinks:
            sink.flush()

    def read(self, timeout_ms: int, final: bool) -> list[bytes]:
        """The records of one poll; none where only the logs read them and none may write now
        (not even the last time): they wait in the ring, and what it cannot hold the kernel
        counts."""
        logs = [each for each in (self.eperm_log, self.enforcement_log) if each is not None]
        if not self.traces and not any(each.ready() for each in logs):
            if not final:
                time.sleep(timeout_ms / 1000)
            return []
        return self.source.read(timeout_ms, final)

    def handle(self, raw: bytes) -> None:
        """One record through the stages (gate, decode, enrich, observe, sinks)."""
        event, to_trace, to_log, to_enforce = self.gate(raw)
        if event is None:
            return
        ctx = enrich(event, self.proc)
        if event.policed is not None and self.policy is not None:
            ctx = ctx._replace(enforcement=self.policy.enforcement(*event.policed))
        if to_trace:
            wall_ns = event.ts_ns + self._offset
            self.summary.add(event, ctx)
            for sink in self.sinks:
                sink.event(event, ctx, wall_ns)
            if self.observer is not None:
                self.observe(event, ctx, wall_ns)
        if to_log and self.eperm_log is not None:
            self.eperm_log.event(event, ctx)
        if to_enforce and self.enforcement_log is not None:
            self.enforcement_log.event(event, ctx)

    def gate(self, raw: bytes) -> tuple[Event | None, bool, bool, bool]:
        """The event (None: no one takes it), and whether the sinks, the EPERM log and the
        enforcement log take it. The logs admit it before any context is made (a flood costs
        a token test each), and where only they read the stream, before it is decoded."""
        eperm_log, enforcement_log = self.eperm_log, self.enforcement_log
        event = None
        if self.traces:
            event = decode(raw)
            ret, traced, policed = event.ret, event.traced, event.policed is not None
        else:  # STREAM_EPERM's and the policy's records
            ret, flags = peek(raw)
            traced, policed = False, bool(flags & EV_POLICY)
        to_log = eperm_log is not None and ret == -EPERM and eperm_log.admit()
        to_enforce = policed and enforcement_log is not None and enforcement_log.admit()
        if not (traced or to_log or to_enforce):
            return None, False, False, False
        return event or decode(raw), traced, to_log, to_enforce

    def observe(self, event: Event, ctx: Context, wall_ns: int) -> None:
        """The signatures over one traced call; each finding to the sinks and finding logs."""
        assert self.observer is not None
        for finding in self.observer(event, ctx, wall_ns):
            for sink in self.sinks:
                sink.finding(finding)
            for finding_log in self.finding_logs:
                finding_log.finding(finding)

    def account_losses(self, final: bool) -> None:
        """New losses of each lane: to the sinks, or (without one) to the log."""
        summary = self.summary
        bulk = self.source.stat(STAT_DROPPED)
        urgent = self.source.stat(STAT_DROPPED_PRIORITY)
        for lane, new in (("priority", urgent - summary.lost_priority),
                          ("bulk", bulk - (summary.lost - summary.lost_priority))):
            if new <= 0:
                continue
            if not self.sinks:
                self._unreported[lane] += new
            for sink in self.sinks:
                sink.lost(new, time.time_ns(), lane)
        summary.lost, summary.lost_priority = bulk + urgent, urgent
        if not self.sinks:
            self._report_lost(final)

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


def signatures(detector: Detector, runtime: Containers | None = None) -> Observer:
    """The observe stage: a traced call as the signatures see it (quiet calls skipped), and
    the findings it completes; runtime names the containers they see."""

    def observe(event: Event, ctx: Context, wall_ns: int) -> Iterable[Finding]:
        if quiet(event, ctx):
            return ()
        return detector.observe(from_event(event, ctx, wall_ns, runtime))

    return observe
