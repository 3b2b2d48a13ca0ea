"""A real Docker engine (Debian's docker.io, started here when it is not running): a container
of an image imported from a rootfs holding only the static ownfds, under Docker's default
seccomp profile, which refuses kcmp without CAP_SYS_PTRACE, and with that capability added."""

import json
import os
import subprocess
import time
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import REPEAT, Daemon, Monitor, docker, stopped

pytestmark = pytest.mark.kernel

CALLS = 8 * REPEAT  # as ownfds makes them


@pytest.fixture(scope="session")
def image(ownfds_image):
    return ownfds_image


def _run(image, tmp_path, *options):
    """ownfds in a container, watched by a JSON and a console monitor and counted by a default
    exporter; (container id, what ownfds printed, JSON records, console lines, the
    exporter's metrics after, its log)."""
    daemon = Daemon(tmp_path)
    js = Monitor(["--output", "json", "--comm", "ownfds"], tmp_path, "json")
    text = Monitor(["--comm", "ownfds"], tmp_path, "text")
    daemon.wait_ready()
    js.wait_started()
    text.wait_started()
    cidfile = tmp_path / "cid"
    run = subprocess.Popen(["docker", "run", "--rm", "-i", "--cidfile", str(cidfile), *options,
                            image, "/ownfds", "/tmp"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    made = dict(word.split("=", 1) for word in run.stdout.readline().split()[1:])
    # The monitors learn a container from the engine's event stream, on a thread of their
    # own; a call made before that names it by its short id. On a dockerd just started that
    # was seen to take a few hundred ms: the calls wait until it has surely passed.
    time.sleep(2)
    run.stdin.write("go\n")
    run.stdin.close()
    assert run.wait(timeout=60) == 0
    for m in (js, text):
        m.wait_lines(CALLS)
    metrics = daemon.metrics()
    assert js.stop() == 0 and text.stop() == 0 and daemon.stop()[0] == 0
    return (cidfile.read_text().strip(), made, [json.loads(line) for line in js.lines()],
            text.lines(), metrics, daemon.stderr())


def _namespaced(metrics):
    """kcmp_namespaced_calls_total's non-zero series, by (namespace, type, outcome)."""
    found = {}
    for family in text_string_to_metric_families(metrics):
        for s in family.samples:
            if s.name == "kcmp_namespaced_calls_total" and s.value:
                labels = s.labels
                found[labels["namespace"], labels["kcmp_type"], labels["outcome"]] = s.value
    return found


def test_default_seccomp_profile_refusals_show_their_arguments(image, tmp_path):
    name = f"kcmp-test-{uuid.uuid4().hex[:8]}"
    cid, made, records, lines, metrics, log = _run(image, tmp_path, "--name", name)
    assert len(records) == CALLS and len(lines) == CALLS
    # Counted in the kernel as calls from another pid, mount and network namespace, by a
    # default exporter (no stream, no --context).
    assert _namespaced(metrics) == {
        (ns, kind, "error"): n * REPEAT
        for ns in ("pid", "mnt", "net") for kind, n in (("KCMP_FILE", 7), ("KCMP_EPOLL_TFD", 1))}
    # The exporter's EPERM log names the container too, though it runs as nobody by then:
    # it learnt the container from the engine's event stream, opened while it was root.
    refused = [line for line in log.splitlines() if 'msg="kcmp refused by seccomp"' in line]
    assert refused and all(f" container={name} " in line for line in refused)
    for r in records:
        assert r["refusedBySeccomp"] is True and r["errno"] == "EPERM"
        assert r["argsKnown"] is True and r["durationNs"] is None
        assert [a["value"] for a in r["args"]][:2] == [1, 1]  # the container's pid 1, itself
        assert r["kcmpType"] in ("KCMP_FILE", "KCMP_EPOLL_TFD")
        assert r["containerId"] == cid and r["callerPidNamespace"] == "other"
        assert r["pidNamespace"] == int(made["pidns"])
        assert r["mountNamespace"] == int(made["mntns"])
        assert r["capabilities"]["sysPtrace"] is False
        assert r["executable"]["name"] == "ownfds"
    own = f"{made['file']}</tmp/own>"
    assert sum(line.startswith(tuple("0123456789")) and f" ctr={name} " in line
               and f"kcmp(1, 1, KCMP_FILE, {own}, {own}) = -1 EPERM (Operation not permitted) "
               "<refused by seccomp>" in line and line.endswith("!! SECCOMP caller uid=0")
               for line in lines) == REPEAT
    epoll = (f"kcmp(1, 1, KCMP_EPOLL_TFD, {made['pipe']}<pipe:[")
    assert sum(epoll in line and f"{{efd={made['epoll']}<anon_inode:[eventpoll]>, " in line
               for line in lines) == REPEAT


def test_with_cap_sys_ptrace_the_calls_succeed_and_targets_are_translated(image, tmp_path):
    cid, made, records, _lines, metrics, _log = _run(image, tmp_path, "--cap-add",
                                                      "SYS_PTRACE")
    assert len(records) == CALLS
    assert _namespaced(metrics) == {
        (ns, kind, outcome): n * REPEAT for ns in ("pid", "mnt", "net")
        for kind, outcome, n in (("KCMP_FILE", "same", 6), ("KCMP_FILE", "error", 1),
                                 ("KCMP_EPOLL_TFD", "same", 1))}
    for r in records:
        assert r["refusedBySeccomp"] is False and r["containerId"] == cid
        assert r["capabilities"]["sysPtrace"] is True
        ebadf = r["args"][3]["value"] == 0x80000003
        assert r["returnValue"] == (-9 if ebadf else 0), r
        host = r["hostProcessId"]
        assert host != 1 and r["processId"] == 1
        assert [(t["pid"], t["hostPid"], t["processName"]) for t in r["targets"]] == [
            (1, host, "ownfds"), (1, host, "ownfds")]
        assert r["contextUnresolved"] == []
    assert os.path.exists(f"/proc/{records[0]['hostProcessId']}") is False


def test_containers_are_named_by_their_runtime_with_their_pods(image, tmp_path):
    """A container with the labels the kubelet sets: every event names it as its pod does, its
    image and its pod, for the caller and for each target (itself), in JSON and on the console."""
    name = f"kcmp-test-{uuid.uuid4().hex[:8]}"
    pod = {"io.kubernetes.pod.name": "web-7f9c", "io.kubernetes.pod.namespace": "shop",
           "io.kubernetes.pod.uid": str(uuid.uuid4()), "io.kubernetes.container.name": "web"}
    labels = [arg for key, value in pod.items() for arg in ("--label", f"{key}={value}")]
    cid, _made, records, lines, _metrics, _log = _run(image, tmp_path, "--cap-add", "SYS_PTRACE",
                                                "--name", name, *labels)
    image_id = docker("image", "inspect", "-f", "{{.Id}}", image).stdout.strip()
    # Named as the pod spec names it, not by the engine's name for it.
    want = {"containerName": "web", "containerImage": image, "containerImageId": image_id,
            "podName": pod["io.kubernetes.pod.name"],
            "podNamespace": pod["io.kubernetes.pod.namespace"],
            "podUID": pod["io.kubernetes.pod.uid"]}
    assert len(records) == CALLS
    for r in records:
        assert r["containerId"] == cid
        assert {k: r[k] for k in want} == want
        for t in r["targets"]:
            assert {k: t[k] for k in want} == want
    assert sum(" ctr=web " in line for line in lines) == CALLS


def _container(image, *options, args=("/tmp",)):
    """ownfds in a container, started and waiting for its "go"; (process, what it printed)."""
    run = subprocess.Popen(["docker", "run", "--rm", "-i", *options, image, "/ownfds", *args],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    made = dict(word.split("=", 1) for word in run.stdout.readline().split()[1:])
    return run, made


def _go(run):
    run.stdin.write("go\n")
    run.stdin.close()
    assert run.wait(timeout=60) == 0


def _named(name, image, image_id):
    return {"containerName": name, "containerImage": image, "containerImageId": image_id}


def test_a_call_on_another_containers_process_names_both_containers(image, tmp_path):
    """B shares A's pid namespace (--pid container:A) and compares itself with A's pid 1:
    the caller is B's, the targets B's and A's, each by name and image; then A's own calls
    name A."""
    a, b = (f"kcmp-test-{uuid.uuid4().hex[:8]}" for _ in range(2))
    js = Monitor(["--output", "json", "--comm", "ownfds"], tmp_path, "json")
    text = Monitor(["--comm", "ownfds"], tmp_path, "text")
    js.wait_started()
    text.wait_started()
    peer, _ = _container(image, "--name", a, "--cap-add", "SYS_PTRACE")
    try:
        caller, made = _container(image, "--name", b, "--pid", f"container:{a}",
                                  "--cap-add", "SYS_PTRACE", args=("/tmp", "1"))
        time.sleep(2)  # the runtime's thread reads the create events (see _run)
        _go(caller)
        for m in (js, text):
            m.wait_lines(CALLS + REPEAT)
    finally:
        _go(peer)
    for m in (js, text):
        m.wait_lines(2 * CALLS + REPEAT)
    assert js.stop() == 0 and text.stop() == 0
    image_id = docker("image", "inspect", "-f", "{{.Id}}", image).stdout.strip()
    records = [json.loads(line) for line in js.lines()]
    assert len(records) == 2 * CALLS + REPEAT
    by = {name: [r for r in records if r["containerName"] == name] for name in (a, b)}
    assert (len(by[b]), len(by[a])) == (CALLS + REPEAT, CALLS)
    assert all(r["containerImage"] == image for r in records)
    cross = [r for r in by[b] if r["kcmpType"] == "KCMP_VM"]
    assert len(cross) == REPEAT
    for r in cross:
        assert r["returnValue"] in (0, 1, 2) and r["processId"] == int(made["pid"])
        assert [t["pid"] for t in r["targets"]] == [int(made["pid"]), 1]
        assert [{k: t[k] for k in _named("", "", "")} for t in r["targets"]] == [
            _named(b, image, image_id), _named(a, image, image_id)]
    assert sum(f" ctr={b} " in line for line in text.lines()) == CALLS + REPEAT
    assert sum(f" ctr={a} " in line for line in text.lines()) == CALLS


def test_a_container_removed_before_its_events_are_read_is_still_named(image, tmp_path):
    """The monitors are stopped (SIGSTOP) while the container makes its calls, exits and is
    removed; when they go on, every record still names it: what was seen is remembered."""
    name = f"kcmp-test-{uuid.uuid4().hex[:8]}"
    js = Monitor(["--output", "json", "--comm", "ownfds"], tmp_path, "json")
    text = Monitor(["--comm", "ownfds"], tmp_path, "text")
    js.wait_started()
    text.wait_started()
    run, _made = _container(image, "--name", name, "--cap-add", "SYS_PTRACE")
    time.sleep(2)  # the runtime's thread reads the create event (see _run)
    with stopped((js, text), CALLS):
        _go(run)
        deadline = time.monotonic() + 30
        while docker("container", "inspect", name, check=False).returncode == 0:
            assert time.monotonic() < deadline, "docker run --rm did not remove it"
            time.sleep(0.1)
    assert js.stop() == 0 and text.stop() == 0
    records = [json.loads(line) for line in js.lines()]
    assert len(records) == CALLS
    assert all(r["containerName"] == name and r["containerImage"] == image for r in records)
    assert sum(f" ctr={name} " in line for line in text.lines()) == CALLS


def test_container_signatures_fire_once_each(image, tmp_path):
    """KCMP-001: B, in A's pid namespace, compares A's process (another container); KCMP-004:
    a container under Docker's default profile tries kcmp. Each once, naming the container."""
    a, b, c = (f"kcmp-test-{uuid.uuid4().hex[:8]}" for _ in range(3))
    js = Monitor(["--output", "json", "--comm", "ownfds"], tmp_path, "json", fold=True,
                 detect=True)
    js.wait_started()
    peer, _ = _container(image, "--name", a, "--cap-add", "SYS_PTRACE")
    try:
        caller, _ = _container(image, "--name", b, "--pid", f"container:{a}",
                               "--cap-add", "SYS_PTRACE", args=("/tmp", "1"))
        refused, _ = _container(image, "--name", c)
        time.sleep(2)  # the runtime's thread reads the create events (see _run)
        _go(caller)
        _go(refused)
        deadline = time.monotonic() + 30
        while len([line for line in js.lines() if '"kind":"finding"' in line]) < 2:
            assert time.monotonic() < deadline, js.lines()[-3:]
            time.sleep(0.1)
    finally:
        _go(peer)
    time.sleep(1.5)  # anything more would have come by now
    assert js.stop() == 0
    findings = [r for r in map(json.loads, js.lines()) if r.get("kind") == "finding"]
    assert sorted(f["signatureId"] for f in findings) == ["KCMP-001", "KCMP-004"]
    by = {f["signatureId"]: f["triggeredBy"][0] for f in findings}
    assert by["KCMP-001"]["containerName"] == b and by["KCMP-001"]["kcmpType"] == "KCMP_VM"
    assert by["KCMP-004"]["containerName"] == c and by["KCMP-004"]["refusedBySeccomp"] is True
