"""Context on the real kernel: callers and targets across pid namespaces, calls crossing a
boundary, and a caller that has exited before its event is read."""

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers import skip_or_fail

from .conftest import REPEAT, Daemon, Monitor, stopped
from .nscaller import child_of

pytestmark = pytest.mark.kernel
HERE = Path(__file__).resolve().parent
UNSHARE = ("unshare", "--pid", "--fork", "--mount-proc")


@pytest.fixture
def unshare(kernel_ready):
    if not shutil.which("unshare"):
        skip_or_fail("needs unshare (util-linux)")


def _status(pid):
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":\t")
        fields[key] = value.split()
    return fields


class Caller:
    """nscaller.py under a JSON and a console monitor filtered on its name."""

    def __init__(self, tmp_path, mode, *args, prefix=()):
        self.proc = subprocess.Popen([*prefix, sys.executable, str(HERE / "nscaller.py"), mode,
                                      *map(str, args)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.made = json.loads(self.proc.stdout.readline())
        self.js = Monitor(["--output", "json", "--comm", "nscaller"], tmp_path, f"{mode}-json")
        self.text = Monitor(["--comm", "nscaller"], tmp_path, f"{mode}-text")
        self.js.wait_started()
        self.text.wait_started()

    def go(self, events):
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        self.made = json.loads(self.proc.stdout.readline())
        assert self.proc.stdout.readline() == "ready\n"
        for m in (self.js, self.text):
            m.wait_lines(events)

    def finish(self):
        """Stop everything; (JSON records, console lines)."""
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0
        assert self.js.stop() == 0 and self.text.stop() == 0
        return [json.loads(line) for line in self.js.lines()], self.text.lines()


def test_a_caller_in_a_pid_namespace_is_translated_and_crossing_is_flagged(unshare, tmp_path):
    """The caller is pid 1 of a new pid namespace; it compares itself with a child there and
    with a process of a namespace nested in its own, by the numbers its namespace gives."""
    caller = Caller(tmp_path, "inner", prefix=UNSHARE)
    assert caller.made["pid"] == 1
    caller.go(2 * REPEAT)
    host = caller.proc.pid  # unshare; its child, the caller, is pid 1 inside
    live = {}
    for r in caller.js.lines():
        record = json.loads(r)
        for t in record["targets"]:  # read while the targets live: the truth to compare with
            live[t["hostPid"]] = _status(t["hostPid"])
    records, lines = caller.finish()
    assert len(records) == 2 * REPEAT
    child, nested = caller.made["child"], caller.made["nested"]
    by_pair = {}
    for r in records:
        by_pair.setdefault(tuple(a["value"] for a in r["args"][:2]), []).append(r)
    assert set(by_pair) == {(1, child), (1, nested)}
    me = records[0]["hostProcessId"]
    assert me != 1 and _parent(records[0]) == host
    for r in records:
        assert (r["processId"], r["hostProcessId"], r["callerPidNamespace"]) == (1, me, "other")
        assert r["contextUnresolved"] == [] and r["returnValue"] >= 0
        t1, t2 = r["targets"]
        assert (t1["pid"], t1["hostPid"], t1["processName"]) == (1, me, "nscaller")
        # The host pid found has the namespace pid asked for at the caller's level
        # (NSpid: lists one per level, the caller's at index 1) and the name /proc gives.
        status = live[t2["hostPid"]]
        assert int(status["NSpid"][1]) == t2["pid"] and status["Name"] == ["sleep"]
        assert t2["processName"] == "sleep" and t2["userId"] == 0
        assert t2["hostParentProcessId"] == int(status["PPid"][0])
    assert all(r["crossesBoundary"] == [] for r in by_pair[(1, child)])
    assert all(r["crossesBoundary"] == ["pid"] for r in by_pair[(1, nested)])
    assert all(r["targets"][1]["pidNamespace"] != r["pidNamespace"]
               for r in by_pair[(1, nested)])
    crossing = [line for line in lines if line.endswith("!! CROSSES pid")]
    assert len(crossing) == REPEAT
    assert all("KCMP_VM) = " in line and f"kcmp(1, {nested}, " in line
               and "[caller in another pid namespace]" in line for line in crossing)
    assert all(f"pid2 sleep/{r['targets'][1]['hostPid']} uid=0]" in "".join(lines)
               for r in records)


def _parent(record):
    return record["hostParentProcessId"]


def test_a_host_caller_comparing_a_process_in_a_container_crosses(unshare, tmp_path):
    boxed = subprocess.Popen([*UNSHARE, "sleep", "1000"])
    try:
        sleeper = child_of(boxed.pid)
        caller = Caller(tmp_path, "outer", sleeper)
        caller.go(REPEAT)
        records, lines = caller.finish()
    finally:
        boxed.kill()
        boxed.wait()
    assert len(records) == REPEAT
    for r in records:
        assert r["callerPidNamespace"] == "host" and r["contextUnresolved"] == []
        assert r["crossesBoundary"] == ["pid", "mnt"]
        assert [t["hostPid"] for t in r["targets"]] == [r["hostProcessId"], sleeper]
        assert r["targets"][1]["processName"] == "sleep"
        assert r["targets"][1]["hostParentProcessId"] == boxed.pid
    assert sum(line.endswith(f"[pid1 self, pid2 sleep/{sleeper} uid=0]  !! CROSSES pid,mnt")
               for line in lines) == REPEAT
    assert "crossing a boundary: pid 23, mnt 23" in caller.text.stderr()


@pytest.fixture
def container_cgroup(kernel_ready):
    """A cgroup v2 directory named as docker names a container's scope: (path, id)."""
    from kcmp_monitor.context.cgroups import cgroup2_mount

    mount = cgroup2_mount()
    if mount is None:
        skip_or_fail("needs the cgroup v2 hierarchy mounted")
    cid = uuid.uuid4().hex * 2
    path = Path(mount) / "kcmptest.slice" / f"docker-{cid}.scope"
    path.mkdir(parents=True)
    try:
        yield path, cid
    finally:
        for d in (path, path.parent):
            for _ in range(50):  # the last member may still be on its way out
                try:
                    d.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)


@pytest.mark.parametrize("boxed", [False, True], ids=["host", "container-cgroup"])
def test_a_caller_gone_before_its_event_is_read_keeps_name_and_parent(
        kernel_ready, tmp_path, request, boxed):
    """Both monitors are stopped (SIGSTOP) while children call kcmp and exit, and are reaped:
    when the monitors read the events, /proc has nothing left of the callers. In a container's
    cgroup, the container comes from the cgroup id the kernel put in each record."""
    cid = ""
    caller = Caller(tmp_path, "shortlived")
    parent = caller.proc.pid
    if boxed:
        cgroup, cid = request.getfixturevalue("container_cgroup")
        (cgroup / "cgroup.procs").write_text(str(parent))  # the children are born there
    with stopped((caller.js, caller.text), REPEAT):
        caller.proc.stdin.write("go\n")
        caller.proc.stdin.flush()
        made = json.loads(caller.proc.stdout.readline())
        assert caller.proc.stdout.readline() == "ready\n"
        children = made["children"]
        assert not any(os.path.exists(f"/proc/{pid}") for pid in children)
    records, lines = caller.finish()
    assert sorted(r["hostProcessId"] for r in records) == sorted(children)
    for r in records:
        assert r["callerExited"] is True and r["processName"] == "nscaller"
        assert r["hostParentProcessId"] == parent and r["parentProcessId"] == parent
        assert r["callerPidNamespace"] == "host" and r["contextUnresolved"] == []
        assert r["containerId"] == cid
        t1, t2 = r["targets"]
        assert (t1["hostPid"], t1["processName"], t1["exited"]) == (
            r["hostProcessId"], "nscaller", True)
        assert (t2["hostPid"], t2["processName"], t2["exited"]) == (parent, "nscaller", False)
        assert t1["hostParentProcessId"] == parent and t2["containerId"] == cid
    assert all("[pid1 self, pid2 nscaller/" in line for line in lines)
    if boxed:  # the console names the container too, by its short id
        assert all(f" uid=0 ctr={cid[:12]} kcmp(" in line
                   and line.endswith(f" uid=0 ctr={cid[:12]}]") for line in lines)


def test_targets_of_a_namespace_gone_before_its_events_are_read(unshare, tmp_path):
    """The caller is pid 1 of a new pid namespace and compares itself with its child there;
    both are gone, and the namespace with them, when the monitors read the events: the
    child's number still translates to its host pid (the kernel recorded it at fork)."""
    caller = Caller(tmp_path, "alone", prefix=UNSHARE)
    assert caller.made["pid"] == 1
    host = child_of(caller.proc.pid)
    child = child_of(host)
    with stopped((caller.js, caller.text), REPEAT):
        caller.proc.stdin.write("go\n")
        caller.proc.stdin.flush()
        caller.proc.stdout.readline()
        assert caller.proc.stdout.readline() == "ready\n"
        caller.proc.stdin.close()
        assert caller.proc.wait(timeout=30) == 0
        assert not os.path.exists(f"/proc/{host}") and not os.path.exists(f"/proc/{child}")
    assert caller.js.stop() == 0 and caller.text.stop() == 0
    records = [json.loads(line) for line in caller.js.lines()]
    assert len(records) == REPEAT
    for r in records:
        assert r["callerExited"] is True and r["callerContext"] == "kernel"
        assert (r["processId"], r["hostProcessId"]) == (1, host)
        t1, t2 = r["targets"]
        assert (t1["pid"], t1["hostPid"]) == (1, host)
        assert (t2["pid"], t2["hostPid"], t2["processName"], t2["exited"]) == (
            caller.made["child"], child, "sleep", True)
        assert r["contextUnresolved"] == []
    assert all(f"[pid1 self, pid2 sleep/{child} uid=0 exited]" in line
               for line in caller.text.lines())


def _samples(text):
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_exporter_with_context_counts_crossings_of_every_call(unshare, tmp_path):
    daemon = Daemon(tmp_path, "--context")
    boxed = subprocess.Popen([*UNSHARE, "sleep", "1000"])
    try:
        daemon.wait_ready()
        sleeper = child_of(boxed.pid)
        caller = subprocess.Popen([sys.executable, str(HERE / "nscaller.py"), "outer",
                                   str(sleeper)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        caller.stdout.readline()
        caller.stdin.write("go\n")
        caller.stdin.flush()
        caller.stdout.readline()
        assert caller.stdout.readline() == "ready\n"
        caller.stdin.close()
        assert caller.wait(timeout=30) == 0
        deadline = time.monotonic() + 10
        while True:  # until the stream has caught up with the kernel's counters
            got = _samples(daemon.metrics())
            calls = sum(v for (name, _), v in got.items() if name == "kcmp_calls_total")
            seen = got[("kcmp_context_events_total", ())] + sum(
                v for (name, _), v in got.items() if name == "kcmp_events_dropped_total")
            if seen == calls >= REPEAT or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        boxed.kill()
        boxed.wait()
        code, _ = daemon.stop()
    assert code == 0
    assert seen == calls >= REPEAT  # every call given context or counted as dropped
    crossings = {dict(labels)["kind"]: v for (name, labels), v in got.items()
                 if name == "kcmp_boundary_crossings_total"}
    assert crossings == {"pid": REPEAT, "mnt": REPEAT, "net": 0, "container": 0}
    assert got[("kcmp_context_unresolved_total", ())] == 0
