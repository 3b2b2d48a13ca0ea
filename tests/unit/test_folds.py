"""Runs the kernel folds, as user space closes those whose thread went quiet."""

import ctypes

from kcmp_monitor import abi
from kcmp_monitor.kernel import events, folds
from kcmp_monitor.kernel.events import Args, Event
from tests.records import encode

WINDOW = 1_000_000_000


class FakeMap:
    """A BCC hash map of u32 keys: items_lookup_batch gives them as ints."""

    Key = ctypes.c_uint32
    Leaf = ctypes.c_uint64

    def __init__(self, items=()):
        self.items = dict(items)

    def items_lookup_batch(self):
        return list(self.items.items())

    def __setitem__(self, key, value):
        self.items[key.value] = value.value


def _first(tid=7, ret=0):
    return encode(Event(
        ts_ns=100, duration_ns=40, cgroup_id=1, tgid=7, tid=tid, uid=0, gid=0, comm=b"loop",
        ret=ret, compat=False, priority=True,
        args=Args(pid1=7, pid2=7, type=abi.KcmpType.KCMP_VM, idx1=0, idx2=0, slot=None,
                  slot_fault=False)))


def _run(record, run_ns, first_ns, last_ns, repeat, outside=0):
    record = record.ljust(events.FILES_RECORD_SIZE, b"\0")
    return record + folds.FOLD_TAIL.pack(run_ns, first_ns, last_ns, 50 * repeat, repeat,
                                         outside)


def _folds(**runs):
    runs_map = FakeMap({int(tid[1:]): run for tid, run in runs.items()})
    swept = FakeMap()
    return folds.Folds(runs_map, swept, WINDOW, files=True), swept


def test_a_quiet_run_past_its_window_is_streamed_as_the_kernel_would():
    f, swept = _folds(t7=_run(_first(), 150, 200, 900, 41))
    assert f.sweep(150 + WINDOW) == []  # the margin: a call may still be counting into it
    (raw,) = f.sweep(150 + WINDOW + folds.MARGIN_NS)
    event = events.decode(raw)
    assert (event.repeat, event.ts_ns, event.last_ns, event.duration_ns) == (41, 200, 900, 50)
    assert event.tid == 7 and event.args.pid1 == 7 and not event.priority  # a benign call
    assert swept.items == {7: 200}  # marked for the kernel
    assert f.sweep(10 * WINDOW) == []  # once


def test_an_urgent_run_keeps_the_priority_lane():
    f, _ = _folds(t8=_run(_first(8, ret=-abi.EPERM), 0, 10, 20, 3))
    (raw,) = f.sweep(2 * WINDOW)
    assert events.decode(raw).priority


def test_runs_without_folded_calls_or_still_open_are_left():
    f, swept = _folds(t7=_run(_first(), 0, 0, 0, 0), t8=_run(_first(8), WINDOW, 5, 9, 4))
    assert f.sweep(WINDOW + 10) == [] and swept.items == {}
    assert [events.decode(r).tid for r in f.sweep(WINDOW + 10, final=True)] == [8]


def test_the_kernels_record_of_a_swept_run_is_dropped_once():
    f, _ = _folds(t7=_run(_first(), 0, 200, 900, 41))
    (swept,) = f.sweep(2 * WINDOW)
    other = folds.folded(_first(8), 5, 200, 300, 0, False)
    assert f.unswept([swept, other, _first()]) == [other, _first()]
    assert f.unswept([swept]) == [swept]  # a second one is not of that run


def test_a_run_of_a_call_naming_fds_keeps_the_kernels_view_of_them():
    record = encode(Event(
        ts_ns=100, duration_ns=40, cgroup_id=1, tgid=7, tid=9, uid=0, gid=0, comm=b"criu",
        ret=0, compat=False, files=(None, None, None),
        args=Args(pid1=7, pid2=7, type=abi.KcmpType.KCMP_FILE, idx1=3, idx2=3, slot=None,
                  slot_fault=False)))
    assert len(record) == events.FILES_RECORD_SIZE
    f, _ = _folds(t9=record + folds.FOLD_TAIL.pack(0, 10, 20, 0, 5, 0))
    (raw,) = f.sweep(2 * WINDOW)
    assert len(raw) == events.FILES_RECORD_SIZE and events.decode(raw).repeat == 5
