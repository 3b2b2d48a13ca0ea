"""The command line: parses flags, builds the pieces, maps failures to one line and an exit code."""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import pwd
import signal
import sys
from typing import NoReturn
from collections.abc import Sequence

from . import __version__, abi
from .errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, MonitorError, UsageError
from .escape import escape
from .logs import logfmt

log = logging.getLogger("kcmp_monitor")

PROG = "kcmp-monitor"
COMM_MAX = 15  # TASK_COMM_LEN - 1: the kernel keeps no more of a process name

EXAMPLES = """\
examples:
  kcmp-monitor                              the exporter: metrics on 127.0.0.1:9041
  kcmp-monitor --check                      what works on this machine
  kcmp-monitor --context                    also count calls crossing namespace boundaries
  kcmp-monitor --trace                      every kcmp call on the machine, live
  kcmp-monitor --trace --errors-only        only calls that failed
  kcmp-monitor --trace --comm criu --type FILE,EPOLL_TFD
  kcmp-monitor --trace --uid 1000 --output json | jq .
  kcmp-monitor probe 4242 4243              which kernel resources two processes share
                                            (see kcmp-monitor probe --help)
exit codes: 0 ok, 2 usage, 69 kernel feature or dependency missing, 70 internal,
  75 listen address in use, 77 no permission
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")


def _positive_int(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def _seconds(text: str) -> float:
    value = _rate(text)
    if value == 0:
        raise argparse.ArgumentTypeError("a timeout must be more than 0")
    return value


def _uid(text: str) -> int:
    if text.isdigit():
        return int(text)
    try:
        return pwd.getpwnam(text).pw_uid
    except KeyError:
        raise argparse.ArgumentTypeError(f"no user {text!r}") from None


def _comm(text: str) -> bytes:
    raw = os.fsencode(text)
    if not raw or b"\0" in raw:
        raise argparse.ArgumentTypeError("a process name is 1 to 15 bytes, no NUL")
    return raw[:COMM_MAX]  # compared as the kernel stores it: truncated


def _types(text: str) -> frozenset:
    values = set()
    for word in text.split(","):
        if word.strip().lower() == "unknown":
            values.add(abi.KCMP_TYPES)
            continue
        try:
            values.add(abi.parse_type(word))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return frozenset(values)


def _ringbuf_pages(text: str) -> int:
    value = _positive_int(text)
    if value & (value - 1):
        raise argparse.ArgumentTypeError(f"{value} is not a power of two")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Monitor the Linux kcmp(2) system call with eBPF.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--trace", action="store_true",
                        help="print every kcmp call live, strace-style, instead of exporting "
                             "metrics (both, with --web.listen-address)")
    parser.add_argument("--web.listen-address", dest="listen", metavar="HOST:PORT",
                        help="where to serve /metrics (default: 127.0.0.1:9041; "
                             ":PORT for every interface)")
    parser.add_argument("--context", action="store_true",
                        help="exporter: also stream every call to give it context and export "
                             "kcmp_boundary_crossings_total (costs a stream; --trace does it "
                             "for the traced calls)")
    parser.add_argument("--check", action="store_true",
                        help="load and attach, report what works, and exit (0: all works)")
    parser.add_argument("--eperm-log-rate", type=_rate, default=10.0, metavar="LINES",
                        help="permission failures logged per second at most, in bursts of "
                             "up to 5x that (0: none; the counters count all; default: 10)")
    parser.add_argument("--output", choices=("text", "json"), default="text",
                        help="text lines for people, or JSON lines (Tracee field names)")
    filters = parser.add_argument_group("filters (applied in the kernel)")
    filters.add_argument("--pid", type=_positive_int, help="only calls made by this process")
    filters.add_argument("--comm", type=_comm,
                         help="only calls made by processes of this name (first 15 bytes)")
    filters.add_argument("--uid", type=_uid, help="only calls made by this user (name or uid)")
    filters.add_argument("--type", type=_types, dest="types", default=frozenset(),
                         help="only these types: names or numbers, comma-separated; "
                              "'unknown' for invalid ones")
    filters.add_argument("--errors-only", action="store_true", help="only calls that failed")
    tuning = parser.add_argument_group("tuning")
    tuning.add_argument("--no-compat", dest="compat", action="store_false",
                        help="do not capture 32-bit (int 0x80) callers; their hook runs on "
                             "every syscall of the machine")
    tuning.add_argument("--ringbuf-pages", type=_ringbuf_pages, default=1024,
                        help="ring buffer size in pages, a power of two (default: 1024 = 4 MiB)")
    return parser


class _StopFlag:
    """Set by SIGINT or SIGTERM; the loop checks it between polls."""

    def __init__(self) -> None:
        self.stopped = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._stop)

    def _stop(self, _signum, _frame) -> None:
        self.stopped = True

    def __call__(self) -> bool:
        return self.stopped


def run(args: argparse.Namespace) -> int:
    """The daemon, the console, or both from one process and one set of attached programs."""
    # Imported here so that --help and usage errors never need BCC.
    from . import daemon, logs
    from .cgroups import CgroupPaths, cgroup2_mount
    from .console import ConsoleSink
    from .enrich import ProcReader
    from .jsonout import JsonSink
    from .loader import Filters, KcmpProgram, ProgramOptions
    from .permlog import PermissionLog
    from .sockets import NetnsNames, SocketResolver
    from .trace import Tracer

    if not args.trace:
        given = [flag for flag, value in (
            ("--pid", args.pid), ("--comm", args.comm), ("--uid", args.uid),
            ("--type", args.types), ("--errors-only", args.errors_only),
            ("--output", args.output != "text")) if value]
        if given:
            raise UsageError(f"{', '.join(given)} shape the --trace stream; the exporter "
                             "counts every call (add --trace)")
    exporter = not args.trace or args.listen is not None
    if args.context and args.trace:
        raise UsageError("--context is the exporter's: --trace already gives every traced "
                         "call its context")
    # The console alone keeps stderr for losses and warnings; a daemon also says what it does.
    logs.setup(level=logging.INFO if exporter else logging.WARNING)
    address = daemon.parse_listen_address(args.listen or daemon.DEFAULT_ADDRESS)
    stop = _StopFlag()
    filters = Filters(tgid=args.pid, uid=args.uid, comm=args.comm, types=args.types,
                      errors_only=args.errors_only)
    options = ProgramOptions(filters=filters, ringbuf_pages=args.ringbuf_pages,
                             compat=args.compat, trace=args.trace or args.context,
                             count=exporter or args.check,
                             log_eperm=exporter and args.eperm_log_rate > 0)
    with KcmpProgram(options) as program:
        if args.check:
            return check(program)
        proc = ProcReader(sockets=SocketResolver(), netns=NetnsNames(), kernel=program,
                          cgroups=CgroupPaths(cgroup2_mount()))
        if options.streams:
            # Processes started before the program: the fork hook never saw them.
            program.remember(proc.existing())
        sink = None
        if args.trace:
            sink = (JsonSink if args.output == "json" else ConsoleSink)(sys.stdout, sys.stderr)
        eperm_log = (PermissionLog(rate=args.eperm_log_rate)
                     if options.log_eperm else None)
        tracer = Tracer(program, proc, sink=sink, eperm_log=eperm_log,
                        count_context=args.context)
        registry = None
        if exporter:
            context = (lambda: tracer.summary) if options.trace else None
            registry = daemon.build_registry(program, context)
        daemon.drop_capabilities(args.trace or args.context)
        server = daemon.serve(registry, address) if registry is not None else None
        if sink is not None:
            sink.start(compat_notes(program))
        if server is not None:
            log.info(logfmt(msg="exporting kcmp metrics", address=str(address),
                            compat=program.compat, compat_error=program.compat_error,
                            context=options.trace))
        daemon.notify("READY=1")
        summary = tracer.run(stop)
        daemon.notify("STOPPING=1")
        if server is not None:
            server.shutdown()
    if args.trace:
        sys.stderr.write(exit_line(summary) + "\n")
    return EXIT_OK


def exit_line(summary) -> str:
    """What the trace saw, lost and could not resolve, in one line."""
    line = f"{PROG}: {summary.events} calls traced, {summary.lost} lost"
    if summary.unpaired:
        line += f", {summary.unpaired} without entry (in-flight map full)"
    crossed = [f"{kind} {n}" for kind, n in summary.crossings.items() if n]
    if crossed:
        line += f"; crossing a boundary: {', '.join(crossed)}"
    if summary.unresolved:
        line += f"; {summary.unresolved} with context unresolved"
    return line


def compat_notes(program) -> list[str]:
    if program.compat:
        return ["32-bit: on, taxes every syscall; --no-compat"]
    if program.compat_error:
        return [f"32-bit callers not captured: {program.compat_error}"]
    return ["32-bit: off"]


def check(program) -> int:
    """--check: what is attached and readable, on stdout; 0 only if all of it works."""
    from .daemon import bpf_stats_enabled

    ok = True
    for tracepoint, attached in program.attached().items():
        ok &= attached
        print(f"tracepoint {tracepoint}: {'attached' if attached else 'NOT ATTACHED'}")
    print(f"32-bit capture: {'on' if program.compat else 'off'}"
          + (f" ({escape(program.compat_error)})" if program.compat_error else ""))
    try:
        snap = program.snapshot()
        print(f"counters: readable ({sum(sum(t.outcome) for t in snap.types)} calls so far)")
    except Exception as exc:  # what a scrape would hit: report it
        ok = False
        print(f"counters: NOT READABLE ({escape(str(exc))})")
    print("bpf run time: " + ("exported" if bpf_stats_enabled() else
                              "not exported (sysctl kernel.bpf_stats_enabled=1 to enable)"))
    print(f"check: {'ok' if ok else 'FAILED'}")
    return EXIT_OK if ok else EXIT_INTERNAL


PROBE_EXAMPLES = """\
examples:
  kcmp-monitor probe 4242 4243                   which resources the two share
  kcmp-monitor probe --fd 4242:3 4243:5          the same open file description?
  kcmp-monitor probe --epoll 4242:6 4243:8:6     is 4242's fd 6 the target 6 of epoll 4243:8?
  kcmp-monitor probe --shared-files 4242 4243    every fd shared among these processes
  kcmp-monitor probe --shared-files --all --freeze --json
