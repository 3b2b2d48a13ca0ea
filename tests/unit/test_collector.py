"""The collector against a fake map source: the exposition, line for line."""

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from kcmp_monitor.kernel import counters
from kcmp_monitor.exporter.collector import (
    ContextCollector,
    DetectionCollector,
    KcmpCollector,
    RuntimeCollector,
    SelfState,
    StickyTop,
)
from kcmp_monitor.kernel.counters import SLOTS, Snapshot, TypeStats


def _state(bpf_stats=False):
    return SelfState(
        version="0.1.0", bcc_version="0.26.0", kernel="6.18.44",
        attached=lambda: {"syscalls:sys_enter_kcmp": True, "raw_syscalls:sys_enter": False},
        run_stats=lambda: {"tracepoint__syscalls__sys_exit_kcmp": (1_500_000_000, 42)},
        bpf_stats_enabled=lambda: bpf_stats,
        program_costs=lambda: {"raw_tracepoint__sys_exit": (6400, 128_000.0)})


def _snapshot(comms=None):
    types = [TypeStats() for _ in range(SLOTS)]
    vm = types[1]
    vm.outcome = [5, 2, 3]
    vm.errnos[1] = 2
    vm.errnos[3] = 1
    vm.duration_sum_ns = 12_000
    vm.duration_log2[9] = 4  # below 512 ns
    vm.duration_log2[12] = 5  # below 4096 ns
    vm.duration_log2[40] = 1  # beyond the last bucket: only in +Inf
    types[8].outcome = [0, 0, 7]
    types[8].errnos[22] = 7
    types[9].outcome = [0, 0, 4]
    types[9].errnos[1] = 3
    types[9].errnos[255] = 1  # errno 255 and above
    stats = [0] * counters.STAT_COUNT
    stats[counters.STAT_COMPAT] = 6
    stats[counters.STAT_DROPPED] = 11
    stats[counters.STAT_COMM_OVERFLOW] = 2
    return Snapshot(types=types, denied={(1, 65534): 2, (9, 0): 3},
                    comms=comms if comms is not None else {b"criu": (8, 0), b"\x1b[31m": (9, 5)},
                    stats=stats)


def _exposition(collector):
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def _lines(text, prefix):
    return [line for line in text.splitlines() if line.startswith(prefix)]


@pytest.fixture
def text():
    return _exposition(KcmpCollector(_snapshot, _state()))


def test_every_type_and_outcome_exists_from_the_start(text):
    calls = _lines(text, "kcmp_calls_total")
    assert len(calls) == 30
    assert 'kcmp_calls_total{kcmp_type="KCMP_FILE",outcome="same"} 0.0' in calls
    assert calls[3:6] == [
        'kcmp_calls_total{kcmp_type="KCMP_VM",outcome="same"} 5.0',
        'kcmp_calls_total{kcmp_type="KCMP_VM",outcome="different"} 2.0',
        'kcmp_calls_total{kcmp_type="KCMP_VM",outcome="error"} 3.0',
    ]
    assert calls[-6:] == [
        'kcmp_calls_total{kcmp_type="unknown",outcome="same"} 0.0',
        'kcmp_calls_total{kcmp_type="unknown",outcome="different"} 0.0',
        'kcmp_calls_total{kcmp_type="unknown",outcome="error"} 7.0',
        'kcmp_calls_total{kcmp_type="unseen",outcome="same"} 0.0',
        'kcmp_calls_total{kcmp_type="unseen",outcome="different"} 0.0',
        'kcmp_calls_total{kcmp_type="unseen",outcome="error"} 4.0',
    ]


def test_errors_by_errno_name(text):
    assert _lines(text, "kcmp_errors_total") == [
        'kcmp_errors_total{errno="EPERM",kcmp_type="KCMP_VM"} 2.0',
        'kcmp_errors_total{errno="ESRCH",kcmp_type="KCMP_VM"} 1.0',
        'kcmp_errors_total{errno="EINVAL",kcmp_type="unknown"} 7.0',
        'kcmp_errors_total{errno="EPERM",kcmp_type="unseen"} 3.0',
        'kcmp_errors_total{errno="other",kcmp_type="unseen"} 1.0',
    ]


def test_permission_failures_compat_and_dropped(text):
    assert _lines(text, "kcmp_permission_denied_total") == [
        'kcmp_permission_denied_total{kcmp_type="KCMP_VM",uid="65534"} 2.0',
        'kcmp_permission_denied_total{kcmp_type="unseen",uid="0"} 3.0',
    ]
    assert _lines(text, "kcmp_compat_calls_total") == ["kcmp_compat_calls_total 6.0"]
    assert _lines(text, "kcmp_events_dropped_total") == [
        'kcmp_events_dropped_total{lane="bulk"} 11.0',
        'kcmp_events_dropped_total{lane="priority"} 0.0']


