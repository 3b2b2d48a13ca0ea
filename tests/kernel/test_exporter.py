"""The exporter on the real kernel: exact counts through a real Prometheus, a flood of a
million calls, the permission-failure log, and the daemon's lifecycle."""

import errno
import json
import os
import pwd
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from kcmp_monitor import caps
from kcmp_monitor.kernel import features
from tests.helpers import ROOT, monitor_command, patience, skip_or_fail, trampolines

from .conftest import (REPEAT, Daemon, Prometheus, Workload, free_port, http_get,
                       kept_mask, thread_credentials)
from .test_capture import EXPECTED, int32

pytestmark = pytest.mark.kernel

FENTRY = trampolines()  # where the kernel has them, the default exporter's hooks
SLOT_NAMES = ("KCMP_FILE", "KCMP_VM", "KCMP_FILES", "KCMP_FS", "KCMP_SIGHAND", "KCMP_IO",
              "KCMP_SYSVSEM", "KCMP_EPOLL_TFD", "unknown", "unseen")


def sample(text: str, name: str, missing: float | None = None, **labels) -> float:
    """The value of one series in an exposition; missing: what a series not there yet
    stands for (else it is an error)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    line = f"{name}{{{want}}} " if labels else f"{name} "
    for row in text.splitlines():
        if row.startswith(line):
            return float(row.split()[-1])
    if missing is not None:
        return missing
    raise AssertionError(f"no series {line!r}")


def slot_of(case) -> str:
    t = int32(case.type)
    return SLOT_NAMES[t] if 0 <= t < 8 else "unknown"


def outcome_of(ret: int) -> str:
    return "same" if ret == 0 else "different" if ret > 0 else "error"


def expected_counts(cases):
    """What the exporter must say after the workload, derived from what the calls returned."""
    kcmp = [c for c in cases if c.name in EXPECTED]
    calls = Counter({(s, o): 0 for s in SLOT_NAMES for o in ("same", "different", "error")})
    errors, denied, durations = Counter(), Counter(), Counter()
    for c in kcmp:
        calls[slot_of(c), outcome_of(c.ret)] += REPEAT
        if c.ret < 0:
            errors[slot_of(c), errno.errorcode[-c.ret]] += REPEAT
        if c.ret == -errno.EPERM:
            denied[slot_of(c), str(c.uid)] += REPEAT
        # no entry, no duration: refused calls, and 32-bit ones on the tracepoints
        if not c.name.startswith("seccomp") and (FENTRY or not c.compat):
            durations[slot_of(c)] += REPEAT
    return calls, errors, denied, durations


@pytest.fixture(scope="module")
def scraped(kcmpload, prometheus_bin, tmp_path_factory):
    """The daemon scraped every second by a real Prometheus while kcmpload runs."""
    tmp = tmp_path_factory.mktemp("exporter")
    daemon = Daemon(tmp, "--eperm-log-rate", "20")  # a burst of 100: the workload's 69 EPERMs
    daemon.wait_ready()
    prom = Prometheus(prometheus_bin, tmp, [daemon.port])
    query = prom.query

    try:
        wl = Workload.start(kcmpload, tmp / "files")
        wl.go()
        metrics = daemon.metrics()
        at = prom.wait_for("sum(kcmp_calls_total)", REPEAT * len(EXPECTED))
        results = {name: query(name, at) for name in (
            "kcmp_calls_total", "kcmp_errors_total", "kcmp_permission_denied_total",
            "kcmp_call_duration_seconds_count", "kcmp_compat_calls_total",
            'kcmp_caller_calls_total{comm="kcmpload"}',
            'kcmp_caller_permission_denied_total{comm="kcmpload"}',
            "kcmp_events_dropped_total", "kcmp_monitor_program_attached",
            "kcmp_seccomp_refused_total",
            "kcmp_monitor_build_info", "up")}
        wl.finish()
        status = thread_credentials(daemon.proc.pid)
        getppid = _runs_during_getppid(daemon)
    finally:
        prom.stop()
    code, seconds = daemon.stop()
    return dict(wl=wl, results=results, metrics=metrics, status=status, code=code,
                seconds=seconds, stderr=daemon.stderr(), getppid=getppid)


GETPPID_CALLS = 1_000_000
# Started, then told to go: its fork and start are behind the first count.
GETPPID = (f"import os, sys\nprint('ready', flush=True)\nsys.stdin.readline()\n"
           f"for _ in range({GETPPID_CALLS}): os.getppid()\nprint('done', flush=True)\n"
           "sys.stdin.readline()\n")


def _bpf_runs(metrics: str) -> dict[str, float]:
    return {m[1]: float(m[2]) for m in re.finditer(
        r'^kcmp_monitor_bpf_runs_total\{program="([^"]+)"\} (\S+)$', metrics, re.M)}


def _runs_during_getppid(daemon) -> dict[str, float]:
    """How often the kernel ran each of the exporter's programs (kernel.bpf_stats_enabled)
    while a process made a million getppid calls."""
    child = subprocess.Popen([sys.executable, "-c", GETPPID], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    sysctl = Path("/proc/sys/kernel/bpf_stats_enabled")
    before_value = sysctl.read_text()
    try:
        assert child.stdout.readline() == "ready\n"
        sysctl.write_text("1")
        before = _bpf_runs(daemon.metrics())
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "done\n"
        after = _bpf_runs(daemon.metrics())
    finally:
        sysctl.write_text(before_value)
        child.communicate("end\n", timeout=60)
    return {program: runs - before.get(program, 0) for program, runs in after.items()}


def _by(results, *labels):
    return {tuple(r["metric"][label] for label in labels): float(r["value"][1])
            for r in results}


@pytest.mark.guest
def test_prometheus_sees_exact_counts_by_type_and_outcome(scraped):
    calls, _, _, _ = expected_counts(scraped["wl"].cases)
    assert _by(scraped["results"]["kcmp_calls_total"], "kcmp_type", "outcome") == calls


@pytest.mark.guest
def test_prometheus_sees_exact_errors_and_permission_failures(scraped):
    _, errors, denied, _ = expected_counts(scraped["wl"].cases)
    assert _by(scraped["results"]["kcmp_errors_total"], "kcmp_type", "errno") == errors
    assert _by(scraped["results"]["kcmp_permission_denied_total"], "kcmp_type", "uid") == \
        denied
    # the seccomp refusal under its type, which the saved registers give
    assert denied == {("KCMP_VM", "65534"): REPEAT, ("KCMP_VM", "0"): REPEAT,
                      ("KCMP_FILE", "0"): REPEAT}
    refused = _by(scraped["results"]["kcmp_seccomp_refused_total"], "kcmp_type")
    assert refused == {(name,): REPEAT if name in ("KCMP_VM", "KCMP_FILE") else 0
                       for name in SLOT_NAMES}


@pytest.mark.guest
def test_prometheus_sees_durations_compat_and_callers(scraped):
    _, _, _, durations = expected_counts(scraped["wl"].cases)
    results = scraped["results"]
    got = _by(results["kcmp_call_duration_seconds_count"], "kcmp_type")
    assert {k[0]: v for k, v in got.items() if v} == durations
    assert len(got) == 9  # every type but "unseen", zero or not
    assert float(results["kcmp_compat_calls_total"][0]["value"][1]) == 2 * REPEAT
    callers = results['kcmp_caller_calls_total{comm="kcmpload"}']
    assert float(callers[0]["value"][1]) == REPEAT * len(EXPECTED)
    refused = results['kcmp_caller_permission_denied_total{comm="kcmpload"}']
    assert float(refused[0]["value"][1]) == 3 * REPEAT
    assert _by(results["kcmp_events_dropped_total"], "lane") == {("bulk",): 0, ("priority",): 0}


@pytest.mark.guest
def test_no_program_runs_for_a_million_getppid_calls_where_trampolines_are(scraped):
    """The kernel's own run counts: on trampolines no program of the default exporter runs
    for another syscall; on the tracepoints the 32-bit hook runs for each (the control). The
    process table's hooks run for the machine's forks alone, whichever the hooks."""
    runs = scraped["getppid"]
    assert runs, "kcmp_monitor_bpf_runs_total was not exported"
    per_call = {program for program, n in runs.items() if n >= GETPPID_CALLS}
    assert per_call == (set() if FENTRY else {"raw_tracepoint__sys_exit"})
    syscall_hooks = {h.program for h in features.HOOKS if h.feature not in ("proc_table", "fold")}
    assert {p: n for p, n in runs.items() if p in syscall_hooks and p not in per_call} == {
        p: 0 for p in runs if p in syscall_hooks and p not in per_call}
    assert all(n < 1000 for p, n in runs.items() if p not in per_call), runs


@pytest.mark.guest
def test_self_metrics(scraped):
    results = scraped["results"]
    hooks = ({"fentry:__x64_sys_kcmp", "fexit:__x64_sys_kcmp", "fentry:__ia32_sys_kcmp",
              "fexit:__ia32_sys_kcmp", "fexit:__secure_computing"} if FENTRY else
             {"syscalls:sys_enter_kcmp", "syscalls:sys_exit_kcmp", "raw_syscalls:sys_exit"})
    assert _by(results["kcmp_monitor_program_attached"], "tracepoint") == {
        (hook,): 1 for hook in hooks | {
            "task:task_newtask", "task:task_rename",  # the EPERM log's process table
            "raw:task_newtask"}}  # and its table of pid numbers
    info = results["kcmp_monitor_build_info"][0]["metric"]
    assert info["kernel"] == os.uname().release and info["bcc_version"] and info["version"]
    assert float(results["up"][0]["value"][1]) == 1
    assert "process_resident_memory_bytes" in scraped["metrics"]


def test_exposition_passes_promtool(scraped, prometheus_bin):
    result = subprocess.run([str(prometheus_bin / "promtool"), "check", "metrics"],
                            input=scraped["metrics"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.guest
def test_every_permission_failure_is_logged_as_one_structured_line(scraped):
    """Each with the caller as the kernel saw it (the daemon holds no capability to read
    /proc for it), the seccomp refusals apart and with their arguments."""
    lines = [line for line in scraped["stderr"].splitlines()
             if 'msg="kcmp permission denied"' in line or 'msg="kcmp refused by seccomp"' in line]
    assert len(lines) == 3 * REPEAT  # within the first burst: none suppressed
    cases = {c.name: c for c in scraped["wl"].cases}
    eperm, refused = cases["eperm"], cases["seccomp"]
    init = Path("/proc/1/comm").read_text().strip()
    ns = " ".join(f"{kind}={os.stat(f'/proc/self/ns/{name}').st_ino}"
                  for kind, name in (("pidns", "pid"), ("mntns", "mnt"), ("netns", "net")))
    assert Counter(re.sub(r"caller_tid=\d+ ", "", line) for line in lines) == {
        f'kcmp-monitor: warning: msg="kcmp permission denied" kcmp_type=KCMP_VM '
        f"caller_pid={eperm.caller} comm=kcmpload uid=65534 euid=65534 cap_sys_ptrace=false "
        f"exe=kcmpload {ns} pid1={eperm.caller} "
        f"pid1_uid=65534 pid1_comm=kcmpload pid2={eperm.pid2} pid2_uid=0 pid2_comm=kcmpload "
        "compat=false": REPEAT,
        f'kcmp-monitor: warning: msg="kcmp refused by seccomp" kcmp_type=KCMP_VM '
        f"caller_pid={refused.caller} comm=kcmpload uid=0 euid=0 cap_sys_ptrace=true "
        f"exe=kcmpload {ns} pid1={refused.caller} pid1_uid=0 pid1_comm=kcmpload "
        f"pid2={refused.caller} pid2_uid=0 pid2_comm=kcmpload compat=false seccomp=true": REPEAT,
        f'kcmp-monitor: warning: msg="kcmp refused by seccomp" kcmp_type=KCMP_FILE '
        f"caller_pid={refused.caller} comm=kcmpload uid=0 euid=0 cap_sys_ptrace=true "
        f"exe=kcmpload {ns} pid1={refused.caller} pid1_uid=0 pid1_comm=kcmpload "
        f"pid2=1 pid2_uid=0 pid2_comm={init} compat=false seccomp=true": REPEAT,
    }
    assert "Traceback" not in scraped["stderr"]


@pytest.mark.guest
def test_capabilities_are_dropped_after_attach(scraped):
    """In every thread: those serving /metrics were once started before the drop, which
    changed the main thread alone."""
    status = scraped["status"]
    # None since 5.19; CAP_BPF before, where every bpf(2) call, a map read too, needs it.
    kept = caps.needed_after_attach(trace=False)
    mask = kept_mask()
    assert int(status["CapEff"], 16) == mask and int(status["CapPrm"], 16) == mask
    assert int(status["CapBnd"], 16) == mask and int(status["CapAmb"], 16) == 0
    nobody = pwd.getpwnam("nobody")
    assert status["Uid"].split() == [str(nobody.pw_uid)] * 4  # real, effective, saved, fs
    assert status["Gid"].split() == [str(nobody.pw_gid)] * 4
    assert status["Groups"] == "" and status["NoNewPrivs"] == "1"
    names = ", ".join(sorted(caps.NAMES[cap] for cap in kept)) or "none"
    assert (f"capabilities after attach: {names}; running as nobody ({nobody.pw_uid}:"
            f"{nobody.pw_gid}), no_new_privs") in scraped["stderr"]


def test_sigterm_exits_within_two_seconds(scraped):
    assert scraped["code"] == 0
    assert scraped["seconds"] < 2


def _program_ids(pid: int) -> set:
    ids = set()
    for fd in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            text = fd.read_text()
        except OSError:
            continue
        ids |= {int(m) for m in re.findall(r"^prog_id:\s+(\d+)", text, re.M)}
    return ids


def test_no_program_stays_loaded_after_sigterm(kernel_ready, tmp_path):
    daemon = Daemon(tmp_path)
    daemon.wait_ready()
    ids = _program_ids(daemon.proc.pid)
    assert len(ids) >= 2
    code, seconds = daemon.stop()
    assert code == 0 and seconds < 2

    def loaded():
        return {i for i in ids if subprocess.run(["bpftool", "prog", "show", "id", str(i)],
                                                 capture_output=True).returncode == 0}

    # The kernel frees a detached program after an RCU grace period, not at once.
    deadline = time.monotonic() + 10
    while loaded() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not loaded()


@pytest.mark.guest
def test_a_million_calls_are_counted_exactly(loop, tmp_path):
    """Two processes flood kcmp while the exporter counts and the stream (JSON, folding each
    thread's identical calls) drops what it must: the counters stay exact, and the calls the
    records stand for + dropped == calls made."""
    out = tmp_path / "stream.json"
    daemon = Daemon(tmp_path, "--trace", "--output", "json", "--comm", "kcmpbench",
                    stdout=out.open("wb"))
    daemon.wait_ready()
    half = 500_000
    floods = [subprocess.Popen([str(loop), "kcmp", str(half)], stdout=subprocess.DEVNULL)
              for _ in range(2)]
    during = []
    while any(f.poll() is None for f in floods):  # scrapes in the middle of the flood
        # A name gets its series with its first counted call: before that, none.
        during.append(sample(daemon.metrics(), "kcmp_caller_calls_total", missing=0,
                             comm="kcmpbench"))
        time.sleep(0.2)
    assert [f.wait(timeout=300) for f in floods] == [0, 0]
    time.sleep(patience(1))  # let the reader drain what the ring buffer still holds
    metrics = daemon.metrics()
    code, _ = daemon.stop()
    assert code == 0
    assert sample(metrics, "kcmp_caller_calls_total", comm="kcmpbench") == 2 * half
    assert during == sorted(during) and all(v <= 2 * half for v in during)
    assert sample(metrics, "kcmp_calls_total", kcmp_type="KCMP_VM", outcome="same") == 2 * half
    dropped = sum(sample(metrics, "kcmp_events_dropped_total", lane=lane)
                  for lane in ("bulk", "priority"))
    records = [json.loads(line) for line in out.read_text().splitlines()]
    delivered = sum(r["repeat"] for r in records if r["eventName"] == "kcmp")
    assert delivered + dropped == 2 * half
    assert re.search(rf"{delivered} calls traced \(\d+ of them folded\), {int(dropped)} lost",
                     daemon.stderr())


def _metrics_after_workload(kcmpload, tmp_path) -> str:
    """A default exporter's metrics once kcmpload has made its calls."""
    daemon = Daemon(tmp_path)
    daemon.wait_ready()
    wl = Workload.start(kcmpload, tmp_path / "files")
    wl.go()
    wl.finish()
    metrics = daemon.metrics()
    daemon.stop()
    return metrics


def test_bpf_run_time_is_exported_while_the_kernel_keeps_it(kcmpload, tmp_path):
    sysctl = Path("/proc/sys/kernel/bpf_stats_enabled")
    before = sysctl.read_text()
    sysctl.write_text("1")
    try:
        metrics = _metrics_after_workload(kcmpload, tmp_path)
    finally:
        sysctl.write_text(before)
    exit_runs = sample(metrics, "kcmp_monitor_bpf_runs_total",
                       program="tracepoint__syscalls__sys_exit_kcmp")
    assert exit_runs >= REPEAT * (len(EXPECTED) - 3)  # not seccomp's nor the compat calls
    assert sample(metrics, "kcmp_monitor_bpf_run_seconds_total",
                  program="tracepoint__syscalls__sys_exit_kcmp") > 0
    assert sample(metrics, "kcmp_monitor_bpf_runs_total",
                  program="raw_tracepoint__sys_exit") > exit_runs  # every syscall
    # The programs' own count is the kernel's, and their sampled time near what it timed.
    exit_program = {"program": "tracepoint__syscalls__sys_exit_kcmp"}
    assert sample(metrics, "kcmp_monitor_program_runs_total", **exit_program) == exit_runs
    sampled = sample(metrics, "kcmp_monitor_program_run_seconds_total", **exit_program)
    timed = sample(metrics, "kcmp_monitor_bpf_run_seconds_total", **exit_program)
    assert 0.2 < sampled / timed < 5, (sampled, timed)


def test_bpf_run_time_is_sampled_without_the_kernels_statistics(kcmpload, tmp_path):
    """A default exporter (kernel.bpf_stats_enabled 0): every program counts its runs and
    times one in 64 itself."""
    assert Path("/proc/sys/kernel/bpf_stats_enabled").read_text().strip() == "0"
    metrics = _metrics_after_workload(kcmpload, tmp_path)
    assert "kcmp_monitor_bpf_runs_total" not in metrics
    entry = sample(metrics, "kcmp_monitor_program_runs_total",
                   program="tracepoint__syscalls__sys_enter_kcmp")
    exits = sample(metrics, "kcmp_monitor_program_runs_total",
                   program="tracepoint__syscalls__sys_exit_kcmp")
    assert entry == REPEAT * (len(EXPECTED) - 4)  # not seccomp's (two cases) nor 32-bit calls
    assert exits == REPEAT * (len(EXPECTED) - 2)  # the seccomp refusals' exits too
    # The 32-bit hook's runs for other syscalls are not counted: only those of the 32-bit kcmp
    # number (the two 32-bit cases, and a 64-bit caller of that number, which gets ENOSYS).
    assert sample(metrics, "kcmp_monitor_program_runs_total",
                  program="raw_tracepoint__sys_exit") == 3 * REPEAT
    for program in ("tracepoint__syscalls__sys_exit_kcmp", "raw_tracepoint__sys_exit"):
        ns = sample(metrics, "kcmp_monitor_program_run_seconds_total", program=program) * 1e9
        runs = sample(metrics, "kcmp_monitor_program_runs_total", program=program)
        assert 0 < ns / runs < 100_000, program  # a run takes ns to µs, not nothing


def test_check_reports_what_works(kernel_ready):
    result = subprocess.run([monitor_command(), "--check"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hook syscalls:sys_enter_kcmp: attached" in result.stdout
    assert "hook raw_syscalls:sys_exit: attached" in result.stdout
    assert result.stdout.startswith("hooks: tracepoints (+ raw sys_exit for 32-bit); no fentry: ")
    assert "counters: readable" in result.stdout and result.stdout.endswith("check: ok\n")


def test_fentry_asked_for_where_the_kernel_refuses_it_is_one_line_and_attaches_nothing(
        kernel_ready):
    result = subprocess.run([monitor_command(), "--hooks", "fentry"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 69 and result.stdout == ""
    assert result.stderr == (
        "kcmp-monitor: error: --hooks fentry cannot be had here: the kernel refused an fexit "
        "program on __x64_sys_kcmp (Operation not permitted); use --hooks auto or tracepoint\n")


def test_address_in_use_is_one_line_and_exit_75(kernel_ready):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [monitor_command(), "--web.listen-address", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=60)
    assert result.returncode == 75
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert errors == [f"kcmp-monitor: error: 127.0.0.1:{port} is in use: stop what listens "
                      "there or choose another --web.listen-address"]
    assert "Traceback" not in result.stderr


def test_systemd_unit_is_valid():
    if not subprocess.run(["which", "systemd-analyze"], capture_output=True).returncode == 0:
        skip_or_fail("needs systemd-analyze to check the unit")
    result = subprocess.run(["systemd-analyze", "verify",
                             str(ROOT / "deploy" / "kcmp-monitor.service")],
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_a_thousand_silent_connections_neither_stop_scrapes_nor_pile_up(tmp_path):
    """node_exporter-like bounds: the daemon holds at most --web.max-connections client
    sockets and --web.max-requests workers, and a scrape every 0.1 s keeps answering."""
    daemon = Daemon(tmp_path)
    try:
        daemon.wait_ready()
        before = _threads_and_fds(daemon.proc.pid)
        idle = [socket.create_connection(("127.0.0.1", daemon.port)) for _ in range(1000)]
        slowest = 0.0
        for _ in range(30):
            started = time.monotonic()
            assert "kcmp_calls_total" in daemon.metrics()
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.1)
        during = _threads_and_fds(daemon.proc.pid)
        for sock in idle:
            sock.close()
    finally:
        code, _ = daemon.stop()
    assert code == 0 and slowest < 1
    assert during[0] <= before[0] + 4  # --web.max-requests workers, started as needed
    assert during[1] <= before[1] + 64 + 1  # --web.max-connections, and one being answered


def _threads_and_fds(pid):
    threads = int(re.search(r"^Threads:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(),
                            re.M).group(1))
    return threads, len(os.listdir(f"/proc/{pid}/fd"))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_an_eperm_flood_costs_the_daemon_little_and_adds_up(loop, tmp_path):
    """2,000,000 refusals from uid 65534 as fast as they go: the log keeps its rate, the
    daemon's CPU stays under a third of a core, and lines + suppressed + dropped == calls."""
    calls = 2_000_000
    daemon = Daemon(tmp_path)
    daemon.wait_ready()
    cpu0, start = _cpu_seconds(daemon.proc.pid), time.monotonic()
    made = subprocess.run([str(loop), "eperm", str(calls)], capture_output=True, text=True,
                          check=True)
    assert int(made.stdout) == calls
    time.sleep(1)
    elapsed, cpu = time.monotonic() - start, _cpu_seconds(daemon.proc.pid) - cpu0
    metrics = daemon.metrics()
    code, _ = daemon.stop()
    assert code == 0
    assert cpu < elapsed / 3, (cpu, elapsed)
    log = daemon.stderr()
    lines = log.count('msg="kcmp permission denied"')
    assert lines <= 5 * 10 + 10 * (elapsed + 1)  # the burst, then 10 a second
    suppressed = max(int(n) for n in re.findall(r"suppressed \(rate limit\)\" suppressed=\d+ "
                                                r"total=(\d+)", log))
    dropped = sum(sample(metrics, "kcmp_events_dropped_total", lane=lane)
                  for lane in ("bulk", "priority"))
    assert lines + suppressed + dropped == calls
    assert sample(metrics, "kcmp_permission_denied_total", kcmp_type="KCMP_VM",
                  uid="65534") == calls
    assert log.count("events lost") <= 2 + elapsed / 5  # rate limited, with totals


def test_the_console_with_metrics_keeps_two_capabilities_in_every_thread(tmp_path):
    """The threads serving /metrics read what any client sends: they hold no more than the
    console (they once kept all of root's, started before the drop)."""
    daemon = Daemon(tmp_path, "--trace", "--output", "json")
    try:
        daemon.wait_ready()
        daemon.metrics()  # a worker thread, started by the first request
        status = thread_credentials(daemon.proc.pid)
    finally:
        assert daemon.stop()[0] == 0
    mask = (1 << caps.CAP_SYS_PTRACE) | (1 << caps.CAP_DAC_READ_SEARCH)
    assert [int(status[name], 16) for name in ("CapEff", "CapPrm", "CapBnd", "CapAmb")] == \
        [mask, mask, mask, 0]
    assert status["Uid"].split() == ["0"] * 4 and status["NoNewPrivs"] == "1"


def test_the_units_capabilities_are_enough_and_it_ends_as_nobody(tmp_path):
    """What the unit grants (its bounding set, as systemd would apply it to root) loads,
    attaches and serves, then leaves root for nobody with no_new_privs."""
    unit = (ROOT / "deploy" / "kcmp-monitor.service").read_text()
    granted = re.search(r"^CapabilityBoundingSet=(.*)$", unit, re.M).group(1).split()
    assert "CAP_SYS_ADMIN" not in granted  # this kernel is 5.8 or later
    port = free_port()
    # The unit's own command line, on a free port.
    args = re.search(r"^ExecStart=\S+ (.*)$", unit, re.M).group(1).split()
    args[args.index("--web.listen-address") + 1] = f"127.0.0.1:{port}"
    err = tmp_path / "err"
    proc = subprocess.Popen(
        ["setpriv", "--bounding-set",
         "-all," + ",".join("+" + c.removeprefix("CAP_").lower() for c in granted),
         monitor_command(), *args],
        stderr=err.open("wb"))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert "kcmp_calls_total" in http_get(f"http://127.0.0.1:{port}/metrics")
                break
            except OSError:
                assert proc.poll() is None, err.read_text()
                assert time.monotonic() < deadline
                time.sleep(0.2)
        status = thread_credentials(proc.pid)
        assert status["Uid"].split()[0] == str(pwd.getpwnam("nobody").pw_uid)
        assert (status["NoNewPrivs"], int(status["CapEff"], 16), int(status["CapBnd"], 16)) \
            == ("1", kept_mask(), kept_mask())
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
