"""The event file: lines whole in one file each, rotation by size, backups capped, the older
ones compressed while the newest backup stays plain for a tailer still reading it."""

import gzip
import json
import os

from kcmp_monitor.sinks.eventfile import FileSink, RotatingLines


def _lines(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as f:
        return f.read().splitlines()


def test_lines_rotate_whole_and_backups_are_capped(tmp_path):
    path = tmp_path / "events.json"
    out = RotatingLines(str(path), max_bytes=100, backups=3, compress=True)
    lines = [json.dumps({"n": n, "pad": "x" * 20}) for n in range(40)]  # 36-37 bytes each
    for i in range(0, 40, 3):
        out.write(lines[i:i + 3])
    out.close()
    names = sorted(os.listdir(tmp_path))
    assert names == ["events.json", "events.json.1", "events.json.2.gz", "events.json.3.gz"]
    kept = []
    for name in ("events.json.3.gz", "events.json.2.gz", "events.json.1", "events.json"):
        got = _lines(tmp_path / name)
        assert sum(len(line) + 1 for line in got) <= 100
        kept += got
    assert kept == lines[-len(kept):]  # the newest, in order, none split
    assert all(json.loads(line)["pad"] for line in kept)
    assert out.lines == 40
    assert oct((tmp_path / "events.json").stat().st_mode & 0o777) == "0o600"


def test_a_line_longer_than_the_size_gets_a_file_of_its_own(tmp_path):
    path = tmp_path / "e"
    out = RotatingLines(str(path), max_bytes=10, backups=2, compress=False)
    out.write(["a" * 30, "b", "c" * 30])
    out.close()
    assert [_lines(tmp_path / n) for n in ("e.2", "e.1", "e")] == [["a" * 30], ["b"], ["c" * 30]]


def test_no_backups_starts_the_file_again(tmp_path):
    path = tmp_path / "e"
    out = RotatingLines(str(path), max_bytes=10, backups=0, compress=True)
    out.write(["12345678", "abcdefgh"])
    out.close()
    assert os.listdir(tmp_path) == ["e"] and _lines(path) == ["abcdefgh"]


def test_an_existing_file_is_appended_to(tmp_path):
    path = tmp_path / "e"
    path.write_text("old\n")
    out = RotatingLines(str(path), max_bytes=1000, backups=1, compress=False)
    out.write(["new"])
    out.close()
    assert _lines(path) == ["old", "new"]


def test_the_file_sink_writes_the_losses(tmp_path):
    out = RotatingLines(str(tmp_path / "e"), max_bytes=1 << 20, backups=1, compress=False)
    sink = FileSink(out)
    sink.start(["note"])
    sink.lost(7, 123, "priority")
    sink.flush()
    out.close()
    (line,) = _lines(tmp_path / "e")
    assert json.loads(line) == {"timestamp": 123, "eventName": "events_lost", "lostEvents": 7,
                                "reason": "ring buffer full", "lane": "priority"}