def test_duration_histogram_in_seconds(text):
    vm = [line for line in _lines(text, "kcmp_call_duration_seconds")
          if 'kcmp_type="KCMP_VM"' in line]
    assert vm[:6] == [
        'kcmp_call_duration_seconds_bucket{kcmp_type="KCMP_VM",le="2.56e-07"} 0.0',
        'kcmp_call_duration_seconds_bucket{kcmp_type="KCMP_VM",le="5.12e-07"} 4.0',
        'kcmp_call_duration_seconds_bucket{kcmp_type="KCMP_VM",le="1.024e-06"} 4.0',
        'kcmp_call_duration_seconds_bucket{kcmp_type="KCMP_VM",le="2.048e-06"} 4.0',
        'kcmp_call_duration_seconds_bucket{kcmp_type="KCMP_VM",le="4.096e-06"} 9.0',
        'kcmp_call_duration_seconds_bucket{kcmp_type="KCMP_VM",le="8.192e-06"} 9.0',
    ]
    assert vm[-4:] == [
        'kcmp_call_duration_seconds_bucket{kcmp_type="KCMP_VM",le="1.073741824"} 9.0',
        'kcmp_call_duration_seconds_bucket{kcmp_type="KCMP_VM",le="+Inf"} 10.0',
        'kcmp_call_duration_seconds_count{kcmp_type="KCMP_VM"} 10.0',
        'kcmp_call_duration_seconds_sum{kcmp_type="KCMP_VM"} 1.2e-05',
    ]
    assert not any('kcmp_type="unseen"' in line
                   for line in _lines(text, "kcmp_call_duration_seconds"))


def test_callers_by_name_escaped_and_bounded(text):
    assert _lines(text, "kcmp_caller_calls_total") == [
        'kcmp_caller_calls_total{comm="\\\\x1b[31m"} 9.0',
        'kcmp_caller_calls_total{comm="criu"} 8.0',
        'kcmp_caller_calls_total{comm="(other processes)"} 2.0',
    ]
    assert _lines(text, "kcmp_caller_permission_denied_total") == [
        'kcmp_caller_permission_denied_total{comm="\\\\x1b[31m"} 5.0',
        'kcmp_caller_permission_denied_total{comm="(other processes)"} 0.0',
    ]


def test_self_metrics(text):
    assert _lines(text, "kcmp_monitor_build_info") == [
        'kcmp_monitor_build_info{bcc_version="0.26.0",kernel="6.18.44",version="0.1.0"} 1.0']
    assert _lines(text, "kcmp_monitor_program_attached") == [
        'kcmp_monitor_program_attached{tracepoint="syscalls:sys_enter_kcmp"} 1.0',
        'kcmp_monitor_program_attached{tracepoint="raw_syscalls:sys_enter"} 0.0',
    ]
    assert _lines(text, "kcmp_monitor_scrape_error") == ["kcmp_monitor_scrape_error 0.0"]
    assert not _lines(text, "kcmp_monitor_bpf_run")


def test_programs_own_runs_and_sampled_time_always():
    text = _exposition(KcmpCollector(_snapshot, _state()))
    assert _lines(text, "kcmp_monitor_program_run") == [
        'kcmp_monitor_program_runs_total{program="raw_tracepoint__sys_exit"} 6400.0',
        'kcmp_monitor_program_run_seconds_total{program="raw_tracepoint__sys_exit"} 0.000128',
    ]


def test_bpf_run_stats_when_enabled():
    text = _exposition(KcmpCollector(_snapshot, _state(bpf_stats=True)))
    assert _lines(text, "kcmp_monitor_bpf_run") == [
        'kcmp_monitor_bpf_run_seconds_total{program="tracepoint__syscalls__sys_exit_kcmp"} 1.5',
        'kcmp_monitor_bpf_runs_total{program="tracepoint__syscalls__sys_exit_kcmp"} 42.0',
    ]


def test_unreadable_maps_give_an_error_not_a_number():
    def broken():
        raise OSError("map gone")

    text = _exposition(KcmpCollector(broken, _state()))
    assert _lines(text, "kcmp_monitor_scrape_error") == ["kcmp_monitor_scrape_error 1.0"]
    assert not _lines(text, "kcmp_calls_total")
    assert _lines(text, "kcmp_monitor_build_info")


