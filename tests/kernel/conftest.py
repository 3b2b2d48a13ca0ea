"""Fixtures for tests that load the real BPF program and make real kcmp calls."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

from kcmp_monitor import caps
from kcmp_monitor.kernel import kcmp as loader, probes
from kcmp_monitor.errors import MonitorError
from tests.helpers import ROOT, in_guest, monitor_command, patience, skip_or_fail

HERE = Path(__file__).resolve().parent
PROMETHEUS = ROOT / ".tools" / "prometheus" / "usr" / "bin"
HOSTILE_FILE = "evil\x1b[31mred"
REPEAT = 23  # calls per case, as kcmpload.c makes them
CTR_NAMESPACE = "kcmp-monitor-test"  # containerd's, for what the tests make there
CTR_SOCKETS = ("/run/containerd/containerd.sock", "/var/run/docker/containerd/containerd.sock")


@pytest.fixture(scope="session")
def kernel_ready():
    """Skip (fail in CI) unless this process can load and attach the real program."""
    if os.geteuid() != 0:
        skip_or_fail("needs root to load BPF programs (run `sudo make test`)")
    try:
        caps.check_privileges()
        probes.check_kernel()
        loader._import_bcc()
    except MonitorError as exc:
        skip_or_fail(str(exc))
    if not shutil.which("gcc"):
        skip_or_fail("needs gcc to build the kcmpload workload (run `sudo make setup`)")


def _build(tmp_path_factory, name: str, *flags: str) -> Path:
    """A test workload, tests/kernel/NAME.c, built into a folder of its own."""
    exe = tmp_path_factory.mktemp("bin") / name
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", *flags, "-o", str(exe),
                    str(HERE / f"{name}.c")], check=True)
    return exe


@pytest.fixture(scope="session")
def kcmpload(kernel_ready, tmp_path_factory) -> Path:
    return _build(tmp_path_factory, "kcmpload", "-pthread")


@pytest.fixture(scope="session")
def loop(kernel_ready, tmp_path_factory) -> Path:
    """The benchmark's workload: N identical calls in a tight loop, named kcmpbench."""
    exe = tmp_path_factory.mktemp("bin") / "loop"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(exe), str(ROOT / "bench" / "loop.c")],
                   check=True)
    return exe


@pytest.fixture(scope="session")
def peerfds(kernel_ready, tmp_path_factory) -> Path:
    """Calls naming another task's fd that it lets go of right after (tests/kernel/peerfds.c)."""
    return _build(tmp_path_factory, "peerfds", "-pthread")


@pytest.fixture(scope="session")
def ownfds(kernel_ready, tmp_path_factory) -> Path:
    """The short-lived caller comparing its own fds, linked static to run in an image too."""
    return _build(tmp_path_factory, "ownfds", "-static")


def docker(*args, check=True, **kw):
    """The Docker CLI, its output as text."""
    return subprocess.run(["docker", *args], check=check, capture_output=True, text=True, **kw)


