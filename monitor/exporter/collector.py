"""Prometheus metrics read from the kernel's counters at scrape time: no per-event Python."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Callable, Protocol

from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from .. import abi
from ..escape import escape_bytes
from ..kernel.counters import (
    ERRNO_SLOTS,
    NS_KINDS,
    OUTCOMES,
    SLOT_NAMES,
    SLOT_UNSEEN,
    STAT_COMM_OVERFLOW,
    STAT_COMM_OVERFLOW_DENIED,
    STAT_COMPAT,
    STAT_DENIED_OVERFLOW,
    STAT_DROPPED,
    STAT_DROPPED_PRIORITY,
    STAT_INFLIGHT,
    Snapshot,
    ns_index,
)
from . import families as f

log = logging.getLogger(__name__)

# Histogram buckets: log2 slot k counts durations below 2^k ns. Exported: 256 ns .. ~1.07 s.
FIRST_BUCKET, LAST_BUCKET = 8, 30
TOP_CALLERS = 20
OTHER = "other"
# The bucket of the names past the first ones: 17 printable characters, which no process name
# (15 bytes at most, escaped) can become.
OTHER_NAMES = "(other processes)"


class StickyTop:
    """Which process names get a label of their own: at most n, kept for the daemon's life.

    A name is labelled at the first scrape it appears while a place is free (the busiest
    first), so it was never counted under "other" before and every series, "other" included,
    only ever grows: a counter that dropped would read as a reset.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.names: list[bytes] = []

    def split(self, counts: dict[bytes, int], overflow: int) -> list[tuple[str, int]]:
        if len(self.names) < self.n:
            new = sorted((c for c in counts if c not in self.names and counts[c]),
                         key=lambda c: (-counts[c], c))
            self.names += new[:self.n - len(self.names)]
        rows = [(escape_bytes(name), counts.get(name, 0)) for name in self.names]
        other = sum(v for c, v in counts.items() if c not in self.names) + overflow
        return rows + [(OTHER_NAMES, other)]


@dataclass
class SelfState:
    """What the collector reports about the monitor itself."""

    version: str
    bcc_version: str
    kernel: str
    attached: Callable[[], dict[str, bool]]
    run_stats: Callable[[], dict[str, tuple[int, int]]]
    bpf_stats_enabled: Callable[[], bool]
    program_costs: Callable[[], dict[str, tuple[int, float]]]


