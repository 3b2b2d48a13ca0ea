"""The tracing loop against a fake event source: order, batching and lost-event accounting."""

from kcmp_monitor.kernel import counters
from kcmp_monitor.context.processes import ProcReader
from kcmp_monitor.kernel.events import Args, Event
from kcmp_monitor.trace import Tracer
from tests.records import encode


class FakeSource:
    def __init__(self, polls):
        self.polls = list(polls)  # per read: (records, dropped counter after it)
        self.dropped = 0

    def open_events(self):
        pass

    def read(self, timeout_ms, final=False):
        if not self.polls:
            return []
        records, self.dropped = self.polls.pop(0)
        return records

    def stat(self, index):
        return self.dropped if index == counters.STAT_DROPPED else 0


class RecordingSink:
    def __init__(self):
        self.seen = []

    def event(self, event, ctx, wall_ns):
        self.seen.append(("event", event.args.pid1, wall_ns - event.ts_ns > 0))

    def lost(self, count, wall_ns, lane="bulk"):
        self.seen.append(("lost", count) if lane == "bulk" else ("lost", count, lane))

    def flush(self):
        self.seen.append(("flush",))


def _raw(pid1):
    return encode(Event(
        ts_ns=1000, duration_ns=5, cgroup_id=1, tgid=1, tid=1, uid=0, gid=0, comm=b"x", ret=0,
        compat=False, args=Args(pid1=pid1, pid2=1, type=1, idx1=0, idx2=0, slot=None,
                                slot_fault=False)))


def test_events_in_order_then_new_losses_then_flush(tmp_path):
    source = FakeSource([([_raw(1), _raw(2)], 0), ([_raw(3)], 7), ([], 7), ([_raw(4)], 10)])
    sink = RecordingSink()
    tracer = Tracer(source, ProcReader(str(tmp_path)), sinks=[sink])
    stops = iter([False, False, False, True])
    summary = tracer.run(lambda: next(stops))
    assert sink.seen == [
        ("event", 1, True), ("event", 2, True), ("flush",),
        ("event", 3, True), ("lost", 7), ("flush",),
        ("flush",),
        ("event", 4, True), ("lost", 3), ("flush",),
    ]
    assert (summary.events, summary.lost) == (4, 10)


def test_every_sink_sees_each_event_loss_and_flush_in_order(tmp_path):
    """The console and the event file, side by side."""
    source = FakeSource([([_raw(1)], 2)])
    first, second = RecordingSink(), RecordingSink()
    Tracer(source, ProcReader(str(tmp_path)), sinks=[first, second]).run(
        iter([False, True]).__next__)
    assert first.seen == second.seen == [("event", 1, True), ("lost", 2), ("flush",), ("flush",)]


def test_context_is_counted_without_a_sink(tmp_path):
    """The exporter's --context: every traced call enriched and counted, nothing printed."""
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "status").write_text("NSpid:\t1\n")
    source = FakeSource([([_raw(1), _raw(2)], 0)])
    tracer = Tracer(source, ProcReader(str(tmp_path)), count_context=True)
    summary = tracer.run(iter([False, True]).__next__)
    # pid 1 and the caller are nowhere in this /proc: the call's context is unresolved
    assert (summary.events, summary.unresolved) == (2, 2)
    assert summary.crossings == {"pid": 0, "mnt": 0, "net": 0, "container": 0}


def test_losses_of_the_priority_lane_are_said_apart(tmp_path):
    class TwoLanes(FakeSource):
        def stat(self, index):
            return {counters.STAT_DROPPED: self.dropped,
                    counters.STAT_DROPPED_PRIORITY: self.dropped // 2}.get(index, 0)

    sink = RecordingSink()
    tracer = Tracer(TwoLanes([([_raw(1)], 4), ([], 10)]), ProcReader(str(tmp_path)), sinks=[sink])
    tracer.step(0)
    tracer.step(0)
    assert [s for s in sink.seen if s[0] == "lost"] == [
        ("lost", 2, "priority"), ("lost", 4), ("lost", 3, "priority"), ("lost", 6)]
    assert (tracer.summary.lost, tracer.summary.lost_priority) == (15, 5)
