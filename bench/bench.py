"""kcmp-monitor against its peers, measured side by side in one run on this machine.

Needs root. Usage: make bench  (or .venv/bin/python bench/bench.py [--rounds N] [--quick])
Prints a Markdown report and rewrites the README's performance section with it.

Each figure is a ratio to the unmonitored rate measured in the same run (the machines are
noisy); configurations are interleaved round by round, and medians are reported.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MONITOR = str(Path(sys.executable).parent / "kcmp-monitor")
README = ROOT / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
COMM = "kcmpbench"
# The program as it was before it read kernel structs: no BTF, so no kernel-side context.
NO_KERNEL = ("--btf", "/nonexistent")
EXIT_PROGRAM = "tracepoint__syscalls__sys_exit_kcmp"
# The kernel matrix's newest kernel (tests/matrix/kernels.toml): the hook table is measured in
# its QEMU guest, where the kernel has BPF trampolines and this machine's has not.
GUEST = "debian13"
GUEST_START, GUEST_END = "<!-- hooks-table -->", "<!-- /hooks-table -->"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int, name: str, **labels) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    found = re.search(rf"^{name}{{{want}}} (\S+)$" if labels else rf"^{name} (\S+)$", text,
                      re.M)
    return float(found.group(1)) if found else 0.0


REPEAT = re.compile(rb'"repeat":(\d+)')


def read_stream(stream, result: dict) -> None:
    """Of the JSON stream: kcmp records, the calls they stand for (their repeats), permission
    failures among those calls, and calls counted as lost. Whole lines only: a chunk's last,
    cut line waits for the next. A finding's line (the signatures') is none of these."""
    records = calls = denied = lost = 0
    rest = b""
    for chunk in iter(lambda: stream.read(1 << 20), b""):
        data = rest + chunk
        cut = data.rfind(b"\n") + 1
        data, rest = data[:cut], data[cut:]
        if b'"kind":"finding"' in data:
            data = b"\n".join(line for line in data.split(b"\n")
                              if b'"kind":"finding"' not in line)
        records += data.count(b'"eventName":"kcmp"')
        calls += sum(int(n) for n in REPEAT.findall(data))
        for line in data.splitlines():
            if b'"permissionDenied":true' in line:
                denied += int(REPEAT.search(line).group(1))
            elif b'"events_lost"' in line:
                lost += int(re.search(rb'"lostEvents":(\d+)', line).group(1))
    result.update(records=records, calls=calls, denied=denied, lost=lost)


class Tool:
    """One configuration: start() attaches, finish(calls) returns (counted, delivered)."""

    streams = False
    counts = False

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.proc: subprocess.Popen | None = None

    def start(self) -> None: ...

    def wrap(self, argv: list[str]) -> list[str]:
        return argv

    def finish(self, calls: int) -> tuple[float | None, float | None]:
        return None, None


class Daemon(Tool):
    counts = True

    def __init__(self, tmp, *args, stream=False, fold=False, comm=COMM):
        """stream: JSON of the calls of comm too, each its record (or with fold, a thread's
        identical calls folded, as --trace has it by default)."""
        super().__init__(tmp)
        self.args, self.streams, self.fold, self.comm = list(args), stream, fold, comm

    def start(self):
        self.port = free_port()
        argv = [MONITOR, "--web.listen-address", f"127.0.0.1:{self.port}", *self.args]
        if self.streams:
            argv += ["--trace", "--output", "json"] + (["--comm", self.comm] if self.comm else [])
            if not self.fold:
                argv.append("--no-fold")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.stream: dict = {}
        self.reader = threading.Thread(target=read_stream, args=(self.proc.stdout, self.stream))
        self.reader.start()
        while True:
            try:
                scrape(self.port, "kcmp_compat_calls_total")
                break
            except OSError:
                assert self.proc.poll() is None, "the daemon exited"
                time.sleep(0.02)
        self.attach_s = time.monotonic() - self.started
        self.base = scrape(self.port, "kcmp_caller_calls_total", comm=COMM)
        self.context = "--context" in self.args
        if self.context:
            self.base_context = scrape(self.port, "kcmp_context_events_total")

    def finish(self, calls):
        time.sleep(0.5)
        counted = scrape(self.port, "kcmp_caller_calls_total", comm=COMM) - self.base
        if self.context:  # every call given context, read from the stream like the JSON one
            given = scrape(self.port, "kcmp_context_events_total") - self.base_context
        self.rss = int(re.search(r"VmHWM:\s+(\d+) kB",
                                 Path(f"/proc/{self.proc.pid}/status").read_text()).group(1))
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.reader.join()
        if self.context:
            return counted / calls, given / calls
        return counted / calls, (self.stream["calls"] / calls if self.streams else None)


class Bpftrace(Tool):
    counts = True
    SCRIPT = ("tracepoint:syscalls:sys_enter_kcmp { @start[tid] = nsecs; } "
              "tracepoint:syscalls:sys_exit_kcmp /@start[tid]/ "
              "{ @calls[comm] = count(); delete(@start[tid]); }")

    def start(self):
        self.out = self.tmp / "bpftrace.out"
        self.proc = subprocess.Popen(["bpftrace", "-e", self.SCRIPT],
                                     stdout=self.out.open("wb"), stderr=subprocess.DEVNULL)
        while b"Attaching" not in self.out.read_bytes():
            time.sleep(0.02)
        time.sleep(0.3)

    def finish(self, calls):
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=60)
        found = re.search(rf"@calls\[{COMM}\]: (\d+)", self.out.read_text())
        return (int(found.group(1)) / calls if found else 0.0), None


class LineTracer(Tool):
    """A tool that prints a line per event to a file: bcc trace, perf trace."""

    streams = True

    def __init__(self, tmp, argv, ready: bytes, settle: float = 0.5):
        super().__init__(tmp)
        self.argv, self.ready, self.settle = argv, ready, settle

    def start(self):
        self.out = self.tmp / "lines.out"
        self.err = self.tmp / "lines.err"
        self.proc = subprocess.Popen(self.argv(self.out), stdout=self.out.open("wb"),
                                     stderr=self.err.open("wb"))
        deadline = time.monotonic() + 30
        while self.ready not in self.out.read_bytes() + self.err.read_bytes():
            assert time.monotonic() < deadline and self.proc.poll() is None, self.argv
            time.sleep(0.05)
        time.sleep(self.settle)

    def finish(self, calls):
        time.sleep(1)
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:  # seen once with bcc trace: what it printed counts
            self.proc.kill()
            self.proc.wait()
        lines = self.out.read_bytes().splitlines()
        return None, sum(1 for line in lines if COMM.encode() in line) / calls


class Strace(Tool):
    """strace follows the workload itself: it wraps the command."""

    streams = True

    def wrap(self, argv):
        # One output per workload: the kcmp run's is the one that counts.
        return ["strace", "-f", "-qq", "-e", "trace=kcmp", "-o",
                str(self.tmp / f"strace-{argv[1]}.out"), *argv]

    def finish(self, calls):
        out = (self.tmp / "strace-kcmp.out").read_text().splitlines()
        return None, sum(1 for line in out if "kcmp(" in line) / calls


@dataclass
class Row:
    name: str
    kcmp: float
    getppid: float
    counted: float | None
    delivered: float | None
    confined: float | None = None  # getppid/s under a seccomp filter (the hook table's)


def rate(argv: list[str]) -> float:
    return float(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)


def policy_file(tmp: Path) -> str:
    """A policy of two rules that match no call of the loop (root's own), decided at each."""
    path = tmp / "policy.yaml"
    path.write_text('{"policy": {"rules": ['
                    '{"name": "a", "match": {"uids": [65534], "targets": ["other_user"]}, '
                    '"action": "kill"}, '
                    '{"name": "b", "match": {"in_container": true, '
                    '"targets": ["outside_container"]}, "action": "deny"}]}}')
    return str(path)


def tools(tmp: Path, perf: str | None) -> dict[str, tuple]:
    """name -> (make the tool, share of the calls to make under it)."""
    table = {
        "unmonitored": (lambda: Tool(tmp), 1),
        "kcmp-monitor exporter": (lambda: Daemon(tmp), 1),
        "kcmp-monitor exporter --no-compat": (lambda: Daemon(tmp, "--no-compat"), 1),
        "kcmp-monitor exporter --compat-timing": (lambda: Daemon(tmp, "--compat-timing"), 1),
        "kcmp-monitor exporter, no kernel context": (lambda: Daemon(tmp, *NO_KERNEL), 1),
        "kcmp-monitor exporter + JSON stream": (lambda: Daemon(tmp, stream=True), 1),
        "kcmp-monitor exporter + JSON stream, folded (the --trace default)":
            (lambda: Daemon(tmp, stream=True, fold=True), 1),
        "kcmp-monitor exporter + JSON stream, no kernel context":
            (lambda: Daemon(tmp, *NO_KERNEL, stream=True), 1),
        "kcmp-monitor exporter --context": (lambda: Daemon(tmp, "--context"), 1),
        "kcmp-monitor exporter + a policy (2 rules, dry run)":
            (lambda: Daemon(tmp, "--rules", policy_file(tmp)), 1),
        "bpftrace (enter/exit count map)": (lambda: Bpftrace(tmp), 1),
        "bcc trace": (lambda: LineTracer(
            tmp, lambda out: ["trace-bpfcc", 't:syscalls:sys_exit_kcmp "%d", args->ret'],
            b"PID"), 1),
    }
    if perf:
        table["perf trace -e kcmp"] = (lambda: LineTracer(
            tmp, lambda out: [perf, "trace", "-a", "-e", "kcmp", "-o", str(out)], b"",
            settle=2.0), 10)
    table["strace -f -e trace=kcmp"] = (lambda: Strace(tmp), 10)
    return table


def hook_tools(tmp: Path) -> dict[str, tuple]:
    """Both hook kinds side by side in each configuration, and the peer."""
    table: dict[str, tuple] = {"unmonitored": (lambda: Tool(tmp), 1)}
    configs = (("kcmp-monitor exporter", (), {}),
               ("kcmp-monitor exporter --no-compat", ("--no-compat",), {}),
               ("kcmp-monitor exporter + JSON stream, folded", (), {"stream": True, "fold": True}))
    for name, args, kw in configs:
        for hooks in ("fentry", "tracepoint"):
            table[f"{name}, --hooks {hooks}"] = (
                lambda args=args, kw=kw, hooks=hooks: Daemon(tmp, "--hooks", hooks, *args, **kw),
                1)
    table["bpftrace (enter/exit count map)"] = (lambda: Bpftrace(tmp), 1)
    return table


def _rates(tool: Tool, loop: str, n: int, confined: bool) -> tuple:
    """kcmp/s, getppid/s, and getppid/s under seccomp (None unless confined)."""
    return (rate(tool.wrap([loop, "kcmp", str(n)])),
            rate(tool.wrap([loop, "getppid", str(3 * n)])),
            rate(tool.wrap([loop, "confined-getppid", str(3 * n)])) if confined else None)


def overhead(loop: str, rounds: int, calls: int, configs: dict[str, tuple],
             confined: bool = False) -> list[Row]:
    """Each configuration's rates beside the unmonitored ones measured just before it, given
    as rates against the median unmonitored run (a ratio is the median of its pairs' ratios:
    a slow moment of the machine weighs on both sides of a pair). confined: getppid under a
    seccomp filter too. The first configuration is the unmonitored one."""
    (bare_name, (make_bare, _)), *tools = configs.items()
    bare_runs: list[tuple] = []
    pairs: dict[str, list] = {name: [] for name, _ in tools}
    for _ in range(rounds):
        for name, (make, divide) in tools:
            n = calls // divide
            bare_runs.append(_rates(make_bare(), loop, n, confined))
            tool = make()
            tool.start()
            measured = _rates(tool, loop, n, confined)
            counted, delivered = tool.finish(n)
            pairs[name].append((bare_runs[-1], measured, counted, delivered))
    bare = [_median(r[i] for r in bare_runs) for i in range(3)]
    rows = [Row(bare_name, bare[0], bare[1], None, None, bare[2])]
    for name, runs in pairs.items():
        scaled = [None if bare[i] is None else _median(m[i] / b[i] * bare[i] for b, m, _, _ in runs)
                  for i in range(3)]
        rows.append(Row(name, scaled[0], scaled[1], _median(r[2] for r in runs),
                        _median(r[3] for r in runs), scaled[2]))
    return rows


def _median(values) -> float | None:
    """The median, or None where the measure was not taken (None in every run)."""
    values = list(values)
    return None if values[0] is None else statistics.median(values)


KINDS = ("kcmp", "kcmpfile", "kcmppeer")  # loop.c's: KCMP_VM, an own fd, a child's fd


def program_cost(loop: str, rounds: int, calls: int, tmp: Path) -> list[tuple]:
    """ns per run of the exit program, with the kernel-side context and without, for KCMP_VM,
    for KCMP_FILE on the caller's own fd (the path walk) and on a child's (the child's task
    found in the pid namespace's IDR first): the run time the kernel keeps while
    kernel.bpf_stats_enabled is 1."""
    sysctl = Path("/proc/sys/kernel/bpf_stats_enabled")
    before = sysctl.read_text()
    sysctl.write_text("1")
    configs = [(name, context, args, stream)
               for name, stream in (("exporter", False), ("exporter + JSON stream", True))
               for context, args in (("without", NO_KERNEL), ("with", ()))]
    results: dict[tuple, list] = {}
    try:
        for _ in range(rounds):
            for name, context, args, stream in configs:
                for kind in KINDS:
                    daemon = Daemon(tmp, *args, stream=stream)
                    daemon.start()
                    ns0 = scrape(daemon.port, "kcmp_monitor_bpf_run_seconds_total",
                                 program=EXIT_PROGRAM)
                    runs0 = scrape(daemon.port, "kcmp_monitor_bpf_runs_total",
                                   program=EXIT_PROGRAM)
                    rate([loop, kind, str(calls)])
                    ns = scrape(daemon.port, "kcmp_monitor_bpf_run_seconds_total",
                                program=EXIT_PROGRAM) - ns0
                    runs = scrape(daemon.port, "kcmp_monitor_bpf_runs_total",
                                  program=EXIT_PROGRAM) - runs0
                    daemon.finish(calls)
                    results.setdefault((name, context, kind), []).append(ns * 1e9 / runs)
    finally:
        sysctl.write_text(before)
    return [(name, context, *(statistics.median(results[name, context, kind]) for kind in KINDS))
            for name, context, _, _ in configs]


def fork_tax(loop: str, rounds: int, forks: int, tmp: Path) -> list[tuple[str, float]]:
    """fork+exit+wait per second: what the process table's fork hook costs (it is loaded only
    with a stream), beside the exporter without it."""
    configs = {"unmonitored": lambda: Tool(tmp), "kcmp-monitor exporter": lambda: Daemon(tmp),
               "kcmp-monitor exporter + JSON stream (process table)":
                   lambda: Daemon(tmp, stream=True)}
    results: dict[str, list] = {name: [] for name in configs}
    for _ in range(rounds):
        for name, make in configs.items():
            tool = make()
            tool.start()
            results[name].append(rate([loop, "fork", str(forks)]))
            tool.finish(1)
    return [(name, statistics.median(runs)) for name, runs in results.items()]


def steady(loop: str, tmp: Path, steps: list[int], seconds: int) -> list[tuple]:
    """(rate, delivered share, dropped, counted share) for the JSON stream at steady rates."""
    out = []
    for step in steps:
        daemon = Daemon(tmp, stream=True)
        daemon.start()
        made = int(subprocess.run([loop, "paced", str(step), str(seconds)], capture_output=True,
                                  text=True, check=True).stdout)
        time.sleep(1)
        dropped = sum(scrape(daemon.port, "kcmp_events_dropped_total", lane=lane)
                      for lane in ("bulk", "priority"))
        counted, delivered = daemon.finish(made)
        out.append((step, delivered, int(dropped), counted))
        if delivered < 1:
            break  # the first lossy step: above the top lossless rate
    return out


def flood_lane(loop: str, tmp: Path, calls: int, denied: int) -> list[tuple]:
    """Two full-speed flooders of benign calls and, in the middle, `denied` permission
    failures (uid 65534): what the JSON stream (every call its record, and folded) delivered
    of each, and what it counted as lost."""
    out = []
    for name, fold in (("every call its record (--no-fold)", False), ("folded", True)):
        daemon = Daemon(tmp, stream=True, fold=fold, comm=None)
        daemon.start()
        floods = [subprocess.Popen([loop, "kcmp", str(calls)], stdout=subprocess.DEVNULL)
                  for _ in range(2)]
        time.sleep(0.2)
        subprocess.run([loop, "eperm", str(denied)], check=True, stdout=subprocess.DEVNULL)
        for f in floods:
            f.wait()
        time.sleep(1)
        daemon.finish(1)
        got = daemon.stream
        out.append((name, got["denied"], got["calls"] - got["denied"], got["lost"],
                    got["records"]))
    return out


def soak(loop: str, tmp: Path, seconds: int) -> tuple[int, int, float]:
    """The daemon's RSS (kB) early and after `seconds` of flood, and its start-to-attached."""
    daemon = Daemon(tmp, stream=True)
    daemon.start()
    flood = subprocess.Popen([loop, "kcmp", "1000000000"], stdout=subprocess.DEVNULL)
    time.sleep(min(5, seconds))
    early = int(re.search(r"VmRSS:\s+(\d+) kB",
                          Path(f"/proc/{daemon.proc.pid}/status").read_text()).group(1))
    time.sleep(max(0, seconds - 5))
    late = int(re.search(r"VmRSS:\s+(\d+) kB",
                         Path(f"/proc/{daemon.proc.pid}/status").read_text()).group(1))
    flood.kill()
    flood.wait()
    daemon.finish(1)
    return early, late, daemon.attach_s


def overhead_table(rows: list[Row]) -> list[str]:
    bare = rows[0]
    confined = bare.confined is not None
    lines = ["| configuration | kcmp calls/s | kcmp ratio | cost per kcmp call | getppid ratio | "
             "cost per other syscall | " + ("getppid ratio under seccomp | cost per "
                                            "confined syscall | " if confined else "")
             + "counted exactly | events delivered |",
             "|---|" + "---:|" * (9 if confined else 7)]
    for r in rows:
        extra = 1e9 / r.kcmp - 1e9 / bare.kcmp
        tax = 1e9 / r.getppid - 1e9 / bare.getppid
        counted = "–" if r.counted is None else f"{r.counted:.2%}"
        delivered = "–" if r.delivered is None else f"{r.delivered:.1%}"
        seccomp = ""
        if confined and r.confined is not None and bare.confined is not None:
            seccomp = (f"{r.confined / bare.confined:.2f} | "
                       f"{1e9 / r.confined - 1e9 / bare.confined:+.0f} ns | ")
        lines.append(f"| {r.name} | {r.kcmp / 1e6:.2f} M | {r.kcmp / bare.kcmp:.2f} | "
                     f"{extra:+.0f} ns | {r.getppid / bare.getppid:.2f} | {tax:+.0f} ns | "
                     f"{seccomp}{counted} | {delivered} |")
    return lines


PAIRED = ("%d rounds interleaved, each configuration measured just after an unmonitored run, "
          "its ratios the medians of those pairs")


def hooks_report(rows: list[Row], args) -> str:
    """The hook table, as measured where it ran (a guest: its kernel named)."""
    return "\n".join([
        f"Measured by `make bench` on {time.strftime('%Y-%m-%d')} in the kernel matrix's "
        f"newest guest (QEMU, TCG, one vCPU): Linux {platform.release()}, {PAIRED % args.rounds}; "
        f"{args.calls:,} kcmp calls per run, 3x as many getppid. "
        "32-bit capture is on unless --no-compat. Under seccomp: the same getppid loop in a "
        "process whose seccomp filter refuses kcmp, as a container's does.", "",
        *overhead_table(rows)])


def report(rows, costs, forked, steps, lanes, soaked, args) -> str:
    lines = [f"Measured by `make bench` on {time.strftime('%Y-%m-%d')}: {os.cpu_count()} CPUs, "
             f"Linux {platform.release()}, {PAIRED % args.rounds}; "
             f"{args.calls:,} kcmp calls per run (a tenth under perf and strace), 3x as many "
             "getppid.", "", *overhead_table(rows)]
    lines += ["", "The exit program's own run time per call (`kernel.bpf_stats_enabled`), "
              "with the kernel-side context (caller, own fds, saved registers, namespaced "
              "counts, the named tasks and fds; offsets from BTF) and without it (`--btf` "
              "pointing nowhere: the program as it was before it read kernel structs):", "",
              "| configuration | kernel context | KCMP_VM | KCMP_FILE, own fd | "
              "KCMP_FILE, a child's fd |", "|---|---|---:|---:|---:|"]
    for name, context, vm, own, peer in costs:
        lines.append(f"| {name} | {context} | {vm:.0f} ns | {own:.0f} ns | {peer:.0f} ns |")
    lines += ["", f"fork + exit + wait, {args.forks:,} per run (the process table's hook runs "
              "on every new task):", "",
              "| configuration | forks/s | ratio | cost per fork |", "|---|---:|---:|---:|"]
    for name, value in forked:
        lines.append(f"| {name} | {value:,.0f} | {value / forked[0][1]:.2f} | "
                     f"{1e9 / value - 1e9 / forked[0][1]:+.0f} ns |")
    lines += ["", f"JSON stream at a steady rate for {args.seconds} s (the exporter counting "
              "at the same time):", "",
              "| calls/s | events delivered | dropped (counted) | counted exactly |",
              "|---:|---:|---:|---:|"]
    for step, delivered, dropped, counted in steps:
        lines.append(f"| {step:,} | {delivered:.2%} | {dropped:,} | {counted:.2%} |")
    lines += ["", f"A flood and what must not drown in it: two processes making {args.calls:,} "
              f"identical calls each at full speed while a third, as uid 65534, makes "
              f"{args.denied:,} that fail with EPERM (exporter + JSON stream of every caller):",
              "", "| stream | EPERM calls delivered | flood calls delivered | lost (counted) | "
              "records |", "|---|---:|---:|---:|---:|"]
    for name, denied, flood, lost, records in lanes:
        lines.append(f"| {name} | {denied:,} of {args.denied:,} | {flood:,} of "
                     f"{2 * args.calls:,} | {lost:,} | {records:,} |")
    early, late, attach = soaked
    lines += ["", f"Start to attached (the exporter serving /metrics): {attach:.2f} s. "
              f"Daemon RSS under a flood: {early / 1024:.0f} MiB after 5 s, "
              f"{late / 1024:.0f} MiB after {args.soak} s."]
    return "\n".join(lines)


def rewrite_readme(text: str, start: str = START, end: str = END) -> None:
    readme = README.read_text()
    a, b = readme.index(start) + len(start), readme.index(end)
    README.write_text(readme[:a] + "\n" + text + "\n" + readme[b:])


def in_guest(args) -> str:
    """The hook table, measured in the newest kernel's guest (its own run of this script)."""
    argv = [sys.executable, "-m", "tests.matrix.guest", "run", "--timeout", "7200", GUEST, "--",
            ".venv/bin/python", "bench/bench.py", "--hooks-table", "--rounds", str(args.rounds),
            "--calls", str(args.guest_calls)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    out = done.stdout
    if done.returncode or GUEST_START not in out:
        raise SystemExit(f"bench: the guest's run failed ({done.returncode}):\n"
                         f"{out[-3000:]}{done.stderr[-3000:]}")
    return out[out.index(GUEST_START) + len(GUEST_START):out.index(GUEST_END)].strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=10, help="per steady-rate step")
    parser.add_argument("--soak", type=int, default=60, help="seconds of flood for the RSS")
    parser.add_argument("--forks", type=int, default=20_000, help="forks per fork-tax run")
    parser.add_argument("--denied", type=int, default=1000,
                        help="permission failures made during the flood")
    parser.add_argument("--quick", action="store_true", help="one round, short steps")
    parser.add_argument("--no-readme", action="store_true", help="print only")
    parser.add_argument("--guest-calls", type=int, default=200_000,
                        help="kcmp calls per run in the guest (TCG runs them 10x slower)")
    parser.add_argument("--no-guest", action="store_true",
                        help="leave out the hook table (measured in a QEMU guest)")
    parser.add_argument("--hooks-table", action="store_true",
                        help="only the hook table, here (what the guest runs)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.calls, args.seconds, args.soak, args.forks = 1, 300_000, 3, 10, 5000
        args.guest_calls = 50_000
    if os.geteuid() != 0:
        print("bench: needs root (sudo make bench)", file=sys.stderr)
        return 77
    for tool in ("bpftrace", "trace-bpfcc", "strace", "gcc"):
        if not shutil.which(tool):
            print(f"bench: {tool} is missing: run `sudo make bench` (it installs the peers)",
                  file=sys.stderr)
            return 69
    perf = shutil.which("perf")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        loop = str(tmp / "loop")
        subprocess.run(["gcc", "-O2", "-o", loop, str(HERE / "loop.c")], check=True)
        if args.hooks_table:
            rows = overhead(loop, args.rounds, args.calls, hook_tools(tmp), confined=True)
            print(f"{GUEST_START}\n{hooks_report(rows, args)}\n{GUEST_END}")
            return 0
        rows = overhead(loop, args.rounds, args.calls, tools(tmp, perf))
        costs = program_cost(loop, args.rounds, args.calls // 5, tmp)
        forked = fork_tax(loop, args.rounds, args.forks, tmp)
        steps = steady(loop, tmp, [50_000, 75_000, 100_000, 125_000, 150_000, 200_000],
                       args.seconds)
        lanes = flood_lane(loop, tmp, args.calls, args.denied)
        soaked = soak(loop, tmp, args.soak)
    text = report(rows, costs, forked, steps, lanes, soaked, args)
    print(text)
    hooks = None if args.no_guest else in_guest(args)
    if hooks is not None:
        print(f"\n{hooks}")
    if not args.no_readme:
        rewrite_readme(text)
        if hooks is not None:
            rewrite_readme(hooks, GUEST_START, GUEST_END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