def test_sticky_top_keeps_other_monotonic():
    top = StickyTop(2)
    assert top.split({b"a": 1}, 0) == [("a", 1), ("(other processes)", 0)]
    assert top.split({b"a": 1, b"b": 5, b"c": 9}, 0) == [
        ("a", 1), ("c", 9), ("(other processes)", 5)]
    assert top.split({b"a": 2, b"b": 7, b"c": 9, b"d": 100}, 3) == [
        ("a", 2), ("c", 9), ("(other processes)", 110)]


def test_context_metrics_every_kind_from_the_start():
    from kcmp_monitor.trace import Summary

    summary = Summary(events=7, unresolved=2)
    summary.crossings["mnt"] = 3
    registry = CollectorRegistry()
    registry.register(ContextCollector(lambda: summary))
    lines = [line for line in generate_latest(registry).decode().splitlines()
             if not line.startswith("#")]
    assert lines == [
        "kcmp_context_events_total 7.0",
        'kcmp_boundary_crossings_total{kind="pid"} 0.0',
        'kcmp_boundary_crossings_total{kind="mnt"} 3.0',
        'kcmp_boundary_crossings_total{kind="net"} 0.0',
        'kcmp_boundary_crossings_total{kind="container"} 0.0',
        "kcmp_context_unresolved_total 2.0",
    ]


def test_calls_from_other_namespaces_and_seccomp_refusals():
    snap = _snapshot()
    snap.types[1].seccomp = 4
    snap.namespaced = [0] * counters.NS_COUNTERS
    snap.namespaced[counters.ns_index(0, 1, 2)] = 4  # pid, KCMP_VM, error
    snap.namespaced[counters.ns_index(2, 0, 0)] = 3  # net, KCMP_FILE, same
    text = _exposition(KcmpCollector(lambda: snap, _state()))
    namespaced = [line for line in _lines(text, "kcmp_namespaced_calls_total{")
                  if not line.endswith(" 0.0")]
    assert namespaced == [
        'kcmp_namespaced_calls_total{kcmp_type="KCMP_VM",namespace="pid",outcome="error"} 4.0',
        'kcmp_namespaced_calls_total{kcmp_type="KCMP_FILE",namespace="net",outcome="same"} 3.0']
    assert len(_lines(text, "kcmp_namespaced_calls_total{")) == 3 * 10 * 3
    assert _lines(text, 'kcmp_seccomp_refused_total{kcmp_type="KCMP_VM"}') == [
        'kcmp_seccomp_refused_total{kcmp_type="KCMP_VM"} 4.0']
    assert not _lines(_exposition(KcmpCollector(_snapshot, _state())), "kcmp_namespaced")


def test_runtime_metrics_say_how_containers_were_named():
    class Runtime:
        known, misses = 12, 3

    registry = CollectorRegistry()
    registry.register(RuntimeCollector(Runtime()))
    lines = generate_latest(registry).decode().splitlines()
    assert "kcmp_monitor_containers_known 12.0" in lines
    assert "kcmp_monitor_container_misses_total 3.0" in lines


def test_detection_metrics_every_signature_from_zero():
    class Detector:
        counts = {("KCMP-001", "high"): 0, ("KCMP-002", "medium"): 2}
        evicted = {"KCMP-001": 0, "KCMP-002": 5}

    registry = CollectorRegistry()
    registry.register(DetectionCollector(Detector()))
    lines = generate_latest(registry).decode().splitlines()
    assert 'kcmp_detections_total{severity="high",signature="KCMP-001"} 0.0' in lines
    assert 'kcmp_detections_total{severity="medium",signature="KCMP-002"} 2.0' in lines
    assert 'kcmp_detection_keys_evicted_total{signature="KCMP-002"} 5.0' in lines


def test_collectors_say_the_families_they_serve_without_reading_the_maps():
    """describe() is what registration reads: the very families collect() yields (with the
    kernel's namespaced counts and its own statistics), and no map read to say them."""
    snap = _snapshot()
    snap.namespaced = [0] * counters.NS_COUNTERS
    reads = []
    collector = KcmpCollector(lambda: reads.append(1) or snap, _state(bpf_stats=True))
    registry = CollectorRegistry()
    registry.register(collector)
    assert reads == []
    assert sorted(m.name for m in collector.describe()) == sorted(
        m.name for m in collector.collect())


def test_a_family_served_twice_is_refused_at_registration():
    registry = CollectorRegistry()
    registry.register(ContextCollector(lambda: None))
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(ContextCollector(lambda: None))
