"""Probe logic against a fake kcmp and a fake /proc: grouping, failures, timeouts, views."""

import errno
import json
import math
import random
import subprocess
import time

import pytest

from kcmp_monitor.probe import logic as probe
from kcmp_monitor.probe import views as probeview
from kcmp_monitor.probe.freeze import frozen
from kcmp_monitor.probe.kcmpcall import KcmpError

FILE = 0


class FakeProc(probe.Proc):
    """fds as {pid: {fd: (inode, description)}}; descriptions order like kernel pointers."""

    def __init__(self, table):
        super().__init__("/nonexistent")
        self.table = table

    def task(self, pid):
        if pid not in self.table:
            raise probe.NoSuchTarget(f"no process {pid}")
        return probe.Task(pid=pid, tgid=pid, name="x", state="S", threads=(pid,))

    def fds(self, pid):
        if pid not in self.table:
            raise probe.NoSuchTarget(f"no process {pid}")
        return sorted(self.table[pid])

    def fd_key(self, pid, fd):
        entry = self.table.get(pid, {}).get(fd)
        return None if entry is None else (1, entry[0])

    def fd_path(self, pid, fd):
        entry = self.table.get(pid, {}).get(fd)
        return None if entry is None else f"/file{entry[0]}"


class FakeKcmp:
    def __init__(self, proc, fail=None):
        self.proc = proc
        self.calls = 0
        self.fail = fail  # (pid, after n calls): that process vanishes

    def __call__(self, pid1, pid2, kcmp_type, idx1=0, idx2=0):
        self.calls += 1
        if self.fail and self.calls > self.fail[1]:
            self.proc.table.pop(self.fail[0], None)
        assert kcmp_type == FILE
        try:
            d1 = self.proc.table[pid1][idx1][1]
            d2 = self.proc.table[pid2][idx2][1]
        except KeyError:
            raise KcmpError(errno.ESRCH if pid1 not in self.proc.table or
                            pid2 not in self.proc.table else errno.EBADF, "gone") from None
        return 0 if d1 == d2 else (1 if d1 < d2 else 2)


def _groups(report):
    return sorted(sorted((m.pid, m.fd) for m in g.members) for g in report.groups)


def test_groups_by_description_not_by_file():
    table = {10: {3: (7, "a"), 4: (7, "a"), 5: (7, "b"), 6: (8, "c")},
             20: {3: (7, "a"), 5: (7, "b"), 9: (9, "d")}}
    proc = FakeProc(table)
    report = probe.shared_files([20, 10], FakeKcmp(proc), proc)
    assert _groups(report) == [[(10, 3), (10, 4), (20, 3)], [(10, 5), (20, 5)]]
    assert report.pids == [10, 20] and report.fds == 7 and report.gone == []
    assert report.naive_pairs == 21
    assert report.groups[0].path == "/file7"


def test_calls_stay_within_n_log_n_on_one_big_bucket():
    rng = random.Random(1)
    table = {pid: {fd: (1, rng.randrange(50)) for fd in range(100)} for pid in range(1, 21)}
    proc = FakeProc(table)
    kcmp = FakeKcmp(proc)
    report = probe.shared_files(list(table), kcmp, proc)
    n = report.fds
    assert kcmp.calls <= 1.5 * n * math.log2(n)
    by_desc = {}
    for pid, fds in table.items():
        for fd, (_, desc) in fds.items():
            by_desc.setdefault(desc, []).append((pid, fd))
    assert _groups(report) == sorted(sorted(v) for v in by_desc.values() if len(v) > 1)


def test_a_process_vanishing_mid_sort_is_dropped_and_reported():
    table = {pid: {fd: (1, fd) for fd in range(20)} for pid in (1, 2, 3)}
    proc = FakeProc(table)
    report = probe.shared_files([1, 2, 3], FakeKcmp(proc, fail=(3, 30)), proc)
    assert _groups(report) == [[(1, fd), (2, fd)] for fd in range(20)]
    assert {ref.pid for ref, _ in report.gone} == {3}
    assert {reason for _, reason in report.gone} == {"ESRCH"}


def test_permission_failure_ends_the_probe():
    table = {1: {3: (1, "a")}, 2: {3: (1, "a")}}
    proc = FakeProc(table)

    def denied(*_args):
        raise KcmpError(errno.EPERM, "Operation not permitted")

    with pytest.raises(probe.NoPermission, match="CAP_SYS_PTRACE"):
        probe.shared_files([1, 2], denied, proc)


