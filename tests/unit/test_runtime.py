"""Container names from the runtime, without one: nothing is looked up and nothing fails."""

from kcmp_monitor.context import runtime
from kcmp_monitor.context.types import ContainerInfo


def test_no_runtime_knows_nothing_and_fails_nothing(tmp_path):
    names = runtime.ContainerRuntime(str(tmp_path / "docker.sock"))
    assert not names.available
    assert names.get("ab" * 32) is None and names.get("") is None and names.misses == 0


def test_a_runtime_that_does_not_answer_is_no_runtime(tmp_path):
    sock = tmp_path / "docker.sock"
    sock.write_text("")  # there, but nothing listens
    assert not runtime.ContainerRuntime(str(sock)).available


def test_pod_fields_come_from_the_kubelets_labels():
    labels = {"io.kubernetes.pod.name": "web-7f", "io.kubernetes.pod.namespace": "shop",
              "io.kubernetes.pod.uid": "0b9e", "app": "web"}
    assert runtime._info("/web-1", "shop/web:2", "sha256:1", labels) == ContainerInfo(
        "web-1", "shop/web:2", "sha256:1", "web-7f", "shop", "0b9e")
    assert runtime._info("db", None, None, {}).pod_name is None
