"""The monitor's image (deploy/Containerfile), built here on a Debian base made locally
(debootstrap, then `docker import`: no registry), run under a real containerd exactly as
deploy/kubernetes/daemonset.yaml describes it (that file's container spec, translated field by
field into `ctr run`: one source), its /metrics counting the host's kcmp calls exactly."""

import os
import re
import shutil
import subprocess
import time
import urllib.error
import uuid
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import ROOT, skip_or_fail

from .conftest import CTR_NAMESPACE, docker, http_get, kept_mask, thread_credentials

pytestmark = pytest.mark.kernel

DAEMONSET = ROOT / "deploy" / "kubernetes" / "daemonset.yaml"
CALLS = 20_000


def _run(*argv, **kw):
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw)


@pytest.fixture(scope="session")
def base_image(docker_engine, tmp_path_factory):
    """Debian bookworm, minbase, as debian:bookworm-slim would be, with this machine's local
    CA certificates (apt and pip in the build trust what the host trusts: a TLS-inspecting
    proxy)."""
    if not shutil.which("debootstrap"):
        skip_or_fail("needs debootstrap (run `sudo make test`, which installs it)")
    root = tmp_path_factory.mktemp("base") / "rootfs"
    subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(root),
                    "http://deb.debian.org/debian"], check=True, capture_output=True)
    anchors = Path("/usr/local/share/ca-certificates")
    if anchors.is_dir():
        shutil.copytree(anchors, root / anchors.relative_to("/"), dirs_exist_ok=True)
    name = f"{CTR_NAMESPACE}/base:{uuid.uuid4().hex[:12]}"
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    _run("docker", "import", "-", name, stdin=tar.stdout)
    assert tar.wait() == 0
    shutil.rmtree(root)
    yield name
    docker("rmi", "-f", name, check=False)


@pytest.fixture(scope="session")
def monitor_image(base_image, containerd):
    """deploy/Containerfile built on the base, then handed to containerd as Kubernetes would
    pull it."""
    name = f"{CTR_NAMESPACE}/kcmp-monitor:{uuid.uuid4().hex[:12]}"
    proxies = [arg for key in ("http_proxy", "https_proxy", "no_proxy") if key in os.environ
               for arg in ("--build-arg", f"{key}={os.environ[key]}")]
    _run("docker", "build", "-q", "-f", "deploy/Containerfile", "--build-arg",
         f"BASE={base_image}", *proxies, "-t", name, ".", cwd=ROOT)
    entrypoint = yaml.safe_load(docker("image", "inspect", "-f", "{{json .Config.Entrypoint}}",
                                       name).stdout)
    save = subprocess.Popen(["docker", "save", name], stdout=subprocess.PIPE)
    _run(*containerd, "images", "import", "-", stdin=save.stdout)
    assert save.wait() == 0
    (full,) = [ref for ref in _run(*containerd, "images", "ls", "-q").stdout.split()
               if ref.endswith(name)]
    yield Image(full, entrypoint, name)
    subprocess.run([*containerd, "images", "rm", full], capture_output=True)
    docker("rmi", "-f", name, check=False)


class Image(NamedTuple):
    ref: str  # containerd's name for it
    entrypoint: list[str]
    docker: str  # the engine's


def _capabilities() -> dict[str, int]:
    """Every capability the kernel headers name (without CAP_), with its number."""
    header = Path("/usr/include/linux/capability.h").read_text()
    return {name: int(number) for name, number in
            re.findall(r"^#define CAP_(\w+)\s+(\d+)\s*$", header, re.M)}