def test_a_blocked_call_times_out():
    def blocked(*_args):
        time.sleep(30)

    caller = probe.WatchedKcmp(blocked)
    start = time.monotonic()
    with pytest.raises(probe.ProbeTimeout, match="blocked for more than 0.2 s"):
        probe.run_watched(lambda: caller(1, 2, 1), caller, timeout=0.2)
    assert time.monotonic() - start < 2


def test_errors_raised_in_the_worker_reach_the_caller():
    caller = probe.WatchedKcmp(lambda *a: 0)

    def fail():
        raise probe.NoSuchTarget("no process 7")

    with pytest.raises(probe.NoSuchTarget):
        probe.run_watched(fail, caller)
    assert probe.run_watched(lambda: caller(1, 1, 1) + 5, caller) == 5 and caller.calls == 1


@pytest.mark.parametrize("err, kind, code", [
    (errno.EPERM, probe.NoPermission, 77),
    (errno.ESRCH, probe.NoSuchTarget, 66),
    (errno.ENOSYS, probe.Unavailable, 69),
])
def test_fatal_errors(err, kind, code):
    exc = probe.fatal(KcmpError(err, "x"), "kcmp(1, 2, KCMP_VM)")
    assert isinstance(exc, kind) and exc.exit_code == code


def test_freeze_stops_and_always_resumes(tmp_path):
    sleeper = subprocess.Popen(["sleep", "30"])
    proc = probe.Proc()
    while proc.task(sleeper.pid).state != "S":  # started and asleep
        time.sleep(0.01)
    try:
        with pytest.raises(RuntimeError), frozen([sleeper.pid], proc) as stopped:
            assert stopped == [sleeper.pid]
            assert proc.task(sleeper.pid).state == "T"
            raise RuntimeError("midway")
        assert proc.task(sleeper.pid).state not in "Tt"  # running again
    finally:
        sleeper.kill()
        sleeper.wait()


def test_views():
    task1 = probe.Task(pid=1, tgid=1, name="a\x1b", state="S", threads=(1,))
    task2 = probe.Task(pid=3, tgid=2, name="b", state="Z", threads=(2, 3))
    answers = [probe.Answer(1, "address space", 0, None, None),
               probe.Answer(5, "I/O context", 0, None, probe.LAZY),
               probe.Answer(6, "SysV semaphore undo list", None, errno.EOPNOTSUPP, None)]
    report = probe.PairReport(task1, task2, answers, probe.task_notes(task2))
    table = probeview.pair_table(report, frozen=True)
    assert table.splitlines() == [
        "kcmp probe 1 (a\\x1b) and 3 (b): exact: the processes were stopped during the probe",
        "kcmp type       resource                    shared  note",
        "KCMP_VM         address space               yes",
        f"KCMP_IO         I/O context                 yes     {probe.LAZY}",
        "KCMP_SYSVSEM    SysV semaphore undo list    error   EOPNOTSUPP (Operation not "
        "supported)",
        "note: 3 is a thread of process 2: kcmp compares that thread's resources",
        "note: 3 is a zombie or exiting (Z); probe a live thread instead: 2",
    ]
    record = json.loads(json.dumps(probeview.pair_json(report, frozen=False)))
    assert record["resources"][2] == {
        "resource": "SysV semaphore undo list", "kcmpType": "KCMP_SYSVSEM", "shared": None,
        "result": None, "errno": "EOPNOTSUPP", "error": "Operation not supported",
        "caveat": None}
    assert record["comm1"] == "a\x1b" and record["exact"] is False


class PickyProc(FakeProc):
    """Process 1 may not be looked at; process 99 is gone."""

    def fd_key(self, pid, fd):
        if pid == 1:
            raise PermissionError(13, "Permission denied")
        return super().fd_key(pid, fd)


def test_all_processes_skips_what_it_cannot_see_but_named_ones_must_be_there():
    table = {1: {0: (5, "z")}, 10: {3: (7, "a")}, 20: {3: (7, "a")}}
    proc = PickyProc(table)
    report = probe.shared_files([1, 10, 20, 99], FakeKcmp(proc), proc, strict=False)
    assert _groups(report) == [[(10, 3), (20, 3)]]
    assert report.skipped == [(1, "not permitted"), (99, "exited")]
    with pytest.raises(probe.NoSuchTarget):
        probe.shared_files([10, 99], FakeKcmp(proc), proc)
    with pytest.raises(probe.NoPermission, match="CAP_SYS_PTRACE"):
        probe.shared_files([1, 10], FakeKcmp(proc), proc)