class KcmpCollector(Collector):
    def __init__(self, snapshot: Callable[[], Snapshot], state: SelfState,
                 top: int = TOP_CALLERS) -> None:
        self._snapshot = snapshot
        self._state = state
        self._top_calls = StickyTop(top)
        self._top_denied = StickyTop(top)

    def describe(self) -> list[Metric]:
        """The families it serves (without them, registration would collect: read the maps)."""
        return f.described(f.KCMP, top=self._top_calls.n)

    def collect(self) -> Iterator[Metric]:
        yield from self._self_metrics()
        try:
            snap = self._snapshot()
        except Exception as exc:  # a map that cannot be read: report it, never a wrong number
            log.error("reading the kernel counters failed: %s", exc)
            yield f.SCRAPE_ERROR.make(value=1)
            return
        yield f.SCRAPE_ERROR.make(value=0)
        yield from self._kcmp_metrics(snap)

    @staticmethod
    def _namespaced(counts: list[int]) -> Metric:
        family = f.NAMESPACED.make()
        for kind, ns in enumerate(NS_KINDS):
            for slot, name in enumerate(SLOT_NAMES):
                for outcome, label in enumerate(OUTCOMES):
                    family.add_metric([ns, name, label], counts[ns_index(kind, slot, outcome)])
        return family

    def _kcmp_metrics(self, snap: Snapshot) -> Iterator[Metric]:
        calls, errors, duration, seccomp = (
            f.CALLS.make(), f.ERRORS.make(), f.DURATION.make(), f.SECCOMP.make())
        for slot, stats in enumerate(snap.types):
            name = SLOT_NAMES[slot]
            for outcome, value in zip(OUTCOMES, stats.outcome):
                calls.add_metric([name, outcome], value)
            seccomp.add_metric([name], stats.seccomp)
            for err, value in enumerate(stats.errnos):
                if value:
                    label = OTHER if err == ERRNO_SLOTS - 1 else abi.errno_name(err)
                    errors.add_metric([name, label], value)
            if slot != SLOT_UNSEEN:  # calls never seen entering have no duration
                duration.add_metric([name], _buckets(stats.duration_log2),
                                    stats.duration_sum_ns / 1e9)
        yield calls
        yield errors
        yield duration
        yield seccomp
        if snap.namespaced is not None:
            yield self._namespaced(snap.namespaced)

        denied = f.DENIED.make()
        for (slot, uid), value in sorted(snap.denied.items()):
            denied.add_metric([SLOT_NAMES[slot], str(uid)], value)
        if snap.stats[STAT_DENIED_OVERFLOW]:
            denied.add_metric([OTHER, OTHER], snap.stats[STAT_DENIED_OVERFLOW])
        yield denied

        yield f.COMPAT.make(value=snap.stats[STAT_COMPAT])
        dropped = f.DROPPED.make()
        dropped.add_metric(["bulk"], snap.stats[STAT_DROPPED])
        dropped.add_metric(["priority"], snap.stats[STAT_DROPPED_PRIORITY])
        yield dropped
        yield f.UNPAIRED.make(value=snap.stats[STAT_INFLIGHT])

        by_comm = f.CALLER_CALLS.make(top=self._top_calls.n)
        for comm, value in self._top_calls.split(
                {c: v[0] for c, v in snap.comms.items()}, snap.stats[STAT_COMM_OVERFLOW]):
            by_comm.add_metric([comm], value)
        yield by_comm
        denied_by_comm = f.CALLER_DENIED.make(top=self._top_denied.n)
        for comm, value in self._top_denied.split(
                {c: v[1] for c, v in snap.comms.items()},
                snap.stats[STAT_COMM_OVERFLOW_DENIED]):
            denied_by_comm.add_metric([comm], value)
        yield denied_by_comm

    def _self_metrics(self) -> Iterator[Metric]:
        s = self._state
        info = f.BUILD_INFO.make()
        info.add_metric([s.version, s.bcc_version, s.kernel], 1)
        yield info
        attached = f.ATTACHED.make()
        for tracepoint, ok in s.attached().items():
            attached.add_metric([tracepoint], 1 if ok else 0)
        yield attached
        costs = s.program_costs()
        runs_own, time_own = f.PROGRAM_RUNS.make(), f.PROGRAM_SECONDS.make()
        for program, (count, ns) in sorted(costs.items()):
            runs_own.add_metric([program], count)
            time_own.add_metric([program], ns / 1e9)
        yield runs_own
        yield time_own
        if not s.bpf_stats_enabled():
            return
        run_time, runs = f.BPF_SECONDS.make(), f.BPF_RUNS.make()
        for program, (run_ns, count) in sorted(s.run_stats().items()):
            run_time.add_metric([program], run_ns / 1e9)
            runs.add_metric([program], count)
        yield run_time
        yield runs


class ContextCounts(Protocol):
    """The tracer's running totals (trace.Summary)."""

    events: int
    crossings: dict[str, int]
    unresolved: int


class ContextCollector(Collector):
    """What enriching the traced stream found: calls crossing namespace or container
    boundaries, and calls whose context could not be resolved. It counts what reached user
    space: kcmp_events_dropped_total says what did not."""

    def __init__(self, summary: Callable[[], ContextCounts]) -> None:
        self._summary = summary

    def describe(self) -> list[Metric]:
        return f.described(f.CONTEXT)

    def collect(self) -> Iterator[Metric]:
        s = self._summary()
        yield f.CONTEXT_EVENTS.make(value=s.events)
        crossings = f.CROSSINGS.make()
        for kind, value in s.crossings.items():
            crossings.add_metric([kind], value)
        yield crossings
        yield f.UNRESOLVED.make(value=s.unresolved)


