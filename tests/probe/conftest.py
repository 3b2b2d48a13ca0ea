"""Fixtures for the probe tests: real processes with known sharing, and the CLI as run."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kcmp_monitor.probe.kcmpcall import KcmpError, make_kcmp
from tests.helpers import monitor_command, skip_or_fail

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def kcmp_works():
    try:
        make_kcmp()(os.getpid(), os.getpid(), 1)
    except KcmpError as exc:
        skip_or_fail(f"kcmp is not available here: {exc}")


def probe(*args, check=True):
    """`kcmp-monitor probe ARGS` as a user runs it; (exit code, stdout, stderr)."""
    result = subprocess.run([monitor_command(), "probe", *map(str, args)], capture_output=True,
                            text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def probe_json(*args):
    return json.loads(probe("--json", *args).stdout)


class Helper:
    """A helper process that prints what it made, then waits for its stdin to close."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)

    def readline(self):
        line = self.proc.stdout.readline()
        assert line, "the helper ended early"
        return line

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def clonekids(kcmp_works, tmp_path_factory):
    if not shutil.which("gcc"):
        skip_or_fail("needs gcc to build the clone helper (run `sudo make setup`)")
    exe = tmp_path_factory.mktemp("clonekids") / "clonekids"
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-pthread", "-o", str(exe),
                    str(HERE / "clonekids.c")], check=True)
    helper = Helper([str(exe)])
    pids = {}
    while (line := helper.readline().split())[0] != "ready":
        pids[line[0]] = int(line[1])
    yield pids
    helper.close()


@pytest.fixture(scope="module")
def fdtree(kcmp_works, tmp_path_factory):
    helper = Helper([sys.executable, str(HERE / "fdtree.py"),
                     str(tmp_path_factory.mktemp("fdtree"))])
    yield json.loads(helper.readline())
    helper.close()


def state(pid):
    """The state letter of /proc/<pid>/stat."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
