"""`kcmp-monitor probe` against real processes with known sharing, run as a user runs it."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import monitor_command, skip_or_fail

from .conftest import HERE, Helper, probe, probe_json, state

TYPES = ("KCMP_VM", "KCMP_FILES", "KCMP_FS", "KCMP_SIGHAND", "KCMP_IO", "KCMP_SYSVSEM")
# What each child shares with its parent; the parent made an I/O context and a SysV undo list
# first, so only CLONE_IO / CLONE_SYSVSEM make those equal.
SHARING = {
    "fork": set(),
    "vm": {"KCMP_VM"},
    "files": {"KCMP_FILES"},
    "fs": {"KCMP_FS"},
    "sighand": {"KCMP_VM", "KCMP_SIGHAND"},  # CLONE_SIGHAND needs CLONE_VM
    "io": {"KCMP_IO"},
    "sysvsem": {"KCMP_SYSVSEM"},
    "all": set(TYPES),
    "thread": set(TYPES) - {"KCMP_IO"},  # pthread_create passes no CLONE_IO
}


@pytest.mark.parametrize("kid", sorted(SHARING))
def test_pair_table_matches_how_the_child_was_made(clonekids, kid):
    report = probe_json(clonekids["parent"], clonekids[kid])
    assert [r["kcmpType"] for r in report["resources"]] == list(TYPES)
    shared = {r["kcmpType"] for r in report["resources"] if r["shared"]}
    assert shared == SHARING[kid]
    for r in report["resources"]:
        assert r["errno"] is None and r["result"] in (0, 1, 2)
        lazy = r["kcmpType"] in ("KCMP_IO", "KCMP_SYSVSEM") and r["shared"]
        assert (r["caveat"] is not None) == lazy
    assert report["exact"] is False
    thread_note = f"{clonekids['thread']} is a thread of process {clonekids['parent']}"
    assert any(thread_note in n for n in report["notes"]) == (kid == "thread")


def test_pair_table_for_people(clonekids):
    out = probe(clonekids["parent"], clonekids["vm"]).stdout.splitlines()
    assert out[0].startswith(f"kcmp probe {clonekids['parent']} (clonekids) and "
                             f"{clonekids['vm']} (clonekids): a snapshot")
    assert out[1].split() == ["kcmp", "type", "resource", "shared", "note"]
    assert out[2].split()[:4] == ["KCMP_VM", "address", "space", "yes"]
    assert out[3].split()[-1] == "no"


def test_zombie_is_flagged(kcmp_works):
    zombie = subprocess.Popen(["true"])
    while state(zombie.pid) != "Z":
        time.sleep(0.01)
    try:
        report = probe_json(os.getpid(), zombie.pid)
        assert any("zombie" in n for n in report["notes"])
    finally:
        zombie.wait()


def test_fd_same_and_different_descriptions(fdtree):
    a, b = fdtree["A"], fdtree["B"]
    same = probe_json("--fd", f"{a}:{fdtree['x1']}", f"{b}:{fdtree['x2']}")
    assert same["same"] is True and same["path1"] == same["path2"]
    assert same["path1"].endswith("/x")
    other = probe_json("--fd", f"{a}:{fdtree['x1']}", f"{a}:{fdtree['x3']}")
    assert other["same"] is False and other["result"] in (1, 2)
    passed = probe_json("--fd", f"{a}:{fdtree['w']}", f"{fdtree['C']}:{fdtree['c_w']}")
    assert passed["same"] is True and passed["path1"].startswith("pipe:[")
    text = probe("--fd", f"{a}:{fdtree['x1']}", f"{a}:{fdtree['x3']}").stdout
    assert "different open file descriptions" in text


def test_epoll_target(fdtree):
    a, ep, r = fdtree["A"], fdtree["epoll"], fdtree["r"]
    hit = probe_json("--epoll", f"{a}:{r}", f"{a}:{ep}:{r}")
    assert hit["registered"] is True and hit["same"] is True
    other = probe_json("--epoll", f"{a}:{fdtree['x1']}", f"{a}:{ep}:{r}:0")
    assert other["registered"] is True and other["same"] is False
    assert other["targetPath"].startswith("pipe:[")
    miss = probe_json("--epoll", f"{a}:{r}", f"{a}:{ep}:{fdtree['x1']}")
    assert miss["registered"] is False and miss["errno"] == "ENOENT"
    not_epoll = probe("--epoll", f"{a}:{r}", f"{a}:{fdtree['x1']}:{r}", check=False)
    assert not_epoll.returncode == 2 and "is not an epoll fd" in not_epoll.stderr


def test_shared_files_groups_exactly(fdtree):
    a, b, c = fdtree["A"], fdtree["B"], fdtree["C"]
    report = probe_json("--shared-files", a, b, c)
    named = {(a, fdtree[k]) for k in ("x1", "x2", "x3", "r", "w", "epoll", "sock")}
    named |= {(b, fdtree[k]) for k in ("x1", "x2", "x3", "r", "w", "epoll", "sock")}
    named.add((c, fdtree["c_w"]))
    groups = [{(m["pid"], m["fd"]) for m in g["members"]} for g in report["groups"]]
    ours = [g for g in groups if g & named]
    expected = [
        {(a, fdtree["x1"]), (a, fdtree["x2"]), (b, fdtree["x1"]), (b, fdtree["x2"])},
        {(a, fdtree["x3"]), (b, fdtree["x3"])},
        {(a, fdtree["r"]), (b, fdtree["r"])},
        {(a, fdtree["w"]), (b, fdtree["w"]), (c, fdtree["c_w"])},
        {(a, fdtree["epoll"]), (b, fdtree["epoll"])},
        {(a, fdtree["sock"]), (b, fdtree["sock"])},
    ]
    assert sorted(map(sorted, ours)) == sorted(map(sorted, expected))
    assert report["gone"] == [] and report["exact"] is False
    n = report["fds"]
    assert report["naivePairs"] == n * (n - 1) // 2
    assert 0 < report["kcmpCalls"] < report["naivePairs"]


def test_probe_errors_are_one_line_with_distinct_codes(fdtree):
    a = fdtree["A"]
    cases = [
        ((a, 4_194_303), 66, "no process 4194303"),  # a pid the kernel could hold
        ((a, 99_999_999), 2, "is more than 4194304"),  # one it never could
        (("--fd", f"{a}:9999", f"{a}:0"), 66, f"fd 9999 is not open in process {a}"),
        (("--fd", "x", f"{a}:0"), 2, "is not PID:FD"),
        ((a,), 2, "give two PIDs"),
        (("--shared-files",), 2, "takes PIDs or --all"),
        ((a, 1), 77, "CAP_SYS_PTRACE"),  # pid 1 refuses even root here
    ]
    for args, code, message in cases:
        result = probe(*args, check=False)
        assert result.returncode == code, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
        assert result.stderr.startswith("kcmp-monitor: error: ") and result.stdout == ""


@pytest.mark.parametrize("mode", ["--fd", "--epoll", "--freeze"])
def test_an_unprivileged_probe_of_a_root_process_is_one_line(fdtree, mode):
    """As nobody, against root's processes: /proc refuses their fds, kill refuses to stop
    them; each is said in one line, exit 77."""
    if os.geteuid() != 0:
        skip_or_fail("needs root to start a probe as nobody against a root process")
    a = fdtree["A"]
    args = {"--fd": ["--fd", f"{a}:0", f"{a}:1"], "--epoll": ["--epoll", f"{a}:0", f"{a}:1:2"],
            "--freeze": ["--freeze", str(a), str(os.getpid())]}[mode]
    result = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534",
                             "--clear-groups", monitor_command(), "probe", *args],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 77, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("kcmp-monitor: error: ")
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def scale_tree(kcmp_works, tmp_path_factory):
    """101 processes (a parent and 100 forked children) holding 100 opens of one file each:
    10,100 fds in 100 descriptions of one inode, all in one bucket for the comparator."""
    helper = Helper([sys.executable, str(HERE / "fdtree.py"),
                     str(tmp_path_factory.mktemp("scale")), "--scale", "100", "100"])
    tree = json.loads(helper.readline())
    yield tree
    helper.close()


def test_shared_files_at_scale_within_n_log_n(scale_tree):
    pids = [scale_tree["A"]] + scale_tree["children"]
    report = probe_json("--shared-files", *pids)
    ours = [g for g in report["groups"] if g["members"][0]["fd"] in scale_tree["fds"]
            and all(m["fd"] == g["members"][0]["fd"] for m in g["members"])]
    assert len(ours) == 100
    assert all(sorted(m["pid"] for m in g["members"]) == sorted(pids) for g in ours)
    n = report["fds"]
    assert n >= 10_100
    c = report["kcmpCalls"] / (n * math.log2(n))
    print(f"scale: {n} fds, {report['kcmpCalls']} kcmp calls, c = {c:.3f}, "
          f"pairwise {report['naivePairs']}")
    assert c <= 1.5  # the stated bound: at most 1.5 n log2 n


def test_freeze_resumes_the_targets(scale_tree):
    pids = [scale_tree["A"]] + scale_tree["children"][:10]
    report = probe_json("--freeze", "--shared-files", *pids)
    assert report["exact"] is True
    assert not any(state(pid) in "Tt" for pid in pids)


def test_freeze_resumes_the_targets_when_interrupted(scale_tree):
    """Interrupted as soon as the first target is stopped (while it stops the others or
    compares them); tried again where the probe had still written its report first."""
    pids = [scale_tree["A"]] + scale_tree["children"]
    for _ in range(5):
        run = subprocess.Popen([monitor_command(), "probe", "--freeze", "--shared-files",
                                *map(str, pids)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while state(pids[0]) != "T":
            assert time.monotonic() < deadline and run.poll() is None, "never stopped"
            time.sleep(0.005)
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=30)
        assert not any(state(pid) in "Tt" for pid in pids)
        if out:
            continue
        assert run.returncode == 130 and err == "kcmp-monitor: interrupted\n", err
        return
    pytest.fail("the probe ended before each of five signals")


def test_a_process_that_exits_mid_probe_cannot_corrupt_the_groups(scale_tree):
    """A victim holding 50 other opens of the same file (so its fds sort in the same bucket) is
    killed while the probe runs. Whenever the kill lands, no group may change: the victim's
    descriptions are its own, so it belongs to none; what it lost mid-sort is reported."""
    victim = Helper([sys.executable, str(HERE / "fdtree.py"), scale_tree["dir"], "--scale",
                     "0", "50"])
    doomed = json.loads(victim.readline())["A"]
    pids = [scale_tree["A"]] + scale_tree["children"] + [doomed]
    run = subprocess.Popen([monitor_command(), "probe", "--json", "--shared-files",
                            *map(str, pids)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    time.sleep(0.3)
    os.kill(doomed, signal.SIGKILL)
    victim.proc.wait()
    out, err = run.communicate(timeout=120)
    if run.returncode == 66:  # killed before the probe listed it: also a correct report
        assert err == f"kcmp-monitor: error: no process {doomed}\n"
        return
    assert run.returncode == 0, err
    report = json.loads(out)
    ours = [g for g in report["groups"] if g["members"][0]["fd"] in scale_tree["fds"]
            and all(m["fd"] == g["members"][0]["fd"] for m in g["members"])]
    assert len(ours) == 100
    assert all(sorted(m["pid"] for m in g["members"]) == sorted(pids[:-1]) for g in ours)
    # Groups of the shared file are exactly those (the victim's stderr, inherited from the
    # test, may still be grouped if its bucket was sorted before the kill: that is true).
    shared_file = os.path.join(scale_tree["dir"], "x")
    assert [g for g in report["groups"] if g["path"] == shared_file] == ours
    assert all(g["pid"] == doomed and g["reason"] in ("ESRCH", "EBADF", "closed")
               for g in report["gone"])
    print(f"fds of the killed process reported gone: {len(report['gone'])}")
