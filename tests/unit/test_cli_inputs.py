"""Hostile and mistaken command lines, a few hundred of them: each ends in exactly one line on
stderr and exit 2, no traceback, and nothing loaded or attached before it fails."""

import pytest

from kcmp_monitor import cli
from kcmp_monitor.kernel import kcmp as loader

NUMBERS = ["", "x", "-1", "²", "¹²³", "١٢", "1_000", " 1", "1 ", "0x10", "1e3", "9" * 30,
           "9" * 5000, "nan", "\x1b[31m", "1\x00", "--"]
IDS = NUMBERS + ["0", "4294967296", "99999999999999999999999", "4194305"]
RATES = ["", "x", "-1", "²", "nan", "inf", "-inf", "1e999", "\x1b]0;t\x07", "--"]
ADDRESSES = ["", ":", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
             "127.0.0.1:²", "127.0.0.1:¹²³", "127.0.0.1:" + "9" * 5000, "a..b:9041",
             "a" * 64 + ":9041", "\udcff:9041", "::1:9041", "[::1", "[zz]:9041",
             "[::1]:x", "127.0.0.1:-1", "127.0.0.1: 9041", "127.0.0.1:9041 ", "\x1b[2J:9041"]
FD_REFS = ["", "1", "1:", ":1", "x:1", "1:x", "1:²", "0:3", "4194305:3", "1:4294967296",
           "1:-3", "1:3:4", "T:3"]
EPOLL_REFS = ["", "1:2", "1:2:3:4:5", "x:y:z", "1:2:²", "1:2:4294967296", "1:2:3:4294967296",
              "0:2:3", "T:3:5"]


def _cases():
    for flag in ("--pid", "--uid"):
        for value in IDS:
            if flag == "--uid" and value in ("0", "4194305"):
                continue  # uids, not pids: these are users
            yield ["--trace", flag, value]
    for value in IDS + ["3", "1048576", str(1 << 31), str(1 << 40)]:
        yield ["--trace", "--ringbuf-pages", value]
    for flag in ("--web.max-connections", "--web.max-requests"):
        for value in IDS[:-3]:
            yield [flag, value]
    for flag in ("--web.read-timeout", "--eperm-log-rate", "--fold-window"):
        for value in RATES + {"--fold-window": ["0", "61"], "--web.read-timeout": ["0"]}.get(
                flag, []):
            yield (["--trace"] if flag == "--fold-window" else []) + [flag, value]
    for value in ADDRESSES:
        yield ["--web.listen-address", value]
    for value in IDS + ["Host", "host ", "hosts", "self"]:
        yield ["--namespaces-of", value]
    for value in ("", "bogus", "FILE,", ",", "KCMP_", "8x", "\x1b[31m"):
        yield ["--trace", "--type", value]
    for value in ("", "a\x00b", "no-such-user-here", "\x1b[31m"):
        yield ["--trace", "--uid", value]
    yield ["--trace", "--comm", ""]
    # trace-stream flags without --trace
    yield from (["--pid", "1"], ["--uid", "0"], ["--comm", "x"], ["--type", "VM"],
                ["--errors-only"], ["--output", "json"], ["--no-fold"], ["--fold-window", "2"],
                ["--own-paths-only"])
    for argv in (["--version", "--bogus"], ["--bogus"], ["--trace", "extra"], ["probe"],
                 ["--trace", "--context"], ["--no-compat", "--compat-timing"],
                 ["--trace", "--no-fold", "--fold-window", "2"], ["--output", "xml"],
                 ["--trace", "--output"], ["--web.listen-address"], ["-x"], ["--"]):
        yield argv
    yield from (["--no-detect"], ["--rules", "/tmp/r.yaml"], ["--trace", "--detect"],
                ["--check", "--detect"], ["--trace", "--no-detect", "--rules", "/tmp/r"],
                ["--trace", "--rules", "/nonexistent/rules.yaml"], ["--detect", "--rules", "/"],
                ["detect"], ["detect", "--print-rules", "f"], ["detect", "--output", "xml", "f"],
                ["detect", "--bogus", "f"])
    for value in ("x", "-1", "1001", "²", ""):
        yield ["--events-file", "/tmp/e", "--events-file-max-backups", value]
    for value in ("x", "0", "-1", "²"):
        yield ["--events-file", "/tmp/e", "--events-file-max-size-mb", value]
    yield from (["--events-file-compress"], ["--events-file-max-backups", "3"],
                ["--events-file", "/nonexistent/folder/e"], ["--events-file", "/"],
                ["--check", "--events-file", "/tmp/e"], ["--events-file"])
    for value in FD_REFS:
        yield ["probe", "--fd", value, "1:3"]
        yield ["probe", "--fd", "1:3", value]
    for value in EPOLL_REFS:
        yield ["probe", "--epoll", "1:3", value]
    for value in IDS:
        yield ["probe", value, "1"]
    for value in FD_REFS[:4]:
        yield ["probe", "--epoll", value, "1:2:3"]
    for argv in (["probe", "--fd", "1:2", "3:4", "1"], ["probe", "--epoll", "1:2", "3:4:5", "7"],
                 ["probe", "--fd", "1:2", "3:4", "--all"], ["probe", "1"], ["probe", "1", "2", "3"],
                 ["probe", "--shared-files"], ["probe", "--shared-files", "--all", "1"],
                 ["probe", "--all"], ["probe", "1", "2", "--timeout", "0"],
                 ["probe", "1", "2", "--timeout", "x"], ["probe", "0", "1"],
                 ["probe", "1", "4194305"], ["probe", "²", "1"], ["probe", "--fd", "1:2"],
                 ["probe", "--fd", "1:2", "3:4", "--epoll", "1:2", "3:4:5"]):
        yield argv


CASES = list(_cases())


def test_there_are_a_few_hundred():
    assert len(CASES) >= 250


@pytest.fixture
def nothing_loads(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("a program was loaded before the usage error")

    monkeypatch.setattr(loader.KcmpProgram, "__init__", refuse)


@pytest.mark.parametrize("argv", CASES, ids=[repr(a)[:60] for a in CASES])
def test_a_bad_command_line_is_one_line_and_exit_2(argv, capsys, nothing_loads):
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("kcmp-monitor: error: "), err
    assert "Traceback" not in err and "\x1b" not in err


@pytest.mark.parametrize("argv", [["--trace"], ["--check"], ["--version"], ["--help"],
                                  ["probe", "1", "2"], ["--bogus"]])
def test_a_closed_stdout_is_one_line(argv):
    """`>&-`: what would print has nowhere to go; said before anything is loaded."""
    import subprocess

    from tests.helpers import monitor_command

    quoted = " ".join(f"'{a}'" for a in argv)
    result = subprocess.run(["bash", "-c", f"exec '{monitor_command()}' {quoted} >&-"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("kcmp-monitor: error: ")
