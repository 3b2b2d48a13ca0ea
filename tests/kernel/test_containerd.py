"""A real containerd (the one docker.io runs; ctr in a namespace of its own): a container made
as containerd's CRI plugin makes a pod's (a 64-hex id, the kubelet's cgroup path, the CRI's
annotations in its OCI spec), running the static ownfds. Every record names it, its image and
its pod, for the caller and the targets, from the task's bundle: no Docker involved."""

import json
import subprocess
import time
import uuid

import pytest

from .conftest import REPEAT, Monitor

pytestmark = pytest.mark.kernel

CALLS = 8 * REPEAT  # as ownfds makes them


@pytest.fixture(scope="session")
def ctr_image(containerd, ownfds_image):
    """The ownfds image handed to containerd, as a kubelet's pull would."""
    save = subprocess.Popen(["docker", "save", ownfds_image], stdout=subprocess.PIPE)
    subprocess.run([*containerd, "images", "import", "-"], stdin=save.stdout, check=True,
                   capture_output=True)
    assert save.wait() == 0
    (ref,) = [ref for ref in subprocess.run([*containerd, "images", "ls", "-q"], check=True,
                                            capture_output=True, text=True).stdout.split()
              if ref.endswith(ownfds_image)]
    yield ref
    subprocess.run([*containerd, "images", "rm", ref], capture_output=True)


def test_a_cri_container_is_named_with_its_pod_from_its_bundle(containerd, ctr_image,
                                                               tmp_path):
    cid = uuid.uuid4().hex + uuid.uuid4().hex
    pod_uid = str(uuid.uuid4())
    annotations = {"io.kubernetes.cri.container-type": "container",
                   "io.kubernetes.cri.container-name": "web",
                   "io.kubernetes.cri.sandbox-name": "web-7f9c",
                   "io.kubernetes.cri.sandbox-namespace": "shop",
                   "io.kubernetes.cri.sandbox-uid": pod_uid,
                   "io.kubernetes.cri.image-name": "registry.local/shop/web:2"}
    js = Monitor(["--output", "json", "--comm", "ownfds"], tmp_path, "json")
    text = Monitor(["--comm", "ownfds"], tmp_path, "text")
    js.wait_started()
    text.wait_started()
    run = subprocess.Popen(
        [*containerd, "run", "--rm",
         f"--cgroup=/kubepods/besteffort/pod{pod_uid}/{cid}",  # as the kubelet lays them out
         *(f"--annotation={key}={value}" for key, value in annotations.items()),
         ctr_image, cid, "/ownfds", "/tmp"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert run.stdout.readline().startswith("ownfds ")
        time.sleep(2)  # the runtime's next look at the bundles (every 0.5 s) has found it
        run.stdin.write("go\n")
        run.stdin.close()
        assert run.wait(timeout=60) == 0
    finally:
        if run.poll() is None:
            run.kill()
    for m in (js, text):
        m.wait_lines(CALLS)
    assert js.stop() == 0 and text.stop() == 0
    want = {"containerId": cid, "containerName": "web",
            "containerImage": "registry.local/shop/web:2", "containerImageId": None,
            "podName": "web-7f9c", "podNamespace": "shop", "podUID": pod_uid}
    records = [json.loads(line) for line in js.lines()]
    assert len(records) == CALLS
    for r in records:
        assert {k: r[k] for k in want} == want
        for t in r["targets"]:
            assert {k: t[k] for k in want} == want
    assert sum(" ctr=web " in line for line in text.lines()) == CALLS
