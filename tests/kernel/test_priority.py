"""The priority lane: two callers flood kcmp at full speed while kcmpload makes its calls,
permission failures, seccomp refusals and 32-bit calls among them. Those reach every stream
(console, JSON, the --context exporter's EPERM log) whole; what the flood loses is counted."""

import json
import re
import subprocess

import pytest


from .conftest import REPEAT, Daemon, Monitor, Workload
from .test_capture import EXPECTED

pytestmark = pytest.mark.kernel

FLOOD = 1_000_000  # calls per flooding process
URGENT = {"eperm", "seccomp", "seccomp_args", "compat_vm", "compat_file"}


@pytest.fixture(scope="module")
def flooded(loop, kcmpload, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("flood")
    js = Monitor(["--output", "json"], tmp, "json")
    text = Monitor([], tmp, "text")
    daemon = Daemon(tmp, "--context", "--eperm-log-rate", "1000")
    js.wait_started()
    text.wait_started()
    daemon.wait_ready()
    wl = Workload.start(kcmpload, tmp / "files")
    floods = [subprocess.Popen([str(loop), "kcmp", str(FLOOD)], stdout=subprocess.DEVNULL)
              for _ in range(2)]
    wl.go()  # its calls land in the middle of the flood
    wl.finish()
    assert [f.wait(timeout=300) for f in floods] == [0, 0]
    assert js.stop() == 0 and text.stop() == 0 and daemon.stop()[0] == 0
    return dict(wl=wl, js=js, text=text, daemon=daemon)


def _urgent_cases(wl):
    return {c.name: c for c in wl.cases if c.name in URGENT}


def test_json_stream_delivers_every_urgent_call_and_counts_the_rest(flooded):
    wl, js = flooded["wl"], flooded["js"]
    records = [json.loads(line) for line in js.lines()]
    calls = [r for r in records if r["eventName"] == "kcmp"]
    lost = [r for r in records if r["eventName"] == "events_lost"]
    made = 2 * FLOOD + REPEAT * len(EXPECTED)
    assert lost and sum(r["lostEvents"] for r in lost) + len(calls) == made
    assert {r["lane"] for r in lost} == {"bulk"}  # the priority lane lost nothing
    mine = [r for r in calls if r["processName"] == "kcmpload"]
    urgent = _urgent_cases(wl)
    for name, case in urgent.items():
        got = [r for r in mine if r["hostProcessId"] == case.caller and r["compat"] == case.compat
               and [a["value"] for a in r["args"]][2:4] == [case.type, case.idx1]]
        assert len(got) == REPEAT, name
        assert {r["lane"] for r in got} == {"priority"}, name


def test_console_delivers_every_urgent_call(flooded):
    lines = flooded["text"].lines()
    assert sum("!! DENIED caller uid=65534" in line for line in lines) == REPEAT
    assert sum("<refused by seccomp>" in line for line in lines) == 2 * REPEAT
    assert sum("[compat] kcmp(" in line for line in lines) == 2 * REPEAT
    lost = sum(int(n) for n in re.findall(r"lost (\d+) events", flooded["text"].stderr()))
    assert lost > 0 and "priority lane" not in flooded["text"].stderr()


def test_the_context_exporter_logs_every_permission_failure(flooded):
    err = flooded["daemon"].stderr()
    assert err.count('msg="kcmp permission denied"') == REPEAT
    assert err.count('msg="kcmp refused by seccomp"') == 2 * REPEAT
