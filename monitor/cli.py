"""The command line: parses flags, builds the pieces, maps failures to one line and an exit code."""

from __future__ import annotations

import argparse
import os
import pwd
import signal
import sys
from typing import NoReturn
from collections.abc import Sequence

from . import __version__, abi
from .errors import EXIT_OK, MonitorError, UsageError
from .escape import escape

PROG = "kcmp-monitor"
COMM_MAX = 15  # TASK_COMM_LEN - 1: the kernel keeps no more of a process name

EXAMPLES = """\
examples:
  kcmp-monitor --trace                      every kcmp call on the machine
  kcmp-monitor --trace --errors-only        only calls that failed
  kcmp-monitor --trace --comm criu --type FILE,EPOLL_TFD
  kcmp-monitor --trace --uid 1000 --output json | jq .
exit codes: 0 ok, 2 usage, 69 kernel feature or dependency missing, 70 internal, 77 no permission
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
                        help="print every kcmp call live, strace-style (needs root)")
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
    tuning.add_argument("--ringbuf-pages", type=_ringbuf_pages, default=256,
                        help="ring buffer size in pages, a power of two (default: 256)")
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


def run_trace(args: argparse.Namespace) -> int:
    # Imported here so that --help and usage errors never need BCC.
    from .console import ConsoleSink
    from .enrich import ProcReader
    from .jsonout import JsonSink
    from .loader import Filters, KcmpProgram, ProgramOptions
    from .trace import Tracer

    stop = _StopFlag()
    filters = Filters(tgid=args.pid, uid=args.uid, comm=args.comm, types=args.types,
                      errors_only=args.errors_only)
    options = ProgramOptions(filters=filters, ringbuf_pages=args.ringbuf_pages,
                             compat=args.compat)
    sink_type = JsonSink if args.output == "json" else ConsoleSink
    sink = sink_type(sys.stdout, sys.stderr)
    with KcmpProgram(options) as program:
        notes: list[str] = []
        if program.compat:
            notes.append("32-bit: on, taxes every syscall; --no-compat")
        elif program.compat_error:
            notes.append(f"32-bit callers not captured: {program.compat_error}")
        else:
            notes.append("32-bit: off")
        tracer = Tracer(program, sink, ProcReader())
        sink.start(notes)
        summary = tracer.run(stop)
    sys.stderr.write(f"{PROG}: {summary.events} calls traced, {summary.lost} lost"
                     + (f", {summary.unpaired} without entry (in-flight map full)"
                        if summary.unpaired else "") + "\n")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    sys.stdout.reconfigure(errors="backslashreplace")
    try:
        args = build_parser().parse_args(argv)
        if not args.trace:
            raise UsageError("choose a mode: --trace (see --help)")
        return run_trace(args)
    except MonitorError as exc:
        # Messages may quote user input or kernel text: one line, terminal-safe.
        sys.stderr.write(f"{PROG}: error: {escape(str(exc))}\n")
        return exc.exit_code
    except BrokenPipeError:
        # The reader went away (`| head`): leave quietly, without flushing into the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
