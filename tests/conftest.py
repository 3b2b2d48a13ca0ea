"""Nothing a test starts outlives it: monitors a test or a fixture left running are ended when
it ends, whatever its outcome, and the suite ends by checking that no program of the monitor is
still loaded (a leaked monitor taxes every syscall of the machine and every later figure)."""

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

# Maps only the monitor's program makes (BCC names a map after its variable).
OWN_MAPS = {"callers_seen", "prog_stats", "inflight"}


def _monitors() -> set[int]:
    """Pids of kcmp-monitor processes on the machine (containers' included)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if any(arg == b"kcmp-monitor" or arg.endswith(b"/kcmp-monitor") for arg in argv[:2]):
            found.add(int(entry))
    return found


def _end(pids: set[int]) -> list[str]:
    """Kill the processes and wait until they are gone; their command lines, for the report."""
    names = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                names.append(f.read().replace(b"\0", b" ").decode(errors="replace").strip())
            os.kill(pid, signal.SIGKILL)
        except OSError:
            continue
    deadline = time.monotonic() + 10
    while pids & _monitors() and time.monotonic() < deadline:
        time.sleep(0.05)
    return names


@pytest.fixture(autouse=True)
def _no_monitor_outlives_its_test():
    before = _monitors()
    yield
    _end(_monitors() - before)


@pytest.fixture(scope="module", autouse=True)
def _no_monitor_outlives_its_module():
    before = _monitors()
    yield
    _end(_monitors() - before)


def _loaded_maps() -> set[str]:
    shown = subprocess.run(["bpftool", "-j", "map", "show"], capture_output=True, text=True)
    if shown.returncode != 0:
        return set()
    return {m.get("name", "") for m in json.loads(shown.stdout or "[]")}


@pytest.fixture(scope="session", autouse=True)
def _no_program_stays_loaded():
    before = _monitors()
    yield
    leaked = _end(_monitors() - before)
    assert not leaked, f"monitors left running by the suite: {leaked}"
    if os.geteuid() == 0 and shutil.which("bpftool"):
        deadline = time.monotonic() + 10  # a killed monitor's maps go with its last fd
        while (left := _loaded_maps() & OWN_MAPS) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left, f"the monitor's maps are still loaded after the suite: {sorted(left)}"
