"""What tracing kcmp costs, measured side by side in one run (the machines are noisy: read the
ratios). Needs root. Usage: make bench, or .venv/bin/python bench/overhead.py [--rounds N]

For each configuration of `kcmp-monitor --trace` (its output read and discarded) it measures:
  - kcmp(self, self, KCMP_VM) calls/s in a tight loop, and its ratio to the untraced rate;
  - getppid() calls/s: attaching any syscall tracepoint taxes every syscall on the machine;
  - the share of the kcmp calls that reached the output (the rest were counted as lost).
"""

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MONITOR = str(Path(sys.executable).parent / "kcmp-monitor")
CONFIGS = {
    "untraced": None,
    "--trace --no-compat": ["--trace", "--no-compat"],
    "--trace (32-bit capture on)": ["--trace"],
    "--trace --output json": ["--trace", "--output", "json"],
}


def rate(loop, what, n):
    return float(subprocess.run([loop, what, str(n)], capture_output=True, text=True,
                                check=True).stdout)


def measure(loop, args, kcmp_calls, getppid_calls):
    monitor = None
    if args is not None:
        monitor = subprocess.Popen([MONITOR] + args, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        # The start line (stdout for text, stderr for JSON) says the program is attached.
        first = monitor.stderr if "json" in args else monitor.stdout
        assert first.readline().startswith(b"Tracing kcmp()")
        threading.Thread(target=shutil.copyfileobj,
                         args=(monitor.stdout, open(os.devnull, "wb"), 1 << 20),
                         daemon=True).start()
    kcmp = rate(loop, "kcmp", kcmp_calls)
    getppid = rate(loop, "getppid", getppid_calls)
    delivered = None
    if monitor is not None:
        time.sleep(0.5)
        monitor.send_signal(signal.SIGINT)
        monitor.wait(timeout=30)
        traced = re.search(rb"(\d+) calls traced", monitor.stderr.read())
        delivered = int(traced.group(1)) / kcmp_calls if traced else float("nan")
    return kcmp, getppid, delivered


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
    median = {name: tuple(statistics.median(r[i] for r in runs) if runs[0][i] is not None
                          else None for i in range(3)) for name, runs in results.items()}
    bare_kcmp, bare_getppid, _ = median["untraced"]
    print(f"{opts.rounds} rounds, {opts.kcmp_calls} kcmp and {opts.getppid_calls} getppid calls "
          "each, medians")
    print("| configuration | kcmp calls/s | kcmp ratio | getppid ratio | events delivered |")
    print("|---|---:|---:|---:|---:|")
    for name, (kcmp, getppid, delivered) in median.items():
        shown = "–" if delivered is None else f"{delivered:.0%}"
        print(f"| {name} | {kcmp / 1e6:.2f} M | {kcmp / bare_kcmp:.2f} | "
              f"{getppid / bare_getppid:.2f} | {shown} |")


if __name__ == "__main__":
    main()
