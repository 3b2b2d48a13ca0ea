"""The boundary: one line on stderr and a distinct exit code for every failure a user can fix."""

import os
import shutil
import subprocess

import pytest

from kcmp_monitor import cli
from kcmp_monitor.errors import MonitorError, NoPermission, Unavailable
from tests.helpers import monitor_command, skip_or_fail


@pytest.mark.parametrize("argv, message", [
    (["--web.listen-address", "localhost"], "expected HOST:PORT"),
    (["--web.listen-address", "::1:9041"], "write an IPv6 address in brackets"),
    (["--eperm-log-rate", "-1"], "must be 0 or more"),
    (["--comm", "criu", "--errors-only"], "--comm, --errors-only shape the --trace stream"),
    (["--output", "json"], "--output shape the --trace stream"),
    (["--trace", "--pid", "x"], "argument --pid: 'x' is not a number"),
    (["--trace", "--pid", "0"], "argument --pid: '0' must be positive"),
    (["--trace", "--type", "FILE,bogus"], "unknown kcmp type 'bogus'"),
    (["--trace", "--uid", "no-such-user-here"], "no user 'no-such-user-here'"),
    (["--trace", "--ringbuf-pages", "3"], "3 is not a power of two"),
    (["--trace", "--output", "xml"], "invalid choice: 'xml'"),
    (["--trace", "--bogus"], "unrecognized arguments: --bogus"),
    (["--trace", "--context"], "--context is the exporter's"),
    (["--no-compat", "--compat-timing"], "--compat-timing times 32-bit calls"),
    (["--no-fold"], "--no-fold shape the --trace stream"),
    (["--own-paths-only"], "--own-paths-only shape the --trace stream"),
    (["--trace", "--no-fold", "--fold-window", "2"], "which --no-fold turns off"),
    (["--trace", "--fold-window", "61"], "a window is more than 0 and at most 60 seconds"),
    (["--trace", "--fold-window", "0"], "a window is more than 0 and at most 60 seconds"),
])
def test_usage_errors(argv, message, capsys):
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("kcmp-monitor: error: ") and message in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("error, code", [
    (NoPermission("needs root"), 77),
    (Unavailable("tracefs is not mounted"), 69),
    (MonitorError("could not load"), 70),
])
def test_typed_errors_map_to_exit_codes(monkeypatch, capsys, error, code):
    def fail(_args):
        raise error

    monkeypatch.setattr(cli, "run", fail)
    assert cli.main(["--trace"]) == code
    assert capsys.readouterr().err == f"kcmp-monitor: error: {error}\n"


def test_error_messages_are_one_terminal_safe_line(monkeypatch, capsys):
    def fail(_args):
        raise MonitorError("could not load: /tmp/\x1b[2J\nsecond line")

    monkeypatch.setattr(cli, "run", fail)
    assert cli.main(["--trace"]) == 70
    assert capsys.readouterr().err == \
        "kcmp-monitor: error: could not load: /tmp/\\x1b[2J\\nsecond line\n"


def test_filters_parse(monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "run", lambda plan: seen.append(plan) or 0)
    assert cli.main(["--trace", "--type", "vm,7,unknown", "--uid", "root", "--comm",
                     "a-very-long-process-name", "--no-compat", "--errors-only"]) == 0
    (program,) = (plan.program for plan in seen)
    assert program.filters.types == frozenset({1, 7, 8})
    assert program.filters.uid == 0 and program.filters.comm == b"a-very-long-pro"
    assert program.compat is False and program.filters.errors_only is True


def test_help_shows_examples_and_exit_codes():
    out = subprocess.run([monitor_command(), "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert "kcmp-monitor --trace --errors-only" in out and "77 no permission" in out


def test_without_capabilities_one_line_and_exit_77():
    argv = [monitor_command(), "--trace"]
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            skip_or_fail("needs setpriv (util-linux) to drop root's capabilities")
        # Root with an empty bounding set has no capabilities after exec.
        argv = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"] + argv
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 77
    assert result.stdout == ""
    assert result.stderr.startswith("kcmp-monitor: error: needs root")
    assert result.stderr.count("\n") == 1


def test_exit_line_says_what_crossed_and_what_was_not_resolved():
    from kcmp_monitor.sinks.console import exit_line
    from kcmp_monitor.trace import Summary

    assert exit_line(Summary(events=5, lost=2)) == "kcmp-monitor: 5 calls traced, 2 lost"
    summary = Summary(events=9, lost=0, unpaired=1, unresolved=3)
    summary.crossings.update(pid=4, net=1)
    assert exit_line(summary) == (
        "kcmp-monitor: 9 calls traced, 0 lost, 1 without entry (in-flight map full); "
        "crossing a boundary: pid 4, net 1; 3 with context unresolved")


@pytest.mark.parametrize("argv, message", [
    (["probe", "--epoll", "1:2", "x:y"], "argument --epoll: 'x:y' is not PID:EFD:TFD[:TOFF]"),
    (["probe", "--epoll", "1", "2:3:4"], "argument --epoll: '1' is not PID:FD"),
    (["probe", "--fd", "1:2", "3"], "argument --fd: '3' is not PID:FD"),
])
def test_probe_references_are_usage_errors(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("kcmp-monitor: error: ") and message in err and err.count("\n") == 1
