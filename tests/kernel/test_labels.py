"""Process names that would collide as labels, through the real daemon and a real Prometheus:
every name keeps a series of its own, and no call is lost between the two sums."""

import platform
import subprocess
import sys

import pytest

from kcmp_monitor import abi

from .conftest import Daemon, Prometheus

pytestmark = pytest.mark.kernel

# Each pair would once have shared a label: the overflow bucket's name, a C1 character and
# the byte it was escaped as, the text \xff and the byte, a name and itself with a newline.
NAMES = [b"other", b"(other processes", b"c\xc2\x9b", b"c\x9b", b"\\xff", b"\xff", b"a\n",
         b"a", b"z msg=hi uid=0"]
CALLS = 37

CALLER = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(15, bytes.fromhex(sys.argv[1]), 0, 0, 0)
me = os.getpid()
for _ in range({calls}):
    libc.syscall({nr}, me, me, 1, 0, 0)
"""


def test_colliding_names_keep_their_own_series(kernel_ready, prometheus_bin, tmp_path):
    daemon = Daemon(tmp_path)
    daemon.wait_ready()
    prom = Prometheus(prometheus_bin, tmp_path, [daemon.port])
    try:
        script = CALLER.format(calls=CALLS, nr=abi.SYSCALL_NR[platform.machine()])
        for name in NAMES:
            subprocess.run([sys.executable, "-c", script, name.hex()], check=True)
        total = CALLS * len(NAMES)
        prom.wait_for('sum(kcmp_calls_total{job="kcmp"})', total)
        prom.wait_for('sum(kcmp_caller_calls_total{job="kcmp"})', total)
        series = prom.query('kcmp_caller_calls_total{job="kcmp"}')
        by_name = {s["metric"]["comm"]: float(s["value"][1]) for s in series}
        mine = {name: calls for name, calls in by_name.items() if calls >= CALLS}
        assert len(mine) == len(NAMES), by_name  # one series each
        assert all(calls == CALLS for calls in mine.values()), mine
        assert by_name["(other processes)"] == 0  # no name became the bucket
        assert "z\\x20msg=hi\\x20uid=0" not in by_name  # labels escape no space: one word
        calls = float(prom.query('sum(kcmp_calls_total{job="kcmp"})')[0]["value"][1])
        callers = float(prom.query('sum(kcmp_caller_calls_total{job="kcmp"})')[0]["value"][1])
        assert callers == calls
    finally:
        prom.stop()
        daemon.stop()
