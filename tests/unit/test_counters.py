"""The mirrors of the kernel's counter structs, against bpf/kcmp.h compiled by gcc."""

import struct

import pytest

from kcmp_monitor.kernel import counters
from kcmp_monitor.kernel.counters import TypeStats
from kcmp_monitor.kernel.features import PROGRAMS
from tests.helpers import ROOT, c_facts

# enum kcmp_prog's names, and the programs whose runs each index counts
ENUM_PROGRAMS = {
    "KCMP_PROG_ENTER": "tracepoint__syscalls__sys_enter_kcmp",
    "KCMP_PROG_EXIT": "tracepoint__syscalls__sys_exit_kcmp",
    "KCMP_PROG_NEWTASK": "tracepoint__task__task_newtask",
    "KCMP_PROG_RENAME": "tracepoint__task__task_rename",
    "KCMP_PROG_TASK_EXIT": "tracepoint__sched__sched_process_exit",
    "KCMP_PROG_NEWTASK_RAW": "raw_tracepoint__task_newtask",
    "KCMP_PROG_RAW_ENTER": "raw_tracepoint__sys_enter",
    "KCMP_PROG_RAW_EXIT": "raw_tracepoint__sys_exit",
}


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory):
    facts = [
        ("type_stats", "sizeof(struct kcmp_type_stats)"),
        ("outcome", "offsetof(struct kcmp_type_stats, outcome)"),
        ("duration_sum_ns", "offsetof(struct kcmp_type_stats, duration_sum_ns)"),
        ("duration_log2", "offsetof(struct kcmp_type_stats, duration_log2)"),
        ("errnos", "offsetof(struct kcmp_type_stats, errnos)"),
        ("seccomp", "offsetof(struct kcmp_type_stats, seccomp)"),
        ("denied_key", "sizeof(struct kcmp_denied_key)"),
        ("denied_uid", "offsetof(struct kcmp_denied_key, uid)"),
        ("comm_stats", "sizeof(struct kcmp_comm_stats)"),
        ("comm_denied", "offsetof(struct kcmp_comm_stats, denied)"),
        ("SLOTS", "KCMP_SLOTS"), ("ERRNO_SLOTS", "KCMP_ERRNO_SLOTS"),
        ("LOG2_SLOTS", "KCMP_LOG2_SLOTS"), ("OUTCOMES", "KCMP_OUTCOMES"),
        ("ERROR", "KCMP_OUTCOME_ERROR"),
        ("NS_COUNTERS", "KCMP_NS_COUNTERS"), ("NS_MNT", "KCMP_NS_MNT"),
        ("NS_INDEX", "KCMP_NS_INDEX(KCMP_NS_NET, 7, KCMP_OUTCOME_ERROR)"),
        ("prog_stats", "sizeof(struct kcmp_prog_stats)"),
        ("prog_timed_ns", "offsetof(struct kcmp_prog_stats, timed_ns)"),
        ("PROGS", "KCMP_PROGS"), ("SAMPLE_SHIFT", "KCMP_SAMPLE_SHIFT"),
    ] + [(name, name) for name in ENUM_PROGRAMS]
    return c_facts(tmp_path_factory.mktemp("counters"), [f'"{ROOT / "bpf" / "kcmp.h"}"'], facts)


def test_type_stats_layout(c_layout):
    n = len(counters.OUTCOMES)
    assert counters.TYPE_STATS.size == c_layout["type_stats"]
    assert c_layout["outcome"] == 0 and c_layout["duration_sum_ns"] == 8 * n
    assert c_layout["duration_log2"] == 8 * (n + 1)
    assert c_layout["errnos"] == 8 * (n + 1 + counters.LOG2_SLOTS)
    assert c_layout["seccomp"] == 8 * (n + 1 + counters.LOG2_SLOTS + counters.ERRNO_SLOTS)
    assert (counters.SLOTS, counters.ERRNO_SLOTS, counters.LOG2_SLOTS, n) == (
        c_layout["SLOTS"], c_layout["ERRNO_SLOTS"], c_layout["LOG2_SLOTS"],
        c_layout["OUTCOMES"])
    assert counters.OUTCOMES[c_layout["ERROR"]] == "error"


def test_map_key_and_value_layouts(c_layout):
    assert counters.DENIED_KEY.size == c_layout["denied_key"] and c_layout["denied_uid"] == 4
    assert counters.COMM_STATS.size == c_layout["comm_stats"] and c_layout["comm_denied"] == 8


def test_program_stats_layout_and_names(c_layout):
    assert counters.PROG_STATS.size == c_layout["prog_stats"] and c_layout["prog_timed_ns"] == 16
    assert (len(PROGRAMS), counters.SAMPLE_SHIFT) == (
        c_layout["PROGS"], c_layout["SAMPLE_SHIFT"])
    assert {name: PROGRAMS[c_layout[name]] for name in ENUM_PROGRAMS} == ENUM_PROGRAMS


def test_program_cost_is_the_timed_mean_times_every_run():
    cpus = [counters.PROG_STATS.pack(640, 10, 1000), counters.PROG_STATS.pack(64, 1, 100)]
    assert counters.program_cost(cpus) == (704, 100 * 704)
    assert counters.program_cost([counters.PROG_STATS.pack(0, 0, 0)]) == (0, 0.0)


def test_slot_names():
    assert counters.SLOT_NAMES == (
        "KCMP_FILE", "KCMP_VM", "KCMP_FILES", "KCMP_FS", "KCMP_SIGHAND", "KCMP_IO",
        "KCMP_SYSVSEM", "KCMP_EPOLL_TFD", "unknown", "unseen")
    assert [counters.slot_of(t) for t in (0, 7, 8, -1, 42)] == [0, 7, 8, 8, 8]


def test_type_stats_sum_over_cpus():
    def cpu(same, err22, dur_sum, log2_5, seccomp=0):
        values = [0] * (3 + 1 + counters.LOG2_SLOTS + counters.ERRNO_SLOTS + 1)
        values[0], values[2], values[3] = same, err22, dur_sum
        values[4 + 5] = log2_5
        values[4 + counters.LOG2_SLOTS + 22] = err22
        values[-1] = seccomp
        return struct.pack(f"<{len(values)}Q", *values)

    stats = TypeStats.from_cpus([cpu(1, 2, 300, 3, seccomp=1), cpu(10, 20, 4000, 30, 5)])
    assert stats.seccomp == 6
    assert stats.outcome == [11, 0, 22]
    assert stats.duration_sum_ns == 4300
    assert stats.duration_log2[5] == 33 and sum(stats.duration_log2) == 33
    assert stats.errnos[22] == 22 and sum(stats.errnos) == 22
    assert TypeStats.from_cpus([]) == TypeStats()


def test_namespaced_counter_layout(c_layout):
    assert counters.NS_COUNTERS == c_layout["NS_COUNTERS"]
    assert counters.NS_KINDS[c_layout["NS_MNT"]] == "mnt"
    assert counters.ns_index(2, 7, 2) == c_layout["NS_INDEX"]
