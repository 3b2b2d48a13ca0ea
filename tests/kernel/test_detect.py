"""The signatures live, on the real kernel: each behaviour made once fires its signature once,
with the right fields, in the JSON stream and on the console; the known legitimate patterns
fire nothing; a flood of benign calls hides no sweep; the exporter's --detect finds from the
priority lane; and the recorded stream, read back by `kcmp-monitor detect`, gives the same
findings as live."""

import json
import shutil
import subprocess
import time

import pytest

from tests.helpers import monitor_command, patience, skip_or_fail

from .conftest import Daemon, Monitor, _build

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="session")
def sweeper(kernel_ready, tmp_path_factory):
    return _build(tmp_path_factory, "sweeper")


@pytest.fixture(scope="session")
def compat32(kernel_ready, tmp_path_factory):
    """A 32-bit program (gcc -m32: gcc-multilib, which `make test` installs)."""
    try:
        return _build(tmp_path_factory, "compat32", "-m32", "-static")
    except subprocess.CalledProcessError:
        skip_or_fail("needs gcc -m32 (gcc-multilib; run `sudo make test`)")


def _pid(first_line):
    """The workload's pid and child, from its first line."""
    words = dict(w.split("=") for w in first_line.split()[1:3])
    return int(words["pid"]), int(words["child"])


def _findings(lines):
    return [r for r in map(json.loads, lines) if r.get("kind") == "finding"]


def _alive(argv, js, calls):
    """A workload kept alive until the JSON monitor has read its calls (what is read from
    /proc, a target's uid, an executable's ELF class, a gone process has none); (pid, child)."""
    run = subprocess.Popen([str(a) for a in argv], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True)
    line = run.stdout.readline()
    pid, child = _pid(line if "child=" in line else line.strip() + " child=0")
    deadline = time.monotonic() + 30
    while sum(f'"hostProcessId":{pid},' in line for line in js.lines()) < calls:
        assert time.monotonic() < deadline, f"the monitor did not see {argv}"
        time.sleep(0.05)
    run.stdin.close()
    assert run.wait(timeout=30) == 0
    return pid, child


def _sweep(sweeper, js, fds=40):
    return _alive([sweeper, "sweep", fds], js, fds)


def _workloads(sweeper, loop, compat32, js, tmp_path):
    """Each behaviour once, and the benign patterns (its own fds, a CRIU-style tree, a 32-bit
    program's own calls); the pids of the sweep, its target and the 32-bit caller."""
    criu = tmp_path / "criu"  # CRIU's dump, by the name the default allowlist knows
    shutil.copy(sweeper, criu)
    sweep, child = _sweep(sweeper, js)
    # Identical calls, folded: the first is streamed at once, the rest a record later.
    compat, _ = _alive([sweeper, "compat", 5], js, 1)
    _alive([compat32, 5], js, 1)
    for argv in ([sweeper, "own", "64"], [criu, "tree", "64"], [loop, "eperm", "30"]):
        subprocess.run([str(a) for a in argv], check=True, capture_output=True, input="",
                       timeout=60, text=True)
    return sweep, child, compat


def test_each_behaviour_fires_its_signature_once_and_the_benign_ones_nothing(
        sweeper, loop, compat32, tmp_path):
    js = Monitor(["--output", "json"], tmp_path, "json", fold=True, detect=True)
    text = Monitor([], tmp_path, "text", fold=True, detect=True)
    js.wait_started()
    text.wait_started()
    sweep, child, compat = _workloads(sweeper, loop, compat32, js, tmp_path)
    want = 4
    deadline = time.monotonic() + 30
    while len(_findings(js.lines())) < want and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)  # anything more would have come by now (a folded run's window)
    assert js.stop() == 0 and text.stop() == 0
    found = {f["signatureId"]: f for f in _findings(js.lines())}
    assert sorted(f["signatureId"] for f in _findings(js.lines())) == [
        "KCMP-002", "KCMP-003", "KCMP-005", "KCMP-006"]
    fd = found["KCMP-002"]
    assert fd["eventName"] == "kcmp_fd_sweep" and fd["mitre"]["technique"] == "T1083"
    first, last = fd["triggeredBy"]
    assert first["hostProcessId"] == last["hostProcessId"] == sweep
    assert first["targets"][1]["hostPid"] == child and last["targets"][1]["userId"] == 65534
    assert found["KCMP-006"]["triggeredBy"][0]["hostProcessId"] == sweep
    assert found["KCMP-005"]["triggeredBy"][0]["hostProcessId"] == compat
    assert found["KCMP-005"]["triggeredBy"][0]["compat"] is True
    assert found["KCMP-005"]["triggeredBy"][0]["elfClass"] == 64
    assert "a 64-bit program" in found["KCMP-005"]["summary"]
    probe = found["KCMP-003"]["triggeredBy"]
    assert probe[-1]["returnValue"] == -1 and probe[-1]["userId"] == 65534
    marked = [line for line in text.lines() if " !! FINDING " in line]
    assert sorted(line.split(" !! FINDING ")[1].split()[0] for line in marked) == [
        "KCMP-002", "KCMP-003", "KCMP-005", "KCMP-006"]


