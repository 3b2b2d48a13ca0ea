"""What monitoring kcmp costs, measured side by side in one run (the machines are noisy: read
the ratios). Needs root. Usage: make bench, or .venv/bin/python bench/overhead.py [--rounds N]

For each configuration of kcmp-monitor it measures:
  - kcmp(self, self, KCMP_VM) calls/s in a tight loop, and its ratio to the unmonitored rate;
  - getppid() calls/s: attaching any syscall tracepoint taxes every syscall on the machine;
  - the share of the kcmp calls the exporter counted (from /metrics) and the share that
    reached the stream's reader (the rest were counted as lost).
"""

import argparse
import os
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
MONITOR = str(Path(sys.executable).parent / "kcmp-monitor")
CONFIGS = {
    "unmonitored": None,
    "exporter (counters only)": [],
    "exporter, --no-compat": ["--no-compat"],
    "--trace (console only)": ["--trace"],
    "--trace --no-compat": ["--trace", "--no-compat"],
    "--trace --output json": ["--trace", "--output", "json"],
    "exporter + --trace": ["--trace", "@listen"],
}


def rate(loop, what, n):
    return float(subprocess.run([loop, what, str(n)], capture_output=True, text=True,
                                check=True).stdout)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    found = re.search(r'^kcmp_caller_calls_total\{comm="kcmpbench"\} (\S+)', text, re.M)
    return float(found.group(1)) if found else 0.0


class Monitor:
    def __init__(self, args):
        self.trace = "--trace" in args
        self.port = None
        if not self.trace or "@listen" in args:
            self.port = free_port()
            args = [a for a in args if a != "@listen"]
            args += ["--web.listen-address", f"127.0.0.1:{self.port}"]
        self.proc = subprocess.Popen([MONITOR] + args, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        if self.trace:
            # The start line (stdout for text, stderr for JSON) says the program is attached.
            first = self.proc.stderr if "json" in args else self.proc.stdout
            while not first.readline().startswith(b"Tracing kcmp()"):
                assert self.proc.poll() is None, "the monitor exited"
            threading.Thread(target=shutil.copyfileobj,
                             args=(self.proc.stdout, open(os.devnull, "wb"), 1 << 20),
                             daemon=True).start()
        else:
            while True:
                try:
                    scrape(self.port)
                    break
                except OSError:
                    time.sleep(0.1)

    def finish(self, calls):
        time.sleep(0.5)
        counted = scrape(self.port) / calls if self.port else None
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)
        delivered = None
        if self.trace:
            traced = re.search(rb"(\d+) calls traced", self.proc.stderr.read())
            delivered = int(traced.group(1)) / calls if traced else float("nan")
        return counted, delivered


def measure(loop, args, kcmp_calls, getppid_calls):
    monitor = Monitor(args) if args is not None else None
    kcmp = rate(loop, "kcmp", kcmp_calls)
    getppid = rate(loop, "getppid", getppid_calls)
    counted, delivered = monitor.finish(kcmp_calls) if monitor else (None, None)
    return kcmp, getppid, counted, delivered


def _median(values):
    return None if values[0] is None else statistics.median(values)


def _share(value):
    return "–" if value is None else f"{value:.0%}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kcmp-calls", type=int, default=1_000_000)
    parser.add_argument("--getppid-calls", type=int, default=3_000_000)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        loop = str(Path(tmp) / "loop")
        subprocess.run(["gcc", "-O2", "-o", loop, str(HERE / "loop.c")], check=True)
        results = {name: [] for name in CONFIGS}
        for _ in range(opts.rounds):  # interleaved, so drift hits every configuration alike
            for name, args in CONFIGS.items():
                results[name].append(measure(loop, args, opts.kcmp_calls, opts.getppid_calls))
    median = {name: [_median([r[i] for r in runs]) for i in range(4)]
              for name, runs in results.items()}
    bare_kcmp, bare_getppid = median["unmonitored"][:2]
    print(f"{opts.rounds} rounds, {opts.kcmp_calls} kcmp and {opts.getppid_calls} getppid "
          "calls each, medians")
    print("| configuration | kcmp calls/s | kcmp ratio | getppid ratio | counted | "
          "delivered |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (kcmp, getppid, counted, delivered) in median.items():
        print(f"| {name} | {kcmp / 1e6:.2f} M | {kcmp / bare_kcmp:.2f} | "
              f"{getppid / bare_getppid:.2f} | {_share(counted)} | {_share(delivered)} |")


if __name__ == "__main__":
    main()
