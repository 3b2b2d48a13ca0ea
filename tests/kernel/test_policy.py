"""The policy on the real kernel: rules of the rule file stop real kcmp calls in the kernel (a
kill by SIGKILL, a deny at kcmp's access check where the kernel has trampolines for it, else a
kill), a dry run marks the same calls and stops none, allowlisted and other callers go through,
every matched call is counted, and nothing is stopped once the monitor is gone."""

import json
import re
import shutil
import signal
import subprocess
import time

import pytest

from tests.helpers import in_guest, patience

from .conftest import Daemon, Monitor, _build, docker, imported_image

pytestmark = pytest.mark.kernel

NOBODY = 65534
# The flood: calls of a caller the policy matches, and as many of one beside it it does not.
FLOOD = 100_000 if in_guest() else 1_000_000


def _policy(allowed) -> str:
    return json.dumps({"policy": {
        "allow": {"executables": [str(allowed)]},
        "rules": [
            {"name": "nobody-reads-others", "action": "kill",
             "match": {"uids": [NOBODY], "targets": ["other_user"]}},
            {"name": "deny-policed", "action": "deny",
             "match": {"comms": ["policed-deny"], "targets": ["other_user"]}},
            {"name": "no-container-crossing", "action": "deny",
             "match": {"in_container": True, "targets": ["outside_container"]}},
        ]}})


@pytest.fixture(scope="module")
def bins(kernel_ready, tmp_path_factory):
    """policed under the names the rules (and the allowlist) know it by, on a tmpfs of its
    own: the guests' root is an overlay whose layers span file systems, where only the kernel
    knows an inode's number (see Stopping calls)."""
    exe = _build(tmp_path_factory, "policed", "-static")
    where = tmp_path_factory.mktemp("policed")
    subprocess.run(["mount", "-t", "tmpfs", "policed", str(where)], check=True)
    names = {name: where / name for name in ("policed", "policed-deny", "benign", "criu")}
    for path in names.values():
        shutil.copy(exe, path)
    yield names
    subprocess.run(["umount", "-l", str(where)], check=True)


@pytest.fixture(scope="module")
def targets():
    """A process of root's and one of nobody's for the calls to name."""
    root = subprocess.Popen(["sleep", "3600"])
    nobody = subprocess.Popen(["sleep", "3600"], user=NOBODY, group=NOBODY)
    yield {"root": root.pid, "nobody": nobody.pid}
    for p in (root, nobody):
        p.kill()
        p.wait()


@pytest.fixture(scope="module")
def rules(bins, tmp_path_factory):
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(_policy(bins["criu"]))
    return path


def _trace(rules, tmp, mode):
    m = Monitor(["--output", "json", "--rules", str(rules), "--enforce", mode], tmp, mode)
    m.wait_started()
    return m


@pytest.fixture(scope="module")
def enforcing(rules, tmp_path_factory):
    m = _trace(rules, tmp_path_factory.mktemp("on"), "on")
    yield m
    m.stop()


@pytest.fixture
def dry_run(rules, tmp_path):
    m = _trace(rules, tmp_path, "dry-run")
    yield m
    m.stop()


def _run(exe, *args):
    """policed's run: its exit status and its tally (None where it was killed)."""
    p = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True,
                       timeout=patience(120))
    tally = re.fullmatch(r"calls (\d+) same (\d+) different (\d+) eperm (\d+) other (\d+)\n",
                         p.stdout)
    return p.returncode, None if tally is None else dict(zip(
        ("calls", "same", "different", "eperm", "other"), map(int, tally.groups())))


def _events(monitor, pid, count, timeout=30):
    """The JSON records of pid's calls, once count of them are in."""
    deadline = time.monotonic() + patience(timeout)
    while True:
        found = [r for r in map(json.loads, monitor.lines())
                 if r.get("eventName") == "kcmp" and r["hostProcessId"] == pid]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _caller_pid(monitor, comm, before, timeout=30):
    """The pid of the first process named comm whose calls appear after line `before`."""
    deadline = time.monotonic() + patience(timeout)
    while True:
        found = [r["hostProcessId"] for r in map(json.loads, monitor.lines()[before:])
                 if r.get("processName") == comm]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no call of {comm} seen"
        time.sleep(0.1)


