"""A table read again on a miss, at most once an interval."""

from kcmp_monitor.context.refresh import MissRefreshed


def test_a_miss_reads_again_at_most_once_an_interval():
    reads = []

    def load(*args):
        reads.append(args)
        return {len(reads): "x"}

    table = MissRefreshed(load, refresh_s=3600)
    assert table.get(1, "a") == "x" and reads == [("a",)]
    assert table.get(2, "b") is None and table.get(3) is None  # a flood of misses: no reads
    assert reads == [("a",)]
    eager = MissRefreshed(load, refresh_s=0)
    assert eager.get(2) == "x" and eager.get(2) == "x" and len(reads) == 2  # hits: no reads
    assert eager.get(99) is None and len(reads) == 3
