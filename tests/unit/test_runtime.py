"""Container names from the runtimes, without one: nothing is looked up and nothing fails;
containerd's bundles read as the CRI plugin writes them (tests/kernel/test_containerd.py runs
a real one)."""

import json
import time

from kcmp_monitor.context import runtime
from kcmp_monitor.context.types import ContainerInfo

CRI = {"io.kubernetes.cri.container-type": "container",
       "io.kubernetes.cri.container-name": "web", "io.kubernetes.cri.sandbox-name": "web-7f",
       "io.kubernetes.cri.sandbox-namespace": "shop", "io.kubernetes.cri.sandbox-uid": "0b9e",
       "io.kubernetes.cri.image-name": "registry.local/shop/web:2"}


def test_no_runtime_knows_nothing_and_fails_nothing(tmp_path):
    names = runtime.ContainerRuntime(str(tmp_path / "docker.sock"), bundle_roots=())
    assert not names.available
    assert names.get("ab" * 32) is None and names.get("") is None and names.misses == 0


def test_a_runtime_that_does_not_answer_is_no_runtime(tmp_path):
    sock = tmp_path / "docker.sock"
    sock.write_text("")  # there, but nothing listens
    assert not runtime.ContainerRuntime(str(sock), bundle_roots=()).available


def test_pod_fields_come_from_the_kubelets_labels():
    labels = {"io.kubernetes.pod.name": "web-7f", "io.kubernetes.pod.namespace": "shop",
              "io.kubernetes.pod.uid": "0b9e", "app": "web"}
    assert runtime._info("/web-1", "shop/web:2", "sha256:1", labels) == ContainerInfo(
        "web-1", "shop/web:2", "sha256:1", "web-7f", "shop", "0b9e")
    assert runtime._info("db", None, None, {}).pod_name is None
    # A pod's container is called as its pod spec calls it, not by its runtime's long name.
    labels["io.kubernetes.container.name"] = "web"
    assert runtime._info("/k8s_web_web-7f_shop_0b9e_0", None, None, labels).name == "web"


def test_cri_annotations_name_a_containerd_container_and_its_pod():
    assert runtime.bundle_info(CRI) == ContainerInfo(
        "web", "registry.local/shop/web:2", None, "web-7f", "shop", "0b9e")
    sandbox = {k: v for k, v in CRI.items() if "container-name" not in k}
    assert runtime.bundle_info(sandbox).name == "web-7f"  # a pod's sandbox: the pod's name
    assert runtime.bundle_info({"org.opencontainers.image.title": "x"}) is None  # not CRI's


def _bundle(root, namespace, cid, spec):
    folder = root / namespace / cid
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(spec if isinstance(spec, str) else json.dumps(spec))


def _wait(condition):
    deadline = time.monotonic() + 5
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_bundles_are_read_at_start_and_new_ones_as_they_come(tmp_path):
    root = tmp_path / "io.containerd.runtime.v2.task"
    first, later, plain, broken = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)
    _bundle(root, "k8s.io", first, {"ociVersion": "1.1.0", "annotations": CRI})
    _bundle(root, "default", plain, {"ociVersion": "1.1.0"})
    _bundle(root, "k8s.io", broken, '{"annotations": ')
    names = runtime.ContainerRuntime(str(tmp_path / "docker.sock"), bundle_roots=(str(root),))
    assert names.available and names.known == 1
    assert names.get(first).name == "web"
    names.start()
    _bundle(root, "k8s.io", later, {"annotations": {**CRI, "io.kubernetes.cri.container-name":
                                                    "sidecar"}})
    assert _wait(lambda: names.known == 2)  # found by the next look, never asked for
    assert names.get(later).name == "sidecar" and names.misses == 0
    for cid in (plain, broken):  # the id is all there is, asked for once
        assert names.get(cid) is None and names.get(cid) is None
    assert names.misses == 2


def test_a_bundle_met_before_it_was_seen_is_looked_up_on_the_side(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "BUNDLE_POLL_S", 3600)  # no look between asks
    root = tmp_path / "io.containerd.runtime.v2.task"
    root.mkdir()
    names = runtime.ContainerRuntime(str(tmp_path / "docker.sock"), bundle_roots=(str(root),))
    names.start()
    cid = "e" * 64
    _bundle(root, "k8s.io", cid, {"annotations": CRI})
    assert names.get(cid) is None and names.misses == 1
    assert _wait(lambda: names.get(cid) is not None)
    assert names.get(cid).pod_uid == "0b9e" and names.misses == 1