def _check_denies(stderr) -> bool:
    """Whether the monitor said it refuses a deny at kcmp's access check (trampolines on it
    here), else by a kill: its start line, or the daemon's first log line."""
    deadline = time.monotonic() + patience(10)
    while True:
        said = stderr()
        if "deny at kcmp's access check" in said or "deny by SIGKILL" in said:
            return "deny at kcmp's access check" in said
        assert time.monotonic() < deadline, said
        time.sleep(0.1)


# First the tests that run a monitor of their own: the module's enforcing one, once started,
# stays until the end.
def test_a_dry_run_marks_the_same_calls_and_stops_none(dry_run, bins, targets):
    before = len(dry_run.lines())
    assert _run(bins["policed"], "-u", NOBODY, targets["root"]) == (0, dict(
        calls=1, same=0, different=0, eperm=1, other=0))
    assert _run(bins["policed-deny"], targets["nobody"])[1]["different"] == 1
    _caller_pid(dry_run, "policed-deny", before)
    marked = {r["processName"]: r["enforcement"]
              for r in map(json.loads, dry_run.lines()[before:]) if r.get("enforcement")}
    assert marked == {
        "policed": {"rule": "nobody-reads-others", "action": "kill", "applied": False,
                    "mechanism": None},
        "policed-deny": {"rule": "deny-policed", "action": "deny", "applied": False,
                         "mechanism": None}}


def _counted(daemon, rule, action, applied):
    pattern = (f'kcmp_enforced_total{{action="{action}",applied="{applied}",'
               f'rule="{rule}"}} (\\S+)')
    found = re.search(pattern, daemon.metrics())
    return None if found is None else float(found[1])


@pytest.mark.guest
def test_a_flood_of_matching_calls_is_stopped_and_counted_call_by_call(
        rules, bins, targets, tmp_path):
    """Where denials are made at the access check, every call of the flood is refused; else
    (a deny would be a kill) the flood runs in a dry run. Either way the kernel counts each,
    and the calls beside it are untouched."""
    daemon = Daemon(tmp_path, "--rules", str(rules), "--enforce", "on")
    daemon.wait_ready()
    mode = "on" if _check_denies(daemon.stderr) else "dry-run"
    if mode == "dry-run":
        assert daemon.stop()[0] == 0
        daemon = Daemon(tmp_path, "--rules", str(rules), "--enforce", mode)
    try:
        daemon.wait_ready()
        flood = subprocess.Popen([str(bins["policed-deny"]), "-n", str(FLOOD),
                                  str(targets["nobody"])], stdout=subprocess.PIPE, text=True)
        code, benign = _run(bins["benign"], "-n", FLOOD, targets["nobody"])
        out, _ = flood.communicate(timeout=patience(300))
        assert code == 0 and benign["different"] == FLOOD
        stopped = dict(zip(("calls", "same", "different", "eperm", "other"),
                           map(int, out.split()[1::2])))
        if mode == "on":
            assert stopped == dict(calls=FLOOD, same=0, different=0, eperm=FLOOD, other=0)
        else:
            assert stopped["different"] == FLOOD
        applied = "true" if mode == "on" else "false"
        deadline = time.monotonic() + patience(10)
        while _counted(daemon, "deny-policed", "deny", applied) != FLOOD:
            assert time.monotonic() < deadline, daemon.metrics()
            time.sleep(0.2)
        other = "false" if mode == "on" else "true"
        assert _counted(daemon, "deny-policed", "deny", other) == 0
        assert _counted(daemon, "nobody-reads-others", "kill", "true") == 0
    finally:
        assert daemon.stop()[0] == 0
    log = daemon.stderr()
    assert "Traceback" not in log
    assert ("kcmp call stopped" if mode == "on" else "kcmp call would be stopped") in log
    assert "kcmp policy lines suppressed (rate limit)" in log


def test_nothing_is_stopped_once_the_monitor_is_gone(rules, bins, targets, tmp_path):
    daemon = Daemon(tmp_path, "--rules", str(rules), "--enforce", "on")
    daemon.wait_ready()
    assert _run(bins["policed"], "-u", NOBODY, targets["root"])[0] == -signal.SIGKILL
    assert daemon.stop()[0] == 0
    assert _run(bins["policed"], "-u", NOBODY, targets["root"]) == (0, dict(
        calls=1, same=0, different=0, eperm=1, other=0))


