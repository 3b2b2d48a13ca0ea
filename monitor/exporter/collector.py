"""Prometheus metrics read from the kernel's counters at scrape time: no per-event Python."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Callable, Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from .. import abi
from ..escape import escape_bytes
from ..kernel.counters import (
    ERRNO_SLOTS,
    NS_KINDS,
    OUTCOMES,
    SLOT_NAMES,
    SAMPLE_SHIFT,
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
        return []  # no collect() at registration: that would read the maps

    def collect(self) -> Iterator[Metric]:
        yield from self._self_metrics()
        try:
            snap = self._snapshot()
        except Exception as exc:  # a map that cannot be read: report it, never a wrong number
            log.error("reading the kernel counters failed: %s", exc)
            yield GaugeMetricFamily("kcmp_monitor_scrape_error",
                                    "1 if the kernel counters could not be read", value=1)
            return
        yield GaugeMetricFamily("kcmp_monitor_scrape_error",
                                "1 if the kernel counters could not be read", value=0)
        yield from self._kcmp_metrics(snap)

    @staticmethod
    def _namespaced(counts: list[int]) -> Metric:
        family = CounterMetricFamily(
            "kcmp_namespaced_calls", "kcmp calls made from outside the monitor's pid, mount or "
            "network namespace (a container's), by namespace kind, type and outcome",
            labels=["namespace", "kcmp_type", "outcome"])
        for kind, ns in enumerate(NS_KINDS):
            for slot, name in enumerate(SLOT_NAMES):
                for outcome, label in enumerate(OUTCOMES):
                    family.add_metric([ns, name, label], counts[ns_index(kind, slot, outcome)])
        return family

    def _kcmp_metrics(self, snap: Snapshot) -> Iterator[Metric]:
        calls = CounterMetricFamily("kcmp_calls", "kcmp calls by type and outcome",
                                    labels=["kcmp_type", "outcome"])
        errors = CounterMetricFamily("kcmp_errors", "Failed kcmp calls by type and errno",
                                     labels=["kcmp_type", "errno"])
        duration = HistogramMetricFamily(
            "kcmp_call_duration_seconds", "Time spent in kcmp, entry to exit",
            labels=["kcmp_type"])
        seccomp = CounterMetricFamily(
            "kcmp_seccomp_refused", "kcmp calls refused before entry by the caller's seccomp "
            "filter, by type (read from the saved registers)", labels=["kcmp_type"])
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

        denied = CounterMetricFamily(
            "kcmp_permission_denied", "kcmp calls refused with EPERM, by type and caller uid",
            labels=["kcmp_type", "uid"])
        for (slot, uid), value in sorted(snap.denied.items()):
            denied.add_metric([SLOT_NAMES[slot], str(uid)], value)
        if snap.stats[STAT_DENIED_OVERFLOW]:
            denied.add_metric([OTHER, OTHER], snap.stats[STAT_DENIED_OVERFLOW])
        yield denied

        yield CounterMetricFamily("kcmp_compat_calls", "kcmp calls from 32-bit callers",
                                  value=snap.stats[STAT_COMPAT])
        dropped = CounterMetricFamily(
            "kcmp_events_dropped", "Events the stream lost (ring buffer full), by lane: "
            "priority (permission failures, seccomp refusals, 32-bit calls, other namespaces, "
            "new callers) or bulk; counts stay exact", labels=["lane"])
        dropped.add_metric(["bulk"], snap.stats[STAT_DROPPED])
        dropped.add_metric(["priority"], snap.stats[STAT_DROPPED_PRIORITY])
        yield dropped
        yield CounterMetricFamily(
            "kcmp_monitor_unpaired_exits",
            "Entries the in-flight map could not keep: their calls count as unseen",
            value=snap.stats[STAT_INFLIGHT])

        by_comm = CounterMetricFamily(
            "kcmp_caller_calls", f"kcmp calls by process name (the first {self._top_calls.n}"
            " names seen; the rest under other)", labels=["comm"])
        for comm, value in self._top_calls.split(
                {c: v[0] for c, v in snap.comms.items()}, snap.stats[STAT_COMM_OVERFLOW]):
            by_comm.add_metric([comm], value)
        yield by_comm
        denied_by_comm = CounterMetricFamily(
            "kcmp_caller_permission_denied", "kcmp calls refused with EPERM by process name "
            f"(the first {self._top_denied.n} names refused; the rest under other)",
            labels=["comm"])
        for comm, value in self._top_denied.split(
                {c: v[1] for c, v in snap.comms.items()},
                snap.stats[STAT_COMM_OVERFLOW_DENIED]):
            denied_by_comm.add_metric([comm], value)
        yield denied_by_comm

    def _self_metrics(self) -> Iterator[Metric]:
        s = self._state
        info = GaugeMetricFamily("kcmp_monitor_build_info", "Versions, always 1",
                                 labels=["version", "bcc_version", "kernel"])
        info.add_metric([s.version, s.bcc_version, s.kernel], 1)
        yield info
        attached = GaugeMetricFamily("kcmp_monitor_program_attached",
                                     "1 if the program on this tracepoint is attached",
                                     labels=["tracepoint"])
        for tracepoint, ok in s.attached().items():
            attached.add_metric([tracepoint], 1 if ok else 0)
        yield attached
        costs = s.program_costs()
        runs_own = CounterMetricFamily(
            "kcmp_monitor_program_runs", "Runs of each of the monitor's BPF programs, as they "
            "count themselves (the raw_syscalls ones: for 32-bit kcmp only)", labels=["program"])
        time_own = CounterMetricFamily(
            "kcmp_monitor_program_run_seconds", "Time spent in each of the monitor's BPF "
            f"programs, estimated from one run in {1 << SAMPLE_SHIFT} timed",
            labels=["program"])
        for program, (count, ns) in sorted(costs.items()):
            runs_own.add_metric([program], count)
            time_own.add_metric([program], ns / 1e9)
        yield runs_own
        yield time_own
        if not s.bpf_stats_enabled():
            return
        run_time = CounterMetricFamily(
            "kcmp_monitor_bpf_run_seconds", "Time the kernel spent in each BPF program "
            "(while kernel.bpf_stats_enabled is 1)", labels=["program"])
        runs = CounterMetricFamily("kcmp_monitor_bpf_runs", "Runs of each BPF program "
                                   "(while kernel.bpf_stats_enabled is 1)", labels=["program"])
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
        return []

    def collect(self) -> Iterator[Metric]:
        s = self._summary()
        yield CounterMetricFamily("kcmp_context_events", "Streamed kcmp calls given context",
                                  value=s.events)
        crossings = CounterMetricFamily(
            "kcmp_boundary_crossings", "Streamed kcmp calls whose caller and a target sat in "
            "different pid, mount or network namespaces or containers, by kind",
            labels=["kind"])
        for kind, value in s.crossings.items():
            crossings.add_metric([kind], value)
        yield crossings
        yield CounterMetricFamily(
            "kcmp_context_unresolved", "Streamed kcmp calls whose caller or a target could "
            "not be found in /proc or the process table", value=s.unresolved)


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
        return []

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("kcmp_monitor_containers_known", "Containers whose names the "
                                "runtimes have told (remembered after they are gone)",
                                value=self._runtime.known)
        yield CounterMetricFamily(
            "kcmp_monitor_container_misses", "Container ids met in a streamed event before "
            "their runtime had named them (then looked up on the side)",
            value=self._runtime.misses)


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
        return []

    def collect(self) -> Iterator[Metric]:
        found = CounterMetricFamily("kcmp_detections", "Findings of the kcmp signatures",
                                    labels=["signature", "severity"])
        for (signature, severity), count in sorted(self._detector.counts.items()):
            found.add_metric([signature, severity], count)
        yield found
        evicted = CounterMetricFamily(
            "kcmp_detection_keys_evicted", "Callers or pairs a signature stopped following to "
            "stay within its bound (the least recently seen): a behaviour spread over more "
            "may go unseen", labels=["signature"])
        for signature, count in sorted(self._detector.evicted.items()):
            evicted.add_metric([signature], count)
        yield evicted


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