class RuntimeCounts(Protocol):
    """What the container runtimes told (context.runtime.ContainerRuntime)."""

    misses: int

    @property
    def known(self) -> int: ...


class RuntimeCollector(Collector):
    """How well the streamed events' containers were named by their runtimes."""

    def __init__(self, runtime: RuntimeCounts) -> None:
        self._runtime = runtime

    def describe(self) -> list[Metric]:
        return f.described(f.RUNTIME)

    def collect(self) -> Iterator[Metric]:
        yield f.CONTAINERS_KNOWN.make(value=self._runtime.known)
        yield f.CONTAINER_MISSES.make(value=self._runtime.misses)


class DetectionCounts(Protocol):
    """The findings made so far (detect.engine.Detector), by (signature id, severity)."""

    counts: dict[tuple[str, str], int]

    @property
    def evicted(self) -> dict[str, int]: ...


class DetectionCollector(Collector):
    """kcmp_detections_total: every enabled signature's findings, zero from the start."""

    def __init__(self, detector: DetectionCounts) -> None:
        self._detector = detector

    def describe(self) -> list[Metric]:
        return f.described(f.DETECTION)

    def collect(self) -> Iterator[Metric]:
        found = f.DETECTIONS.make()
        for (signature, severity), count in sorted(self._detector.counts.items()):
            found.add_metric([signature, severity], count)
        yield found
        evicted = f.KEYS_EVICTED.make()
        for signature, count in sorted(self._detector.evicted.items()):
            evicted.add_metric([signature], count)
        yield evicted


class RefusalCounts(Protocol):
    """What the web configuration refused so far (access.Refusals), by reason."""

    REASONS: tuple[str, ...]
    counts: Mapping[str, int]


class RefusalCollector(Collector):
    """kcmp_monitor_web_refused_total: every reason, zero from the start."""

    def __init__(self, refusals: RefusalCounts) -> None:
        self._refusals = refusals

    def describe(self) -> list[Metric]:
        return [f.WEB_REFUSED.make()]

    def collect(self) -> Iterator[Metric]:
        refused = f.WEB_REFUSED.make()
        for reason in self._refusals.REASONS:
            refused.add_metric([reason], self._refusals.counts.get(reason, 0))
        yield refused


class EnforcementCounts(Protocol):
    """What the policy's rules matched (kernel.policy.PolicyTable), read from the kernel."""

    def counts(self) -> dict[tuple[str, str, bool], int]: ...


class EnforcementCollector(Collector):
    """kcmp_enforced_total: every rule, applied or not, zero from the start."""

    def __init__(self, policy: EnforcementCounts) -> None:
        self._policy = policy

    def describe(self) -> list[Metric]:
        return [f.ENFORCED.make()]

    def collect(self) -> Iterator[Metric]:
        enforced = f.ENFORCED.make()
        for (rule, action, applied), count in self._policy.counts().items():
            enforced.add_metric([rule, action, "true" if applied else "false"], count)
        yield enforced


def _buckets(log2: list[int]) -> list[tuple[str, float]]:
    """Cumulative (le, count) pairs in seconds from the kernel's log2 slots."""
    out: list[tuple[str, float]] = []
    below = sum(log2[:FIRST_BUCKET + 1])
    for k in range(FIRST_BUCKET, LAST_BUCKET + 1):
        if k > FIRST_BUCKET:
            below += log2[k]
        out.append((_le(k), below))
    out.append(("+Inf", sum(log2)))
    return out


def _le(k: int) -> str:
    return floatToGoString((1 << k) / 1e9)
