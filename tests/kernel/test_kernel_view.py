"""The kernel's view at the call, for a caller gone before its events are read: ownfds runs in
its own pid, mount and network namespaces under strace, compares its own fds and exits at once,
while the monitors are stopped; when they read the events, /proc has nothing left of it."""

import json
import re
import shutil
import subprocess
from collections import Counter

import pytest

from tests.helpers import in_guest, skip_or_fail

from .conftest import REPEAT, Monitor, stopped, strace_calls
from .nscaller import child_of

pytestmark = pytest.mark.kernel

CALLS = 8 * REPEAT  # six fds, the epoll slot, the fd numbers above 2^31


def _fields(line):
    return {k: v for k, v in (word.split("=", 1) for word in line.split()[1:])}


@pytest.fixture(scope="module")
def gone(ownfds, tmp_path_factory):
    """ownfds under `unshare --pid --net --mount --fork` and strace (inside, so that strace
    sees what the caller sees), both monitors stopped while it runs and exits."""
    if not shutil.which("unshare") or not shutil.which("strace"):
        skip_or_fail("needs unshare (util-linux) and strace")
    tmp = tmp_path_factory.mktemp("gone")
    js = Monitor(["--output", "json", "--comm", "ownfds"], tmp, "json")
    # In the kernel matrix's guests the JSON monitor alone: each start compiles under TCG.
    monitors = [js] if in_guest() else [js, Monitor(["--comm", "ownfds"], tmp, "text")]
    for m in monitors:
        m.wait_started()
    run = subprocess.Popen(
        ["unshare", "--pid", "--net", "--mount", "--fork", "--mount-proc",
         "strace", "-f", "-y", "-e", "trace=kcmp", "-o", str(tmp / "strace.txt"),
         str(ownfds), str(tmp)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    made = _fields(run.stdout.readline())
    tracer = child_of(run.pid)  # strace, pid 1 of the new namespace
    host_pid = child_of(tracer)
    with stopped(monitors, CALLS):
        run.stdin.write("go\n")
        run.stdin.close()
        assert run.wait(timeout=60) == 0
    assert [m.stop() for m in monitors] == [0] * len(monitors)
    return dict(made=made, tracer=tracer, host_pid=host_pid, dir=tmp,
                records=[json.loads(line) for line in js.lines()], lines=monitors[-1].lines(),
                strace=strace_calls(tmp / "strace.txt"))


@pytest.mark.guest
def test_every_event_carries_the_gone_callers_namespaces_parent_and_executable(gone):
    made, records = gone["made"], gone["records"]
    assert len(records) == CALLS
    for r in records:
        assert r["callerExited"] is True and r["callerContext"] == "kernel"
        assert (r["processId"], r["threadId"]) == (int(made["pid"]), int(made["pid"]))
        assert (r["hostProcessId"], r["hostThreadId"]) == (gone["host_pid"], gone["host_pid"])
        assert r["parentProcessId"] == int(made["ppid"]) == 1  # strace, pid 1 in there
        assert r["hostParentProcessId"] == gone["tracer"]
        assert r["callerPidNamespace"] == "other"
        assert (r["pidNamespace"], r["mountNamespace"], r["userNamespace"],
                r["utsNamespace"], r["ipcNamespace"], r["cgroupNamespace"]) == tuple(
            int(made[f"{k}ns"]) for k in ("pid", "mnt", "user", "uts", "ipc", "cgroup"))
        assert r["networkNamespace"] == {"inode": int(made["netns"]), "name": None}
        # Gone: its path and ELF class, which /proc would have given, are not known.
        assert r["executable"] == {"path": None, "name": "ownfds",
                                   "inode": int(made["exe_ino"]), "elfClass": None}
        assert r["capabilities"]["sysPtrace"] is True and r["effectiveUserId"] == 0
        assert r["contextUnresolved"] == [] and r["crossesBoundary"] == []


@pytest.mark.guest
def test_own_fds_show_their_paths_as_the_kernel_saw_them(gone):
    made, d = gone["made"], gone["dir"]
    memfd = int(made["memfd"])
    expected = {int(made["file"]): f"{d}/own", int(made["deleted"]): f"{d}/deleted (deleted)",
                int(made["pipe"]): None, int(made["socket"]): None,
                int(made["epoll"]): "anon_inode:[eventpoll]", memfd: "/memfd:ownfds (deleted)"}
    seen = Counter()
    for r in gone["records"]:
        fd = r["args"][3]["value"]
        if r["kcmpType"] == "KCMP_EPOLL_TFD":
            assert set(r["fdPaths"]) == {"idx1", "efd", "tfd"}
            assert r["fdPaths"]["efd"] == "anon_inode:[eventpoll]"
            assert r["fdPaths"]["idx1"] == r["fdPaths"]["tfd"]
            assert re.fullmatch(r"pipe:\[\d+\]", r["fdPaths"]["tfd"])
            seen["epoll"] += 1
        elif fd == 0x80000003:
            assert r["errno"] == "EBADF" and r["fdPaths"] == {}
            assert r["fdFiles"]["idx1"]["open"] is False
            seen["ebadf"] += 1
        else:
            want = expected[fd]
            paths = r["fdPaths"]
            assert paths["idx1"] == paths["idx2"]
            if want is None:
                assert re.fullmatch(r"(pipe|socket):\[\d+\]", paths["idx1"])
            else:
                assert paths["idx1"] == want
            assert r["fdFiles"]["idx1"]["open"] is True and r["returnValue"] == 0
            seen[fd] += 1
    assert set(seen.values()) == {REPEAT} and len(seen) == len(expected) + 2


def test_console_lines_equal_strace_for_a_caller_already_gone(gone):
    """From `kcmp(` to the return value: fds as C ints, '(deleted)' after the brackets, the
    paths as the caller saw them."""
    ours = [re.search(r"kcmp\(.*?\) = (?:-1 E[A-Z]+ \([^)]*\)|\d+)", line).group(0)
            for line in gone["lines"]]
    assert len(ours) == CALLS
    assert Counter(ours) == Counter(gone["strace"])
    assert any(", -2147483645, -559038737) = -1 EBADF" in line for line in ours)