@pytest.mark.guest
def test_a_kill_rule_kills_the_caller_before_it_sees_the_answer(enforcing, bins, targets):
    before = len(enforcing.lines())
    code, tally = _run(bins["policed"], "-u", NOBODY, targets["root"])
    assert code == -signal.SIGKILL and tally is None  # it never printed what kcmp said
    pid = _caller_pid(enforcing, "policed", before)
    (event,) = _events(enforcing, pid, 1)
    assert event["enforcement"] == {"rule": "nobody-reads-others", "action": "kill",
                                    "applied": True, "mechanism": "sigkill"}
    assert event["lane"] == "priority" and event["userId"] == NOBODY
    # A 32-bit call (int 0x80) is decided at its entry too.
    before = len(enforcing.lines())
    assert _run(bins["policed"], "-3", "-u", NOBODY, targets["root"]) == (-signal.SIGKILL, None)
    (event,) = _events(enforcing, _caller_pid(enforcing, "policed", before), 1)
    assert event["compat"] and event["enforcement"]["applied"]


@pytest.mark.guest
def test_root_and_an_allowlisted_executable_go_through(enforcing, bins, targets):
    assert _run(bins["policed"], targets["root"]) == (0, dict(
        calls=1, same=0, different=1, eperm=0, other=0))
    # The allowlist holds by the executable's inode: nobody's call is the kernel's EPERM alone.
    assert _run(bins["criu"], "-u", NOBODY, targets["root"]) == (0, dict(
        calls=1, same=0, different=0, eperm=1, other=0))
    assert "Killed" not in enforcing.stderr()


@pytest.mark.guest
def test_a_deny_refuses_the_call_at_the_access_check_or_kills_where_it_cannot(
        enforcing, bins, targets):
    """Root comparing nobody's process would get 1 or 2 (kcmp's access check lets root
    through): EPERM says the comparison never ran. Without trampolines the caller is killed."""
    before = len(enforcing.lines())
    code, tally = _run(bins["policed-deny"], "-n", 5, targets["nobody"])
    pid = _caller_pid(enforcing, "policed-deny", before)
    denies = _check_denies(enforcing.stderr)
    events = _events(enforcing, pid, 5 if denies else 1)
    if denies:
        assert (code, tally) == (0, dict(calls=5, same=0, different=0, eperm=5, other=0))
        assert len(events) == 5 and {e["returnValue"] for e in events} == {-1}
        assert {json.dumps(e["enforcement"]) for e in events} == {json.dumps(
            {"rule": "deny-policed", "action": "deny", "applied": True,
             "mechanism": "access_check"})}
    else:
        assert code == -signal.SIGKILL and tally is None
        assert events[0]["enforcement"] == {"rule": "deny-policed", "action": "deny",
                                            "applied": True, "mechanism": "sigkill"}
    assert _run(bins["benign"], targets["nobody"])[1]["different"] == 1


@pytest.fixture(scope="module")
def policed_image(docker_engine, bins, tmp_path_factory):
    with imported_image(tmp_path_factory, bins["policed"]) as name:
        yield name


def test_a_container_comparing_a_process_outside_it_is_stopped(
        enforcing, policed_image, bins, targets):
    """The README's rule: a container (sharing the host's pids, allowed kcmp by its seccomp
    profile) naming a host process is stopped; its own process, and a CRIU-style caller on
    the host comparing the same processes, go through."""
    run = ["run", "--rm", "--pid=host", "--cap-add", "SYS_PTRACE", policed_image, "/policed"]
    crossing = docker(*run, str(targets["root"]), check=False)
    if _check_denies(enforcing.stderr):
        assert crossing.returncode == 0 and "eperm 1" in crossing.stdout
    else:
        assert crossing.returncode == 128 + signal.SIGKILL, crossing
    own = docker(*run, "-t", "0", "self", check=False)
    assert own.returncode == 0, own
    assert _run(bins["criu"], targets["root"])[1]["different"] == 1
    events = [r for r in map(json.loads, enforcing.lines())
              if (r.get("enforcement") or {}).get("rule") == "no-container-crossing"]
    assert events and events[-1]["containerId"]