@pytest.fixture(scope="session")
def docker_engine(kernel_ready, tmp_path_factory):
    """The engine's CLI answering; dockerd started (and stopped after) where it was not."""
    if not shutil.which("docker") or not shutil.which("dockerd"):
        skip_or_fail("needs Docker (Debian's docker.io; run `sudo make setup`)")
    if docker("info", check=False).returncode == 0:
        yield
        return
    log = tmp_path_factory.mktemp("dockerd") / "dockerd.log"
    with open(log, "w") as out:
        daemon = subprocess.Popen(["dockerd"], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while docker("info", check=False).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                skip_or_fail(f"dockerd did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)


@contextmanager
def imported_image(tmp_path_factory, exe: Path):
    """An image of a static executable alone, at /NAME (no registry is needed: `docker
    import` of a rootfs); removed after."""
    root = tmp_path_factory.mktemp("rootfs")
    (root / "tmp").mkdir()
    shutil.copy(exe, root / exe.name)
    name = f"kcmp-monitor-test/{exe.name}:{uuid.uuid4().hex[:12]}"
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(["docker", "import", "-", name], stdin=tar.stdout, check=True,
                   capture_output=True)
    assert tar.wait() == 0
    try:
        yield name
    finally:
        docker("rmi", "-f", name, check=False)


@pytest.fixture(scope="session")
def ownfds_image(docker_engine, ownfds, tmp_path_factory):
    """An image of ownfds alone."""
    with imported_image(tmp_path_factory, ownfds) as name:
        yield name


@pytest.fixture(scope="session")
def containerd(docker_engine):
    """ctr's arguments for the containerd behind the engine (its own, or the host's)."""
    if not shutil.which("ctr"):
        skip_or_fail("needs containerd's ctr (it comes with docker.io; run `sudo make setup`)")
    for sock in CTR_SOCKETS:
        if os.path.exists(sock) and subprocess.run(
                ["ctr", "-a", sock, "version"], capture_output=True).returncode == 0:
            yield ["ctr", "-a", sock, "-n", CTR_NAMESPACE]
            # Refused until containerd's collector has freed the removed image's blobs.
            deadline = time.monotonic() + 30
            while subprocess.run(["ctr", "-a", sock, "namespaces", "rm", CTR_NAMESPACE],
                                 capture_output=True).returncode and \
                    time.monotonic() < deadline:
                time.sleep(0.5)
            return
    skip_or_fail(f"no containerd answers on {' or '.join(CTR_SOCKETS)}")


@dataclass
class Case:
    name: str
    caller: int
    tid: int
    uid: int
    compat: bool
    pid1: int
    pid2: int
    type: int
    idx1: int
    idx2: int
    ret: int


def _fields(line: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in line.split()[1:])


@dataclass
class Workload:
    """A running kcmpload: started paused, so monitors can attach before it calls kcmp."""

    proc: subprocess.Popen
    dir: Path
    pid: int
    cases: list[Case] = field(default_factory=list)
    fds: dict[str, int] = field(default_factory=dict)

    @classmethod
    def start(cls, exe: Path, workdir: Path, name: Optional[bytes] = None,
              strace_out: Optional[Path] = None, prefix: tuple = ()) -> "Workload":
        workdir.mkdir(parents=True, exist_ok=True)
        for f in ("a", "child", HOSTILE_FILE):
            (workdir / f).write_text("x")
        argv = [str(exe), str(workdir)] + ([name] if name is not None else [])
        if strace_out is not None:
            argv = ["strace", "-f", "-y", "-e", "trace=kcmp", "-o", str(strace_out)] + argv
        proc = subprocess.Popen(list(prefix) + argv, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE)
        first = proc.stdout.readline().decode()
        assert first.startswith("pid "), first
        return cls(proc=proc, dir=workdir, pid=int(first.split()[1]))

    def go(self) -> None:
        """Make every call; returns when all cases are done and the processes still live."""
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()
        for raw in self.proc.stdout:
            line = raw.decode()
            if line.startswith("ready"):
                return
            if line.startswith("fds "):
                self.fds = {k: int(v) for k, v in _fields(line).items()}
            elif line.startswith("case "):
                f = _fields(line)
                self.cases.append(Case(
                    name=f["name"], caller=int(f["caller"]), tid=int(f["tid"]),
                    uid=int(f["uid"]),
                    compat=f["compat"] == "1", pid1=int(f["pid1"]), pid2=int(f["pid2"]),
                    type=int(f["type"]), idx1=int(f["idx1"]), idx2=int(f["idx2"]),
                    ret=int(f["ret"])))
        raise AssertionError("kcmpload ended before it was ready")

    def finish(self) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(timeout=patience(30)) == 0


class Monitor:
    """`kcmp-monitor --trace ...` as a user runs it, its output in files."""

    def __init__(self, args: list[str], workdir: Path, name: str, fold: bool = False,
                 detect: bool = False) -> None:
        """fold: as a user gets it, a thread's identical calls folded; else every call its
        record (--no-fold), which the tests of each call's decoding count. detect: the
        signatures run, as a user gets them, their findings among the lines; else not
        (--no-detect)."""
        self.out_path = workdir / f"{name}.out"
        self.err_path = workdir / f"{name}.err"
        self.json = "json" in args
        self.proc = subprocess.Popen(
            [monitor_command(), "--trace"] + ([] if fold else ["--no-fold"])
            + ([] if detect else ["--no-detect"]) + args,
            stdout=self.out_path.open("wb"), stderr=self.err_path.open("wb"))
        self.returncode: Optional[int] = None

    def _started(self) -> bool:
        text = (self.err_path if self.json else self.out_path).read_bytes()
        return b"Tracing kcmp()" in text

    def wait_started(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + patience(timeout)
        while not self._started():
            if self.proc.poll() is not None:
                raise AssertionError(f"monitor exited {self.proc.returncode}: {self.stderr()}")
            assert time.monotonic() < deadline, "monitor did not start"
            time.sleep(0.05)

    def lines(self) -> list[str]:
        """The lines written whole so far: one still being written is not read."""
        data = self.out_path.read_bytes()
        text = data[:data.rfind(b"\n") + 1].decode("utf-8")
        return text.splitlines()[0 if self.json else 1:]

    def wait_lines(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + patience(timeout)
        while len(self.lines()) < count and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGINT) -> int:
        self.proc.send_signal(sig)
        self.returncode = self.proc.wait(timeout=patience(10))
        return self.returncode

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")


@contextmanager
def stopped(monitors, events: int):
    """The monitors stopped (SIGSTOP) while the block runs, so that what it makes is gone from
    /proc when they read its events; then resumed, and waited for until each has `events`."""
    for m in monitors:
        m.proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for m in monitors:
            m.proc.send_signal(signal.SIGCONT)
    for m in monitors:
        m.wait_lines(events)


def strace_calls(path: Path) -> list[str]:
    """strace's kcmp lines, from `kcmp(` to the return value, alignment padding removed."""
    calls = []
    for line in path.read_text(errors="surrogateescape").splitlines():
        pid, rest = line.split(None, 1)
        if not rest.startswith("kcmp("):
            continue
        calls.append(re.sub(r"\)\s+= ", ") = ", rest))
    return calls


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=patience(timeout)) as response:
        return response.read().decode()


class Daemon:
    """`kcmp-monitor` (the exporter) as a user starts it, on a port of its own."""

    def __init__(self, tmp: Path, *args: str, stdout=subprocess.DEVNULL) -> None:
        self.port = free_port()
        self.err_path = tmp / f"daemon-{self.port}.err"
        self.proc = subprocess.Popen(
            [monitor_command(), "--web.listen-address", f"127.0.0.1:{self.port}", *args],
            stdout=stdout, stderr=self.err_path.open("wb"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + patience(timeout)
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}: {self.stderr()}")
            try:
                self.metrics()
                return
            except OSError:
                assert time.monotonic() < deadline, "the daemon never served /metrics"
                time.sleep(0.1)

    def metrics(self) -> str:
        return http_get(self.url)

    def stop(self, sig=signal.SIGTERM) -> tuple:
        start = time.monotonic()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=patience(10))
        return code, time.monotonic() - start

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")


CREDENTIALS = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
               "NoNewPrivs")


def kept_mask(trace: bool = False) -> int:
    """The capability mask the monitor keeps after attach on this kernel."""
    return sum(1 << cap for cap in caps.needed_after_attach(trace))


def thread_credentials(pid: int) -> dict[str, str]:
    """What every thread of pid holds (capabilities and no_new_privs belong to each thread);
    an AssertionError naming the threads that differ."""
    held: dict[tuple, list[str]] = {}
    for task in sorted(Path(f"/proc/{pid}/task").iterdir()):
        fields = dict(line.split(":\t", 1) for line in (task / "status").read_text().splitlines()
                      if ":\t" in line)
        held.setdefault(tuple(fields[name].strip() for name in CREDENTIALS), []).append(
            f"{task.name} ({fields['Name'].strip()})")
    assert len(held) == 1, f"threads hold different credentials: {held}"
    return dict(zip(CREDENTIALS, next(iter(held))))


SCRAPE = "5s" if in_guest() else "1s"


class Prometheus:
    """A real Prometheus on loopback scraping the given ports every SCRAPE (job "kcmp")."""

    def __init__(self, binary: Path, tmp: Path, ports, rule_files=(), jobs=None) -> None:
        """jobs: scrape configs of its own (job name: the rest of its scrape config)."""
        self.port = free_port()
        config = tmp / f"prometheus-{self.port}.yml"
        scrapes = [{"job_name": "kcmp", "static_configs": [
            {"targets": [f"127.0.0.1:{p}" for p in ports]}]}] if jobs is None else [
            {"job_name": name, **job} for name, job in jobs.items()]
        config.write_text(json.dumps({
            # Under emulation a scrape may take longer than a second, and a failed one makes
            # every series read as gone: the guests scrape every 5 s (the timeout the same).
            "global": {"scrape_interval": SCRAPE, "evaluation_interval": SCRAPE},
            "rule_files": [str(f) for f in rule_files],
            "scrape_configs": scrapes,
        }))
        self.proc = subprocess.Popen(
            [str(binary / "prometheus"), f"--config.file={config}",
             f"--storage.tsdb.path={tmp / f'tsdb-{self.port}'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=(tmp / f"prometheus-{self.port}.log").open("wb"))

    def api(self, path: str):
        body = json.loads(http_get(f"http://127.0.0.1:{self.port}/api/v1/{path}"))
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str, at: float | None = None):
        """At `at` (a Unix time), or now."""
        when = "" if at is None else f"&time={at}"
        return self.api("query?query=" + urllib.parse.quote(promql) + when)["result"]

    def wait_for(self, promql: str, at_least: float, timeout: float = 60) -> float:
        """Until the single value of promql reaches at_least (Prometheus has scraped it); the
        time it did, to query the same scrape at: a later one may fail (a scrape slower than
        its interval, as under emulation), and its series then read as gone."""
        deadline = time.monotonic() + patience(timeout)
        while True:
            try:
                got = self.query(promql)
            except OSError:
                got = []
            if got and float(got[0]["value"][1]) >= at_least:
                return float(got[0]["value"][0])
            assert time.monotonic() < deadline, f"Prometheus never saw {promql} >= {at_least}"
            time.sleep(0.5)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="session")
def prometheus_bin():
    if not (PROMETHEUS / "prometheus").exists():
        skip_or_fail("needs Prometheus in .tools (run `sudo make setup`)")
    return PROMETHEUS
