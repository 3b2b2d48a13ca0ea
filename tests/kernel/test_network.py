"""Network context on the real kernel: socket fds shown with their endpoints (as
`strace -yy`), and the caller's network namespace named as `ip netns` names it."""

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.helpers import skip_or_fail

from .conftest import REPEAT, Monitor

pytestmark = pytest.mark.kernel
HERE = Path(__file__).resolve().parent


def run_caller(tmp_path, prefix=()):
    """sockcmp.py under a monitor filtered on its pid: (what it held, JSON records, lines)."""
    helper = subprocess.Popen([*prefix, sys.executable, str(HERE / "sockcmp.py")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    held = json.loads(helper.stdout.readline())
    js = Monitor(["--output", "json", "--pid", str(helper.pid)], tmp_path, "json")
    text = Monitor(["--pid", str(helper.pid)], tmp_path, "text")
    js.wait_started()
    text.wait_started()
    helper.stdin.write("go\n")
    helper.stdin.flush()
    assert helper.stdout.readline() == "ready\n"
    for m in (js, text):
        m.wait_lines(2 * REPEAT)
    helper.stdin.close()
    helper.wait(timeout=30)
    assert js.stop() == 0 and text.stop() == 0
    return held, [json.loads(line) for line in js.lines()], text.lines()


def test_socket_fds_show_their_endpoints(kernel_ready, tmp_path):
    held, records, lines = run_caller(tmp_path)
    (chost, cport), (shost, sport) = held["client"], held["server"]
    tcp_client = f"TCP:[{chost}:{cport}->{shost}:{sport}]"
    tcp_server = f"TCP:[{shost}:{sport}->{chost}:{cport}]"
    left, right = held["unix_inodes"]
    unix = (f"UNIX-STREAM:[{left}->{right}]", f"UNIX-STREAM:[{right}->{left}]")
    paths = [r["fdPaths"] for r in records]
    assert paths.count({"idx1": tcp_client, "idx2": tcp_server}) == REPEAT
    assert paths.count({"idx1": unix[0], "idx2": unix[1]}) == REPEAT
    c, s = held["tcp"]
    assert sum(f"KCMP_FILE, {c}<{tcp_client}>, {s}<{tcp_server}>)" in line
               for line in lines) == REPEAT
    assert all(r["networkNamespace"]["name"] is None for r in records)  # the host's


def test_the_callers_network_namespace_is_named(kernel_ready, tmp_path):
    if not shutil.which("nsenter"):
        skip_or_fail("needs nsenter (util-linux)")
    from pyroute2 import NetNS, netns

    name = f"kcmptest-{uuid.uuid4().hex[:8]}"
    netns.create(name)
    try:
        with NetNS(name) as ns:  # a new namespace's loopback starts down
            ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
        held, records, _ = run_caller(tmp_path, ("nsenter", f"--net=/run/netns/{name}"))
    finally:
        netns.remove(name)
    assert len(records) == 2 * REPEAT
    assert {r["networkNamespace"]["name"] for r in records} == {name}
    own = Path("/proc/self/ns/net").stat().st_ino
    inodes = {r["networkNamespace"]["inode"] for r in records}
    assert len(inodes) == 1 and own not in inodes
    # Its sockets live in that namespace, which sock_diag here does not see: left as they are.
    assert all(p.startswith("socket:[") for r in records for p in r["fdPaths"].values())