class Pod:
    """The DaemonSet's pod, run by ctr: every field of its spec either applied or refused
    (a field added to the manifest that this does not know fails the test instead of going
    untested). The pod's network is a namespace of its own with a veth to the host, as a CNI
    plugin would make it."""

    def __init__(self, containerd: list[str], image: str, entrypoint: list[str],
                 tmp: Path) -> None:
        self.ctr = containerd
        self.id = f"kcmp-{uuid.uuid4().hex[:8]}"
        self.log = tmp / "pod.log"
        self.spec = yaml.safe_load(DAEMONSET.read_text())["spec"]["template"]["spec"]
        self._network()
        options, self.command = self._translate(self.spec, entrypoint)
        self.options = [f"--with-ns=network:/run/netns/{self.id}", *options, image, self.id]

    def _network(self) -> None:
        host_if, pod_if = f"h{self.id[5:]}", f"p{self.id[5:]}"
        self.host_if = host_if
        octet = int(self.id[5:7], 16)
        self.address = f"10.254.{octet}.2"
        _run("ip", "netns", "add", self.id)
        _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", pod_if,
             "netns", self.id)
        _run("ip", "addr", "add", f"10.254.{octet}.1/30", "dev", host_if)
        _run("ip", "link", "set", host_if, "up")
        _run("ip", "-n", self.id, "addr", "add", f"{self.address}/30", "dev", pod_if)
        _run("ip", "-n", self.id, "link", "set", pod_if, "up")
        _run("ip", "-n", self.id, "link", "set", "lo", "up")

    def _translate(self, pod: dict, entrypoint: list[str]) -> tuple[list[str], list[str]]:
        """ctr run's options for the spec, and the command."""
        argv: list[str] = []
        known = {"hostPID", "automountServiceAccountToken", "enableServiceLinks",
                 "terminationGracePeriodSeconds", "tolerations", "containers", "volumes"}
        assert set(pod) <= known, f"pod fields the test does not run: {set(pod) - known}"
        if pod.get("hostPID"):
            # The test's own pid namespace is the host's (checked by the caller).
            argv.append("--with-ns=pid:/proc/self/ns/pid")
        # No API server here: no token or service variables to leave out; tolerations and
        # the grace period are the scheduler's and the kubelet's.
        volumes = {v["name"]: v["hostPath"] for v in pod["volumes"]}
        (c,) = pod["containers"]
        known = {"name", "image", "imagePullPolicy", "args", "ports", "securityContext",
                 "volumeMounts", "startupProbe", "readinessProbe", "livenessProbe",
                 "resources"}
        assert set(c) <= known, f"container fields the test does not run: {set(c) - known}"
        assert c["image"].split(":")[0] == "kcmp-monitor"  # built here under another tag
        sc = c["securityContext"]
        known = {"runAsUser", "readOnlyRootFilesystem", "allowPrivilegeEscalation",
                 "seccompProfile", "capabilities"}
        assert set(sc) <= known, f"securityContext fields not run: {set(sc) - known}"
        assert sc["runAsUser"] == 0  # the image's user, as ctr runs it
        # ctr's spec sets no_new_privs already; read back from the daemon below.
        assert sc["allowPrivilegeEscalation"] is False
        if sc.get("readOnlyRootFilesystem"):
            argv.append("--read-only")
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        argv.append("--seccomp")  # containerd's default profile, the CRI's RuntimeDefault
        added = sc["capabilities"]["add"]
        assert sc["capabilities"]["drop"] == ["ALL"]
        # ctr knows no "ALL": each capability the kernel has, but those added.
        argv += [f"--cap-drop=CAP_{name}" for name in _capabilities() if name not in added]
        argv += [f"--cap-add=CAP_{name}" for name in added]
        for mount in c["volumeMounts"]:
            assert set(mount) == {"name", "mountPath", "readOnly"}
            host = volumes[mount["name"]]
            assert host["type"] == "Directory" and os.path.isdir(host["path"])
            options = "rbind:ro" if mount["readOnly"] else "rbind"
            argv.append(f"--mount=type=bind,src={host['path']},dst={mount['mountPath']},"
                        f"options={options}")
        limits = c["resources"]["limits"]
        assert set(limits) == {"cpu", "memory"} and limits["memory"].endswith("Mi")
        argv += [f"--cpus={float(limits['cpu'])}",
                 f"--memory-limit={int(limits['memory'][:-2]) << 20}"]
        (port,) = c["ports"]
        self.port = port["containerPort"]
        self.probes = {name: c[name] for name in ("startupProbe", "readinessProbe",
                                                  "livenessProbe")}
        # Kubernetes' args replace the image's CMD and keep its ENTRYPOINT.
        return argv, [*entrypoint, *c["args"]]

    def probe(self, name: str) -> str:
        get = self.probes[name]["httpGet"]
        assert get["port"] == "metrics"
        return http_get(f"http://{self.address}:{self.port}{get['path']}")

    def run(self, *command: str) -> str:
        """Another command in the same container spec, in the foreground: what it printed."""
        return _run(*self.ctr, "run", "--rm", *self.options, *command).stdout

    def start(self) -> None:
        _run(*self.ctr, "run", "-d", f"--log-uri=file://{self.log}", *self.options,
             *self.command)
        startup = self.probes["startupProbe"]
        deadline = time.monotonic() + startup["periodSeconds"] * startup["failureThreshold"]
        while True:
            try:
                self.probe("startupProbe")
                return
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail(f"the pod never became ready: {self.logs()}")
                time.sleep(0.5)

    def pid(self) -> int:
        for line in _run(*self.ctr, "task", "ls").stdout.splitlines()[1:]:
            task, pid, _status = line.split()
            if task == self.id:
                return int(pid)
        raise AssertionError("no task")

    def logs(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def stop(self) -> str:
        """SIGTERM, as the kubelet sends it; the task's exit status once it is out."""
        _run(*self.ctr, "task", "kill", "-s", "SIGTERM", self.id)
        deadline = time.monotonic() + self.spec["terminationGracePeriodSeconds"]
        while time.monotonic() < deadline:
            for line in _run(*self.ctr, "task", "ls").stdout.splitlines()[1:]:
                task, _pid, status = line.split()
                if task == self.id and status == "STOPPED":
                    return status
            time.sleep(0.2)
        raise AssertionError("still running after the grace period")

    def remove(self) -> None:
        subprocess.run([*self.ctr, "task", "kill", "-s", "SIGKILL", self.id],
                       capture_output=True)
        subprocess.run([*self.ctr, "task", "rm", "-f", self.id], capture_output=True)
        subprocess.run([*self.ctr, "containers", "rm", self.id], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.id], capture_output=True)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)


