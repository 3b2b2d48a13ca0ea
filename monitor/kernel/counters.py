"""The counters the kernel keeps (bpf/kcmp.h): the maps' layouts and indexes, and their values
summed over CPUs.

The layouts below mirror struct kcmp_type_stats and friends; tests/unit/test_counters.py
compiles the header to hold them to the same contract.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from collections.abc import Iterable

from .. import abi

SLOTS = 10  # KCMP_SLOTS: the Linux types 0..7, then these two
SLOT_UNKNOWN = abi.KCMP_TYPES  # a type the kernel rejects with EINVAL
SLOT_UNSEEN = abi.KCMP_TYPES + 1  # an exit without entry: no tracepoint saw the type
SLOT_NAMES = tuple(t.name for t in abi.KcmpType) + ("unknown", "unseen")
OUTCOMES = ("same", "different", "error")
ERRNO_SLOTS = 256  # the last slot counts every errno at or above it
LOG2_SLOTS = 64  # slot k: durations below 2^k ns (and at least 2^(k-1))

# Indexes of the per-CPU stats map.
STAT_DROPPED = 0  # ring buffer full: an event lost
STAT_INFLIGHT = 1  # in-flight map full: an entry not kept
STAT_COMPAT = 2
STAT_DENIED_OVERFLOW = 3
STAT_COMM_OVERFLOW = 4
STAT_COMM_OVERFLOW_DENIED = 5
STAT_DROPPED_PRIORITY = 6  # both rings full: an event of the priority lane lost
STAT_COUNT = 7


# The "namespaced" per-CPU array: calls from outside the monitor's namespace of each kind,
# by type slot and outcome (KCMP_NS_INDEX).
NS_KINDS = ("pid", "mnt", "net")
NS_COUNTERS = len(NS_KINDS) * SLOTS * len(OUTCOMES)


def ns_index(kind: int, slot: int, outcome: int) -> int:
    return (kind * SLOTS + slot) * len(OUTCOMES) + outcome


def slot_of(kcmp_type: int) -> int:
    """The counter slot of a type as the kernel program files it."""
    return kcmp_type if 0 <= kcmp_type < abi.KCMP_TYPES else SLOT_UNKNOWN


# The per-CPU array "prog_stats" holds one of these per program (enum kcmp_prog; their order
# is features.HOOKS').
SAMPLE_SHIFT = 6  # one run in 2^SAMPLE_SHIFT is timed
PROG_STATS = struct.Struct("<QQQ")  # runs, timed, timed_ns


def program_cost(per_cpu: Iterable[bytes]) -> tuple[int, float]:
    """(runs, their estimated time in ns) of one program, from its per-CPU records: the timed
    runs' mean time, times every run."""
    runs = timed = timed_ns = 0
    for raw in per_cpu:
        r, t, ns = PROG_STATS.unpack(raw)
        runs, timed, timed_ns = runs + r, timed + t, timed_ns + ns
    return runs, (timed_ns / timed * runs if timed else 0.0)


TYPE_STATS = struct.Struct(f"<{len(OUTCOMES)}QQ{LOG2_SLOTS}Q{ERRNO_SLOTS}QQ")
DENIED_KEY = struct.Struct("<II")
COMM_STATS = struct.Struct("<QQ")


@dataclass
class TypeStats:
    outcome: list[int] = field(default_factory=lambda: [0] * len(OUTCOMES))
    duration_sum_ns: int = 0
    duration_log2: list[int] = field(default_factory=lambda: [0] * LOG2_SLOTS)
    errnos: list[int] = field(default_factory=lambda: [0] * ERRNO_SLOTS)
    seccomp: int = 0  # refused before entry while under a seccomp filter

    @classmethod
    def from_cpus(cls, per_cpu: Iterable[bytes]) -> TypeStats:
        """The sum of one slot's per-CPU records."""
        total = [0] * (len(OUTCOMES) + 1 + LOG2_SLOTS + ERRNO_SLOTS + 1)
        for raw in per_cpu:
            total = [a + b for a, b in zip(total, TYPE_STATS.unpack(raw))]
        n, errnos = len(OUTCOMES), len(OUTCOMES) + 1 + LOG2_SLOTS
        return cls(outcome=total[:n], duration_sum_ns=total[n],
                   duration_log2=total[n + 1:errnos],
                   errnos=total[errnos:errnos + ERRNO_SLOTS], seccomp=total[-1])


@dataclass
class Snapshot:
    """Everything the kernel counted, read at one scrape."""

    types: list[TypeStats]  # by slot
    denied: dict[tuple[int, int], int]  # (slot, uid) -> permission failures
    comms: dict[bytes, tuple[int, int]]  # process name -> (calls, permission failures)
    stats: list[int]  # by STAT_*
    # by ns_index(); None where the program does not count them (no kernel caller context)
    namespaced: list[int] | None = None
