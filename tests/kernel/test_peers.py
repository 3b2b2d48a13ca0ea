"""Calls that name another task's fd, which that task lets go of right after the call (the
shapes of the kernel's, LTP's and strace's own kcmp tests): the console's line equals
`strace -f -y`'s, under strace and standalone, every run; and a caller chrooted, or in a pid
namespace of its own, beside a strace that is too."""

import re
import shutil
import subprocess
from collections import Counter

import pytest

from tests.helpers import in_guest, skip_or_fail

from .conftest import Monitor, strace_calls

pytestmark = pytest.mark.kernel

MODES = ("close", "thread", "exit", "parent", "epoll")
# Each shape's standalone runs: under TCG a run costs a hundred times what it does here.
RUNS = 5 if in_guest() else 20
CALL = re.compile(r"kcmp\(.*?\) = (?:-1 E[A-Z]+ \([^)]*\)|\d+)")
STRACE = ("strace", "-f", "-y", "-qq", "-e", "trace=kcmp")


@pytest.fixture(autouse=True)
def tools():
    if not shutil.which("strace") or not shutil.which("unshare"):
        skip_or_fail("needs strace and unshare (util-linux)")


def _calls(monitor: Monitor) -> list[str]:
    return [CALL.search(line).group(0) for line in monitor.lines()]


def _shape(call: str) -> str:
    """A call with what varies from run to run made alike: its pids (by order of appearance),
    a pipe's inode, and kcmp's order of two different objects (1 or 2)."""
    pids: dict[str, str] = {}
    head = re.match(r"kcmp\((-?\d+), (-?\d+), ", call)
    assert head, call
    p1, p2 = (pids.setdefault(p, f"P{len(pids)}") for p in head.groups())
    rest = re.sub(r"pipe:\[\d+\]", "pipe:[N]", call[head.end():])
    return f"kcmp({p1}, {p2}, " + re.sub(r"\) = [12]$", ") = 1|2", rest)


def _run(tmp_path, *command: str) -> None:
    subprocess.run(command, check=True, timeout=120, cwd=tmp_path)


def _watched(tmp_path, name: str, runs) -> tuple[list[str], Monitor]:
    """What the console printed of the calls the runs made (each a command), the monitor
    started first and stopped once it has them all."""
    m = Monitor(["--comm", "peerfds"], tmp_path, name)
    m.wait_started()
    count = 0
    for command, calls in runs:
        _run(tmp_path, *command)
        count += calls
    m.wait_lines(count)
    assert m.stop() == 0, m.stderr()
    return _calls(m), m


def test_another_tasks_fds_equal_strace_though_let_go_right_after(peerfds, tmp_path):
    """Each shape: once under strace, whose lines are the reference, then standalone RUNS
    times (the monitor alone watching): the same line every run."""
    work = tmp_path / "files"
    work.mkdir()
    traced = {mode: tmp_path / f"strace-{mode}.txt" for mode in MODES}
    runs = [((*STRACE, "-o", str(traced[mode]), str(peerfds), mode, str(work)), 1)
            for mode in MODES]
    runs += [((str(peerfds), mode, str(work)), 1) for mode in MODES for _ in range(RUNS)]
    ours, _ = _watched(tmp_path, "peers", runs)
    reference = {mode: strace_calls(traced[mode]) for mode in MODES}
    assert all(len(calls) == 1 and "<" in calls[0] for calls in reference.values()), reference
    # Under strace: the very line strace printed.
    assert ours[:len(MODES)] == [reference[mode][0] for mode in MODES]
    # Standalone: every run the shape of strace's line, every fd with its path.
    standalone = Counter(_shape(call) for call in ours[len(MODES):])
    assert standalone == Counter(_shape(reference[mode][0]) for mode in MODES
                                 for _ in range(RUNS))


def test_a_chrooted_caller_sees_paths_from_its_root(peerfds, tmp_path):
    """A caller (and strace beside it) chrooted into a bind mount of /: the paths of its own
    fds and of its child's as the chroot shows them, not with the bind mount's place."""
    root = tmp_path / "root"
    work = tmp_path / "files"
    root.mkdir()
    work.mkdir()
    runs = []
    for mode in ("own", "close"):
        inside = (*STRACE, "-o", str(tmp_path / f"strace-{mode}.txt"), str(peerfds), mode,
                  str(work))
        script = (f"mount --make-rprivate / && mount --rbind / {root} && "
                  f"exec chroot {root} {' '.join(inside)}")
        runs.append((("unshare", "--mount", "sh", "-c", script), 1))
    ours, _ = _watched(tmp_path, "chroot", runs)
    theirs = [strace_calls(tmp_path / f"strace-{mode}.txt")[0] for mode in ("own", "close")]
    assert ours == theirs
    assert str(root) not in "".join(ours) and str(work) in ours[0]


def test_a_caller_in_a_pid_namespace_names_a_sibling_by_its_number_there(peerfds, tmp_path):
    """Pids as the caller's namespace numbers them (a few): the fds read from those tasks, not
    from the host's tasks of the same numbers."""
    work = tmp_path / "files"
    work.mkdir()
    runs = [(("unshare", "--pid", "--fork", "--mount-proc", *STRACE, "-o",
              str(tmp_path / f"strace-{mode}.txt"), str(peerfds), mode, str(work)), 1)
            for mode in ("close", "epoll")]
    ours, _ = _watched(tmp_path, "pidns", runs)
    theirs = [strace_calls(tmp_path / f"strace-{mode}.txt")[0] for mode in ("close", "epoll")]
    assert ours == theirs
    assert re.match(r"kcmp\(\d, \d, KCMP_FILE, ", ours[0])  # numbers of the namespace