exit codes: 0 ok, 2 usage, 66 no such process or fd, 69 no kcmp in this kernel,
  77 not permitted (CAP_SYS_PTRACE or the same uid), 124 a kcmp call blocked, 130 interrupted
"""


def _fd_ref(text: str, parts: int) -> tuple[int, ...]:
    """PID:FD (or PID:EFD:TFD[:TOFF] for parts=3): non-negative integers."""
    words = text.split(":")
    if len(words) not in (parts, parts + 1 if parts == 3 else parts) or not all(
            w.isdigit() for w in words):
        shape = "PID:FD" if parts == 2 else "PID:EFD:TFD[:TOFF]"
        raise argparse.ArgumentTypeError(f"{text!r} is not {shape}")
    values = tuple(int(w) for w in words)
    return values + (0,) if parts == 3 and len(values) == 3 else values


def build_probe_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=f"{PROG} probe",
        description="Call kcmp directly (no BPF) to see which kernel resources processes "
                    "share, and which of their fds are the same open file description.",
        epilog=PROBE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pids", nargs="*", type=_positive_int, metavar="PID",
                        help="two processes (or threads) to compare; with --shared-files, any")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--fd", nargs=2, metavar=("PID1:FD1", "PID2:FD2"),
                      type=lambda t: _fd_ref(t, 2), help="compare two file descriptors")
    mode.add_argument("--epoll", nargs=2, metavar=("PID1:FD", "PID2:EFD:TFD[:TOFF]"),
                      help="is PID1's FD the target TFD registered in PID2's epoll EFD")
    mode.add_argument("--shared-files", action="store_true",
                      help="group every fd of the PIDs into shared open file descriptions")
    parser.add_argument("--all", action="store_true",
                        help="with --shared-files: every process on the machine")
    parser.add_argument("--freeze", action="store_true",
                        help="SIGSTOP the targets during the probe (always resumed) so the "
                             "answer is exact rather than a snapshot")
    parser.add_argument("--json", action="store_true", help="JSON instead of a table")
    parser.add_argument("--timeout", type=_seconds, default=5.0, metavar="SECONDS",
                        help="give up when one kcmp call blocks this long (default: 5)")
    return parser


def run_probe(args: argparse.Namespace) -> int:
    from . import probe, probeview
    from .jsonout import dumps
    from .kcmpcall import make_kcmp

    proc = probe.Proc()
    caller = probe.Caller(make_kcmp())
    if args.fd:
        (pid1, fd1), (pid2, fd2) = args.fd
        targets = [pid1, pid2]
        job = functools.partial(probe.probe_fd, pid1, fd1, pid2, fd2, caller, proc)
        view = (probeview.fd_json, probeview.fd_table)
    elif args.epoll:
        (pid1, fd), (pid2, efd, tfd, toff) = (_fd_ref(args.epoll[0], 2),
                                              _fd_ref(args.epoll[1], 3))
        targets = [pid1, pid2]
        job = functools.partial(probe.probe_epoll, pid1, fd, pid2, efd, tfd, toff, caller, proc)
        view = (probeview.epoll_json, probeview.epoll_table)
    elif args.shared_files:
        if args.all == bool(args.pids):
            raise UsageError("--shared-files takes PIDs or --all (not both)")
        targets = [p for p in proc.pids() if p != os.getpid()] if args.all else args.pids
        job = functools.partial(probe.shared_files, targets, caller, proc, strict=not args.all)
        view = (probeview.shared_json, probeview.shared_table)
    else:
        if len(args.pids) != 2 or args.all:
            raise UsageError("give two PIDs, or --fd, --epoll or --shared-files")
        targets = args.pids
        job = functools.partial(probe.probe_pair, *args.pids, caller, proc)
        view = (probeview.pair_json, probeview.pair_table)

    def interrupted(_signum, _frame):
        raise KeyboardInterrupt  # unwinds through --freeze, which resumes the targets

    signal.signal(signal.SIGTERM, interrupted)
    with probe.frozen(targets, proc, strict=not args.all) if args.freeze else \
            contextlib.nullcontext():
        report = probe.run_watched(job, caller, args.timeout)
    if args.shared_files:
        report.calls = caller.calls
    as_json, as_table = view
    print(dumps(as_json(report, args.freeze)) if args.json else as_table(report, args.freeze))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    sys.stdout.reconfigure(errors="backslashreplace")
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["probe"]:
            return run_probe(build_probe_parser().parse_args(argv[1:]))
        args = build_parser().parse_args(argv)
        return run(args)
    except MonitorError as exc:
        # Messages may quote user input or kernel text: one line, terminal-safe.
        sys.stderr.write(f"{PROG}: error: {escape(str(exc))}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): leave quietly, without flushing into the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
