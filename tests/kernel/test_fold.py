"""Repeats folded in the kernel: a thread's identical calls become its first call's record and
one record with their count, so that a flood of them is represented whole."""

import json
import platform
import re
import subprocess
import sys
import time

import pytest

from kcmp_monitor import abi

from .conftest import Monitor

pytestmark = pytest.mark.kernel

MILLION = 1_000_000
REPEATS = re.compile(r" \u00d7(\d+) until \d\d:\d\d:\d\d\.\d{6}")


def _console_calls(lines):
    """The calls the console's lines stand for: one each, or the ×N of a folded one."""
    return sum(int(m.group(1)) if (m := REPEATS.search(line)) else 1 for line in lines)


def _lost(stderr):
    return sum(int(n) for n in re.findall(r"lost (\d+) events", stderr))


def test_a_million_identical_calls_are_represented_exactly(loop, tmp_path):
    text = Monitor(["--comm", "kcmpbench"], tmp_path, "text", fold=True)
    js = Monitor(["--output", "json", "--comm", "kcmpbench"], tmp_path, "json", fold=True)
    every = Monitor(["--comm", "kcmpbench"], tmp_path, "every")  # --no-fold
    for m in (text, js, every):
        m.wait_started()
    assert "identical calls folded within 1 s; --no-fold" in text.out_path.read_text()
    subprocess.run([str(loop), "kcmp", str(MILLION)], check=True, stdout=subprocess.DEVNULL)
    time.sleep(1)  # let the readers drain
    assert text.stop() == 0 and js.stop() == 0 and every.stop() == 0

    lines = text.lines()
    assert _console_calls(lines) + _lost(text.stderr()) == MILLION
    assert len(lines) < 100  # a record and a folded one a window, not a million
    assert REPEATS.search(lines[1]) and not REPEATS.search(lines[0])
    assert f"{MILLION} calls traced (" in text.stderr()

    records = [json.loads(line) for line in js.lines()]
    calls = [r for r in records if r["eventName"] == "kcmp"]
    lost = sum(r["lostEvents"] for r in records if r["eventName"] == "events_lost")
    assert sum(r["repeat"] for r in calls) + lost == MILLION
    folded = [r for r in calls if r["repeat"] > 1]
    assert folded and all(r["lastTimestamp"] > r["timestamp"] for r in folded)
    assert {r["lastTimestamp"] for r in calls if r["repeat"] == 1} <= {None}
    first = calls[0]
    for r in folded:  # the same call as the run's first, from the same thread
        assert (r["args"], r["returnValue"], r["threadId"], r["processName"]) == (
            first["args"], first["returnValue"], first["threadId"], first["processName"])

    # --no-fold: a record a call, what the ring buffer cannot hold counted as lost
    plain = every.lines()
    assert not any(REPEATS.search(line) for line in plain)
    assert len(plain) + _lost(every.stderr()) == MILLION


QUIET = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(15, b"kcmpquiet", 0, 0, 0)
me = os.getpid()
for _ in range(23):
    libc.syscall({nr}, me, me, {vm}, 0, 0)
print("done", flush=True)
sys.stdin.read()
"""


def test_a_quiet_threads_run_is_streamed_when_its_window_shuts(kernel_ready, tmp_path):
    """No call of the thread's ends the run: user space does, once its window has shut,
    while the caller still lives; the kernel then does not stream it again."""
    text = Monitor(["--comm", "kcmpquiet", "--fold-window", "0.3"], tmp_path, "text", fold=True)
    text.wait_started()
    script = QUIET.format(nr=abi.SYSCALL_NR[platform.machine()], vm=abi.KcmpType.KCMP_VM.value)
    caller = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)
    assert caller.stdout.readline() == b"done\n"
    text.wait_lines(2, timeout=10)
    assert caller.poll() is None  # still there: the window, not its exit, ended the run
    caller.stdin.close()
    assert caller.wait(timeout=10) == 0
    time.sleep(0.5)
    assert text.stop() == 0
    lines = text.lines()
    assert len(lines) == 2, lines
    assert not REPEATS.search(lines[0])
    assert REPEATS.search(lines[1]).group(1) == "22"
    assert "23 calls traced (22 of them folded), 0 lost" in text.stderr()