def _counts(metrics: str) -> dict[tuple, float]:
    """kcmp_calls_total and kcmp_namespaced_calls_total, by their labels."""
    found = {}
    for family in text_string_to_metric_families(metrics):
        for s in family.samples:
            if s.name in ("kcmp_calls_total", "kcmp_namespaced_calls_total"):
                found[(s.name, *sorted(s.labels.items()))] = s.value
    return found


@pytest.fixture
def pod(containerd, monitor_image, tmp_path):
    if os.stat("/proc/self/ns/pid").st_ino != os.stat("/proc/2/ns/pid").st_ino:
        skip_or_fail("hostPID needs the tests to run in the host's pid namespace")
    pod = Pod(containerd, monitor_image.ref, monitor_image.entrypoint, tmp_path)
    try:
        pod.start()
        yield pod
    finally:
        pod.remove()


def test_the_daemonset_pod_counts_the_hosts_calls_exactly(pod, loop):
    """As the DaemonSet runs it: the host's calls counted exactly and not as namespaced (the
    pod's own mount and network namespaces are not the measure: --namespaces-of=host), a
    process in namespaces of its own counted as such; nobody in every thread, with only what
    map reads need on this kernel (none from 5.19)."""
    status = thread_credentials(pod.pid())
    assert (status["Uid"].split()[0], int(status["CapEff"], 16), int(status["CapBnd"], 16),
            status["NoNewPrivs"]) == ("65534", kept_mask(), kept_mask(), "1")
    before = _counts(pod.probe("readinessProbe"))
    subprocess.run([str(loop), "kcmp", str(CALLS)], check=True, capture_output=True)
    subprocess.run(["unshare", "--mount", "--net", str(loop), "kcmp", str(CALLS // 4)],
                   check=True, capture_output=True)
    after = _counts(pod.probe("livenessProbe"))
    delta = {key: after[key] - before.get(key, 0) for key in after
             if after[key] != before.get(key, 0)}
    vm = ("kcmp_type", "KCMP_VM")
    same = ("outcome", "same")
    assert delta == {
        ("kcmp_calls_total", vm, same): CALLS + CALLS // 4,
        ("kcmp_namespaced_calls_total", vm, ("namespace", "mnt"), same): CALLS // 4,
        ("kcmp_namespaced_calls_total", vm, ("namespace", "net"), same): CALLS // 4}
    assert 'msg="exporting kcmp metrics" address=:9041' in pod.logs()
    assert pod.stop() == "STOPPED"


def test_the_pod_starts_with_exactly_the_capabilities_the_daemonset_adds(
        containerd, monitor_image, tmp_path):
    """The translation is what it claims: the bounding set at start is the DaemonSet's list,
    under containerd's seccomp filter, with no_new_privs."""
    pod = Pod(containerd, monitor_image.ref, monitor_image.entrypoint, tmp_path)
    try:
        out = pod.run("/bin/grep", "-E", "^(CapBnd|NoNewPrivs|Seccomp):", "/proc/self/status")
    finally:
        pod.remove()
    (container,) = pod.spec["containers"]
    numbers = _capabilities()
    want = sum(1 << numbers[name] for name in container["securityContext"]["capabilities"][
        "add"])
    fields = dict(line.split(":\t") for line in out.splitlines())
    assert int(fields["CapBnd"], 16) == want
    assert fields["NoNewPrivs"] == "1" and fields["Seccomp"] == "2"


def _readme_docker_run() -> list[str]:
    """The README's `docker run` of the image (As a container), as words."""
    import shlex

    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index("### As a container"):readme.index("### On Kubernetes")]
    command = re.search(r"^docker run .*?(?<!\\)$", block, re.M | re.S).group(0)
    return shlex.split(command.replace("\\\n", " "))


def test_the_readmes_docker_run_is_the_daemonsets_spec():
    """Its capabilities, mounts and arguments are the DaemonSet's: the two do not drift."""
    words = _readme_docker_run()
    (c,) = yaml.safe_load(DAEMONSET.read_text())["spec"]["template"]["spec"]["containers"]
    pairs = list(zip(words, words[1:]))
    assert {v for k, v in pairs if k == "--cap-add"} == set(c["securityContext"][
        "capabilities"]["add"])
    assert ("--cap-drop", "ALL") in pairs and ("--pid", "host") in pairs
    assert "--read-only" in words and ("--security-opt", "no-new-privileges") in pairs
    volumes = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert {v for k, v in pairs if k == "-v"} == {f"{p}:{p}:ro" for p in volumes.values()}
    image = next(w for w in words if w.startswith("kcmp-monitor:"))
    assert [a for arg in c["args"] for a in arg.split("=", 1)] == words[words.index(image) + 1:]


def test_the_readmes_docker_run_counts_the_hosts_calls(monitor_image, loop, tmp_path):
    """Run as the README says under this Docker Engine; before 23.0 it knows no CAP_BPF or
    CAP_PERFMON, and the README says to give CAP_SYS_ADMIN in their place."""
    words = _readme_docker_run()
    name = f"kcmp-{uuid.uuid4().hex[:8]}"
    words[words.index("--name") + 1] = name
    image = next(i for i, w in enumerate(words) if w.startswith("kcmp-monitor:"))
    words[image] = monitor_image.docker
    engine = docker("version", "-f", "{{.Server.Version}}").stdout.strip()
    if int(engine.split(".")[0]) < 23:
        at = words.index("BPF")
        words[at] = "SYS_ADMIN"
        del words[words.index("PERFMON") - 1:words.index("PERFMON") + 1]
    port = words[words.index("-p") + 1]
    words[words.index("-p") + 1] = "127.0.0.1::9041"  # any free port of the host
    assert port == "127.0.0.1:9041:9041"
    _run(*words)
    try:
        host_port = docker("port", name, "9041/tcp").stdout.split(":")[-1].strip()
        url = f"http://127.0.0.1:{host_port}/metrics"
        deadline = time.monotonic() + 60
        while True:
            try:
                before = _counts(http_get(url))
                break
            except (urllib.error.URLError, OSError):
                assert time.monotonic() < deadline, docker("logs", name).stderr
                time.sleep(0.5)
        subprocess.run([str(loop), "kcmp", str(CALLS)], check=True, capture_output=True)
        after = _counts(http_get(url))
        key = ("kcmp_calls_total", ("kcmp_type", "KCMP_VM"), ("outcome", "same"))
        assert after[key] - before.get(key, 0) == CALLS
        assert all(v == before.get(k, 0) for k, v in after.items()
                   if k[0] == "kcmp_namespaced_calls_total")
        assert "running as nobody" in docker("logs", name).stderr
    finally:
        docker("rm", "-f", name, check=False)