def test_a_flood_of_benign_calls_hides_no_sweep(sweeper, loop, tmp_path):
    js = Monitor(["--output", "json"], tmp_path, "json", fold=True, detect=True)
    js.wait_started()
    flood = subprocess.Popen([str(loop), "kcmp", "2000000"], stdout=subprocess.DEVNULL)
    sweep, _child = _sweep(sweeper, js)
    assert flood.wait(timeout=120) == 0
    time.sleep(1.5)
    assert js.stop() == 0
    sweeps = [f for f in _findings(js.lines()) if f["signatureId"] == "KCMP-002"]
    assert len(sweeps) == 1 and sweeps[0]["triggeredBy"][0]["hostProcessId"] == sweep


def test_the_recorded_stream_read_back_gives_the_live_findings(sweeper, loop, compat32,
                                                              tmp_path):
    js = Monitor(["--output", "json"], tmp_path, "json", fold=True, detect=True)
    js.wait_started()
    _workloads(sweeper, loop, compat32, js, tmp_path)
    time.sleep(1.5)
    assert js.stop() == 0
    lines = js.lines()
    live = _findings(lines)
    recorded = tmp_path / "events.json"
    recorded.write_text("".join(line + "\n" for line in lines
                                if json.loads(line).get("kind") != "finding"))
    result = subprocess.run([monitor_command(), "detect", str(recorded)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == live
    assert len(live) == 4


@pytest.mark.guest
def test_the_exporter_finds_from_the_priority_lane(sweeper, loop, tmp_path):
    """--detect: the refusals and the 32-bit calls are streamed for the signatures alone, and
    the fd sweep is counted in the kernel (under a flood of benign calls, none streamed); the
    findings are in the log and kcmp_detections_total, by signature and severity."""
    daemon = Daemon(tmp_path, "--detect")
    daemon.wait_ready()

    def found(sig, severity="medium"):
        deadline = time.monotonic() + patience(30)
        want = f'kcmp_detections_total{{severity="{severity}",signature="{sig}"}} 1.0'
        while want not in daemon.metrics():
            assert time.monotonic() < deadline, f"no {sig}"
            time.sleep(0.1)

    flood = subprocess.Popen([str(loop), "kcmp", "1000000"], stdout=subprocess.DEVNULL)
    # Its target alive until the sweep is found: the call that completes it names a process
    # of uid 65534, which KCMP-006 then sees too (the lane's only call of the sweep).
    sweep = subprocess.Popen([str(sweeper), "sweep", "40"], stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL)
    found("KCMP-002")
    found("KCMP-006", "low")
    sweep.stdin.close()
    assert sweep.wait(timeout=30) == 0
    subprocess.run([str(loop), "eperm", "30"], check=True, capture_output=True)
    subprocess.run([str(sweeper), "compat", "5"], check=True, capture_output=True, input=b"")
    assert flood.wait(timeout=patience(120)) == 0
    found("KCMP-003")
    found("KCMP-005")
    assert 'kcmp_detections_total{severity="high",signature="KCMP-001"} 0.0' in daemon.metrics()
    assert daemon.stop()[0] == 0
    log = [line for line in daemon.stderr().splitlines() if 'msg="kcmp finding"' in line]
    assert sorted(line.split("signature=")[1].split()[0] for line in log) == [
        "KCMP-002", "KCMP-003", "KCMP-005", "KCMP-006"]
    assert "40 distinct fds" not in daemon.stderr()  # the kernel says when it saw 32
    assert "compared 32 (counted in the kernel) distinct fds" in daemon.stderr()
