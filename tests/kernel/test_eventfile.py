"""The event file against the real program: the exporter writes the priority lane's kinds of
call (and nothing else), a flood rotates the file without losing or splitting a line, and
with --trace the file holds what the JSON stream does."""

import gzip
import json
import subprocess
from pathlib import Path

import pytest

from .conftest import REPEAT, Daemon, Monitor, Workload
from .test_capture import EXPECTED, case_key, event_key

pytestmark = pytest.mark.kernel

URGENT = {"eperm", "seccomp", "seccomp_args", "compat_vm", "compat_file"}
FLOOD = 20_000


def _records(folder: Path) -> list[dict]:
    """Every line of every file, each of them JSON."""
    records = []
    for path in sorted(folder.iterdir()):
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt") as f:
            records += [json.loads(line) for line in f]
    return records


def test_the_exporters_event_file_holds_every_urgent_call(kcmpload, loop, tmp_path):
    folder = tmp_path / "events"
    folder.mkdir()
    daemon = Daemon(tmp_path, "--events-file", str(folder / "kcmp.json"),
                    "--events-file-max-size-mb", "1", "--events-file-max-backups", "100")
    daemon.wait_ready()
    wl = Workload.start(kcmpload, tmp_path / "files")
    wl.go()
    wl.finish()
    made = subprocess.run([str(loop), "eperm", str(FLOOD)], capture_output=True, text=True,
                          check=True)
    assert int(made.stdout) == FLOOD
    subprocess.run([str(loop), "kcmp", "5000"], check=True, stdout=subprocess.DEVNULL)
    metrics = daemon.metrics()
    code, _ = daemon.stop()
    assert code == 0
    assert len(list(folder.iterdir())) > 2  # it rotated
    records = _records(folder)
    calls = [r for r in records if r["eventName"] == "kcmp"]
    lost = sum(r["lostEvents"] for r in records if r["eventName"] == "events_lost")
    by_key = {case_key(c): c.name for c in wl.cases}
    mine = [by_key.get(event_key(r)) for r in calls if r["processName"] == "kcmpload"]
    assert sorted(set(mine)) == sorted(URGENT)  # the benign cases are not in the file
    assert all(mine.count(name) == REPEAT for name in URGENT)
    flood = [r for r in calls if r["processName"] == "loop"]
    assert all(r["permissionDenied"] for r in flood)
    assert not [r for r in calls if r["processName"] == "kcmpbench"]  # benign: not written
    assert len(flood) + lost == FLOOD  # every refusal: a line, or counted lost
    assert lost == sum(float(line.split()[-1]) for line in metrics.splitlines()
                       if line.startswith("kcmp_events_dropped_total"))
    assert "running as root: it writes the event file" in daemon.stderr()


def test_backups_are_capped_and_compressed(loop, tmp_path):
    folder = tmp_path / "events"
    folder.mkdir()
    daemon = Daemon(tmp_path, "--events-file", str(folder / "kcmp.json"),
                    "--events-file-max-size-mb", "1", "--events-file-max-backups", "2",
                    "--events-file-compress")
    daemon.wait_ready()
    subprocess.run([str(loop), "eperm", str(FLOOD)], check=True, stdout=subprocess.DEVNULL)
    assert daemon.stop()[0] == 0
    assert sorted(p.name for p in folder.iterdir()) == ["kcmp.json", "kcmp.json.1",
                                                         "kcmp.json.2.gz"]
    assert all(r["eventName"] in ("kcmp", "events_lost") for r in _records(folder))


def test_with_trace_the_file_holds_what_the_json_stream_does(kcmpload, tmp_path):
    path = tmp_path / "kcmp.json"
    js = Monitor(["--output", "json", "--comm", "kcmpload", "--events-file", str(path)],
                 tmp_path, "json")
    js.wait_started()
    wl = Workload.start(kcmpload, tmp_path / "files")
    wl.go()
    wl.finish()
    js.wait_lines(REPEAT * len(EXPECTED))
    assert js.stop() == 0
    streamed = [json.loads(line) for line in js.lines()]
    written = [json.loads(line) for line in path.read_text().splitlines()]
    assert written == streamed and len(written) == REPEAT * len(EXPECTED)
