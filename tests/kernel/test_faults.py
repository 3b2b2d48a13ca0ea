"""Output faults and signals against the real monitor: each ends in one error line (none for
a signal), a documented exit code and the summary line, within 2 s, never a traceback."""

import os
import signal
import subprocess
import time

import pytest

from tests.helpers import monitor_command

from .conftest import Monitor

pytestmark = pytest.mark.kernel

EXIT_IOERR = 74
SUMMARY = "calls traced"


def _started(err_path, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while b"Tracing kcmp()" not in err_path.read_bytes():
        assert proc.poll() is None, err_path.read_text()
        assert time.monotonic() < deadline, "the monitor did not start"
        time.sleep(0.05)


def _ends_cleanly(err: str, code: int, expected: int, error: str | None) -> None:
    assert code == expected, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    lines = err.splitlines()
    assert any(SUMMARY in line for line in lines), err
    errors = [line for line in lines if line.startswith("kcmp-monitor: error: ")]
    assert errors == ([] if error is None else [errors[0]]) and (
        error is None or error in errors[0]), err


def test_stdout_on_dev_full(kernel_ready, tmp_path):
    err = tmp_path / "err"
    with open("/dev/full", "wb") as full:
        code = subprocess.run([monitor_command(), "--trace"], stdout=full,
                              stderr=err.open("wb"), timeout=60).returncode
    _ends_cleanly(err.read_text(), code, EXIT_IOERR, "No space left on device")


def test_stdout_on_a_file_system_that_fills(loop, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], check=True)
    try:
        err = tmp_path / "err"
        proc = subprocess.Popen([monitor_command(), "--trace", "--no-fold", "--output", "json",
                                 "--comm", "kcmpbench"],
                                stdout=(disk / "out").open("wb"), stderr=err.open("wb"))
        _started(err, proc)
        subprocess.run([str(loop), "kcmp", "20000"], check=True, stdout=subprocess.DEVNULL)
        code = proc.wait(timeout=30)  # the fault ends it: no signal needed
        _ends_cleanly(err.read_text(), code, EXIT_IOERR, "No space left on device")
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_stalled_reader_does_not_hold_a_stop_past_2_s(loop, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # held open, never read
    try:
        err = tmp_path / "err"
        proc = subprocess.Popen([monitor_command(), "--trace", "--no-fold", "--output", "json",
                                 "--comm", "kcmpbench"],
                                stdout=open(fifo, "wb"), stderr=err.open("wb"))
        _started(err, proc)
        # A pipe holds 64 KiB: a few dozen records fill it, and the monitor's write blocks.
        subprocess.run([str(loop), "kcmp", "20000"], check=True, stdout=subprocess.DEVNULL)
        time.sleep(1)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
        took = time.monotonic() - start
        assert took < 2, took
        _ends_cleanly(err.read_text(), code, EXIT_IOERR, "stopped with output unwritten")
    finally:
        os.close(reader)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1,
                                 signal.SIGUSR2, signal.SIGALRM])
def test_every_stop_signal_ends_with_the_summary(kernel_ready, tmp_path, sig):
    text = Monitor([], tmp_path, "text")
    text.wait_started()
    start = time.monotonic()
    code = text.stop(sig)
    assert time.monotonic() - start < 2
    _ends_cleanly(text.stderr(), code, 0, None)


@pytest.mark.parametrize("of, code, error", [
    ("host", 69, "--namespaces-of host: the kernel's threads are not visible here; share the "
                 "host's pid namespace"),
    ("4194304", 66, "--namespaces-of 4194304: no such process")])
def test_namespaces_that_cannot_be_read_are_one_line_before_anything_attaches(
        kernel_ready, of, code, error):
    """In a pid namespace of its own (a container without --pid host), kthreadd is not there."""
    result = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", monitor_command(),
                             "--check", "--namespaces-of", of],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == code, result.stderr
    assert result.stdout == "" and result.stderr.startswith(f"kcmp-monitor: error: {error}")
    assert len(result.stderr.splitlines()) == 1
