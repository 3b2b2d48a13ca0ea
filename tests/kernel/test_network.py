"""Network context on the real kernel: socket fds shown with their endpoints (as
`strace -yy`, in other network namespaces too), and the network namespaces of callers and
targets named as `ip netns` names them."""

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


@pytest.fixture
def named_netns(kernel_ready):
    """A network namespace made with pyroute2, its loopback up, removed afterwards."""
    if not shutil.which("nsenter"):
        skip_or_fail("needs nsenter (util-linux)")
    from pyroute2 import NetNS, netns

    name = f"kcmptest-{uuid.uuid4().hex[:8]}"
    netns.create(name)
    try:
        with NetNS(name) as ns:  # a new namespace's loopback starts down
            ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
        yield name
    finally:
        netns.remove(name)


def test_the_callers_network_namespace_is_named(named_netns, tmp_path):
    name = named_netns
    held, records, _ = run_caller(tmp_path, ("nsenter", f"--net=/run/netns/{name}"))
    assert len(records) == 2 * REPEAT
    assert {r["networkNamespace"]["name"] for r in records} == {name}
    assert {t["networkNamespace"]["name"] for r in records for t in r["targets"]} == {name}
    assert all(r["crossesBoundary"] == [] for r in records)  # itself, in the same namespace
    own = Path("/proc/self/ns/net").stat().st_ino
    inodes = {r["networkNamespace"]["inode"] for r in records}
    assert len(inodes) == 1 and own not in inodes
    # Its sockets live in that namespace, which sock_diag here does not see: they are found
    # in the caller's /proc/<pid>/net (Unix sockets without their peers).
    (chost, cport), (shost, sport) = held["client"], held["server"]
    left, right = held["unix_inodes"]
    paths = [r["fdPaths"] for r in records]
    assert paths.count({"idx1": f"TCP:[{chost}:{cport}->{shost}:{sport}]",
                        "idx2": f"TCP:[{shost}:{sport}->{chost}:{cport}]"}) == REPEAT
    assert paths.count({"idx1": f"UNIX-STREAM:[{left}]",
                        "idx2": f"UNIX-STREAM:[{right}]"}) == REPEAT


def test_a_target_in_another_network_namespace_is_named_and_crossing(named_netns, tmp_path):
    inside = subprocess.Popen(["nsenter", f"--net=/run/netns/{named_netns}", "sleep", "1000"])
    try:
        caller = subprocess.Popen([sys.executable, str(HERE / "nscaller.py"), "outer",
                                   str(inside.pid)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        caller.stdout.readline()
        js = Monitor(["--output", "json", "--pid", str(caller.pid)], tmp_path, "json")
        js.wait_started()
        caller.stdin.write("go\n")
        caller.stdin.flush()
        caller.stdout.readline()
        assert caller.stdout.readline() == "ready\n"
        js.wait_lines(REPEAT)
        caller.stdin.close()
        assert caller.wait(timeout=30) == 0 and js.stop() == 0
    finally:
        inside.kill()
        inside.wait()
    records = [json.loads(line) for line in js.lines()]
    assert len(records) == REPEAT
    for r in records:
        assert r["networkNamespace"]["name"] is None  # the caller: the host's namespace
        target = r["targets"][1]
        assert (target["hostPid"], target["processName"]) == (inside.pid, "sleep")
        assert target["networkNamespace"]["name"] == named_netns
        assert r["crossesBoundary"] == ["net"]
