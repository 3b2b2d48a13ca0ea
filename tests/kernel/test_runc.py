"""A container made by runc itself, the runtime under Docker and containerd, with no engine
around it: the caller is known by the cgroup runc made for it, as the program read its name at
the call, on whatever hierarchy the machine has (cgroup v2 alone in the kernel matrix's guests,
v1 controllers on this host), and by its namespaces as the kernel saw them."""

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.helpers import in_guest, patience, skip_or_fail

from .conftest import REPEAT, Monitor

pytestmark = pytest.mark.kernel

CALLS = 8 * REPEAT  # as ownfds makes them
PARENT = "kcmp-monitor-test"  # the cgroup the test's containers are made under


@pytest.fixture
def container(ownfds, tmp_path):
    """(bundle, container id): ownfds alone in a rootfs, runc's default spec, a cgroup path
    the way Docker's cgroupfs driver makes them (PARENT/<64 hex>)."""
    if not shutil.which("runc"):
        skip_or_fail("needs runc (it comes with docker.io; run `sudo make setup`)")
    bundle = tmp_path / "bundle"
    (bundle / "rootfs" / "tmp").mkdir(parents=True)
    shutil.copy(ownfds, bundle / "rootfs" / "ownfds")
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    spec = json.loads((bundle / "config.json").read_text())
    cid = uuid.uuid4().hex * 2
    spec["process"].update(args=["/ownfds", "/tmp"], terminal=False)
    spec["root"]["readonly"] = False
    spec["linux"]["cgroupsPath"] = f"/{PARENT}/{cid}"
    (bundle / "config.json").write_text(json.dumps(spec))
    yield bundle, cid
    subprocess.run(["runc", "delete", "--force", cid], capture_output=True)
    for parent in Path("/sys/fs/cgroup").glob(f"**/{PARENT}"):
        parent.rmdir()


@pytest.mark.guest
def test_a_runc_container_is_known_by_the_cgroup_runc_made(container, tmp_path):
    bundle, cid = container
    js = Monitor(["--output", "json", "--comm", "ownfds"], tmp_path, "json")
    # In the kernel matrix's guests the JSON monitor alone: each start compiles under TCG.
    text = None if in_guest() else Monitor(["--comm", "ownfds"], tmp_path, "text")
    monitors = [m for m in (js, text) if m is not None]
    for m in monitors:
        m.wait_started()
    run = subprocess.Popen(["runc", "run", "--bundle", str(bundle), cid],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    made = dict(word.split("=", 1) for word in run.stdout.readline().split()[1:])
    run.stdin.write("go\n")
    run.stdin.close()
    assert run.wait(timeout=patience(60)) == 0
    for m in monitors:
        m.wait_lines(CALLS)
    assert [m.stop() for m in monitors] == [0] * len(monitors)
    records = [json.loads(line) for line in js.lines()]
    assert len(records) == CALLS
    for r in records:
        assert r["containerId"] == cid and r["callerPidNamespace"] == "other"
        assert r["processId"] == 1 and r["hostProcessId"] != 1
        assert r["pidNamespace"] == int(made["pidns"])
        assert r["mountNamespace"] == int(made["mntns"])
        assert r["networkNamespace"]["inode"] == int(made["netns"])
        assert r["executable"]["name"] == "ownfds"
        ebadf = r["args"][3]["value"] == 0x80000003
        assert r["returnValue"] == (-9 if ebadf else 0), r
    if text is None:
        return
    lines = text.lines()
    own = f"{made['file']}</tmp/own>"
    assert sum(f" ctr={cid[:12]} " in line and f"kcmp(1, 1, KCMP_FILE, {own}, {own}) = 0"
               in line for line in lines) == REPEAT
    assert sum(f" ctr={cid[:12]} " in line for line in lines) == CALLS
