"""The command line's parsers: every flag of the monitor, `probe` and `detect`, with the types
that check their values. Spellings come from flags.FLAGS; the rules between flags are the run
plan's."""

from __future__ import annotations

import argparse
import os
import pwd
from typing import Any, NoReturn

from . import PROG, abi
from .errors import (
    EXIT_DATAERR,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_IOERR,
    EXIT_ADDRESS_IN_USE,
    EXIT_NO_SUCH,
    EXIT_NOPERM,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    UsageError,
)
from .exporter.httpd import DEFAULT_LIMITS
from .flags import FLAGS
from .kernel.btf import VMLINUX
from .kernel.folds import DEFAULT_WINDOW_S, MAX_WINDOW_S as MAX_FOLD_WINDOW_S
from .kernel.home import HOST
from .kernel.kinds import URGENT
from .kernel.options import HOOK_KINDS
from .policy.types import MODES
from .sinks.eventfile import DEFAULT_BACKUPS, DEFAULT_MAX_MB

COMM_MAX = 15  # TASK_COMM_LEN - 1: the kernel keeps no more of a process name
MAX_RINGBUF_PAGES = 1 << 16  # 256 MiB, and a quarter more for the priority lane

EXAMPLES = f"""\
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
exit codes: {EXIT_OK} ok, {EXIT_USAGE} usage, {EXIT_UNAVAILABLE} kernel feature or dependency \
missing, {EXIT_INTERNAL} internal,
  {EXIT_IOERR} output not written, {EXIT_ADDRESS_IN_USE} listen address in use, \
{EXIT_NOPERM} no permission
"""


def _add(parser: Any, name: str, **options: Any) -> None:
    """A flag, spelled as the table says, its value under name."""
    parser.add_argument(FLAGS[name], dest=name, **options)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see --help)")


def _digits(text: str) -> int:
    """ASCII digits only: int() would take "١٢", " 12" and "1_2" too (and refuse 5,000 digits:
    past 20, the value is only said to be too big)."""
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number")
    return int(text) if len(text) <= 20 else 1 << 70


def _positive_int(text: str, most: int = 1 << 31) -> int:
    if text.startswith("-") and text[1:].isascii() and text[1:].isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    value = _digits(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    if value > most:
        raise argparse.ArgumentTypeError(f"{text[:24]!r} is more than {most}")
    return value


def _backups(text: str) -> int:
    return _digits(text) if text == "0" else _positive_int(text, 1000)


def _pid_or_host(text: str) -> int | str:
    return HOST if text == HOST else _pid(text)


def _pid(text: str) -> int:
    """A pid the kernel can hold (PID_MAX_LIMIT)."""
    return _positive_int(text, abi.PID_MAX_LIMIT)


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


def _fold_window(text: str) -> float:
    value = _rate(text)
    if not 0 < value <= MAX_FOLD_WINDOW_S:
        raise argparse.ArgumentTypeError(
            f"a window is more than 0 and at most {MAX_FOLD_WINDOW_S:g} seconds")
    return value


def _uid(text: str) -> int:
    if text.isascii() and text.isdigit():
        value = _digits(text)
        if value > abi.UID_MAX:
            raise argparse.ArgumentTypeError(f"uid {text[:24]} is more than {abi.UID_MAX}")
        return value
    if not text or "\0" in text:
        raise argparse.ArgumentTypeError(f"no user {text!r}")
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
    value = _positive_int(text, MAX_RINGBUF_PAGES)
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
    # Not argparse's version action, which exits before the rest of the line is parsed.
    _add(parser, "version", action="store_true", help="print the version and exit")
    _add(parser, "trace", action="store_true",
         help="print every kcmp call live, strace-style, instead of exporting "
              "metrics (both, with --web.listen-address)")
    _add(parser, "listen", metavar="HOST:PORT",
         help="where to serve /metrics (default: 127.0.0.1:9041; "
              ":PORT for every interface)")
    limits = DEFAULT_LIMITS
    _add(parser, "max_connections", type=_positive_int,
         default=limits.connections, metavar="N",
         help="connections to /metrics open at once; beyond, the one idle "
              f"longest is closed (default: {limits.connections})")
    _add(parser, "max_requests", type=_positive_int,
         default=limits.requests, metavar="N",
         help=f"/metrics requests answered at once (default: {limits.requests})")
    _add(parser, "read_timeout", type=_seconds,
         default=limits.read_timeout_s, metavar="SECONDS",
         help="for a client to send its request "
              f"(default: {limits.read_timeout_s:g})")
    _add(parser, "web_config", metavar="PATH",
         help="TLS, client certificates, basic auth and headers for /metrics: the "
              "exporter-toolkit's web configuration file, as node_exporter's (re-read "
              "when it or a file it names changes)")
    _add(parser, "context", action="store_true",
         help="exporter: also stream every call to give it context and export "
              "kcmp_boundary_crossings_total (costs a stream; --trace does it "
              "for the traced calls)")
    _add(parser, "check", action="store_true",
         help="load and attach, report what works, and exit (0: all works)")
    _add(parser, "eperm_log_rate", type=_rate, default=10.0, metavar="LINES",
         help="permission failures logged per second at most, in bursts of "
              "up to 5x that (0: none; the counters count all; default: 10)")
    events = parser.add_argument_group(
        "event file (for a log shipper: JSON lines, rotated by size)")
    _add(events, "events_file", metavar="PATH",
         help="also write events there: with --trace every traced call, else "
              f"{URGENT}")
    _add(events, "events_file_max_size_mb", type=_positive_int,
         default=DEFAULT_MAX_MB, metavar="MB",
         help=f"rotate past this size (default: {DEFAULT_MAX_MB})")
    _add(events, "events_file_max_backups", type=_backups, default=DEFAULT_BACKUPS,
         metavar="N", help=f"rotated files kept (default: {DEFAULT_BACKUPS})")
    _add(events, "events_file_compress", action="store_true",
         help="gzip the rotated files but the newest")
    detect = parser.add_argument_group("detections (kcmp signatures; see the README)")
    _add(detect, "detect", action="store_true",
         help=f"exporter: run the signatures on the priority lane's calls "
              f"({URGENT}): findings to the log and kcmp_detections_total")
    _add(detect, "no_detect", action="store_true",
         help="--trace: run no signatures (they run on every traced call)")
    _add(detect, "rules", metavar="FILE",
         help="the rule file: which signatures run, thresholds, windows, "
              "allowlists, and the policy (default: the shipped one; `kcmp-monitor detect "
              "--print-rules` shows it)")
    _add(detect, "enforce", choices=MODES,
         help="the rule file's policy: dry-run marks the calls it would stop (the default "
              "where it has rules), on stops them (see the README: Stopping calls)")
    _add(parser, "own_paths_only", action="store_true",
         help="fd paths only for the caller's own fds: other processes' show as "
              "numbers (what a stream shipped elsewhere need not carry)")
    _add(parser, "output", choices=("text", "json"), default="text",
         help="text lines for people, or JSON lines (Tracee field names)")
    filters = parser.add_argument_group("filters (applied in the kernel)")
    _add(filters, "pid", type=_pid, help="only calls made by this process")
    _add(filters, "comm", type=_comm,
         help="only calls made by processes of this name (first 15 bytes)")
    _add(filters, "uid", type=_uid, help="only calls made by this user (name or uid)")
    _add(filters, "types", type=_types, default=frozenset(),
         help="only these types: names or numbers, comma-separated; "
              "'unknown' for invalid ones")
    _add(filters, "errors_only", action="store_true", help="only calls that failed")
    tuning = parser.add_argument_group("tuning")
    _add(tuning, "compat", action="store_false",
         help="do not capture 32-bit (int 0x80) callers; their hook runs on "
              "every syscall of the machine")
    _add(tuning, "compat_timing", action="store_true",
         help="on the tracepoints, time 32-bit calls and copy their epoll slot at "
              "entry: hooks every syscall's entry too, not only its exit (about "
              "twice the 32-bit capture's cost); on trampolines they always are")
    _add(tuning, "hooks", choices=HOOK_KINDS, default="auto",
         help="where kcmp is caught: fentry, BPF trampolines on the kcmp syscall functions "
              "(no cost to any other syscall; Linux 5.5+ with BTF, where the kernel allows "
              "them), tracepoint, the syscall tracepoints (every syscall of the machine takes "
              "their slow path), or auto: fentry where the kernel allows it (default)")
    _add(tuning, "fold", action="store_false",
         help="--trace: stream every call, instead of a thread's identical "
              "calls folded into one record with their count")
    _add(tuning, "fold_window", type=_fold_window, default=DEFAULT_WINDOW_S,
         metavar="SECONDS",
         help="--trace: how long after a call the same call from its thread "
              f"is folded into it (default: {DEFAULT_WINDOW_S:g}, at most "
              f"{MAX_FOLD_WINDOW_S:g})")
    _add(tuning, "ringbuf_pages", type=_ringbuf_pages, default=1024,
         help="ring buffer size in pages, a power of two (default: 1024 = 4 MiB, "
              f"at most {MAX_RINGBUF_PAGES})")
    _add(tuning, "btf", metavar="PATH", default=VMLINUX,
         help="the running kernel's BTF, where the program finds the kernel "
              f"structs it reads (default: {VMLINUX}); without it, caller "
              "context comes from /proc")
    _add(tuning, "namespaces_of", metavar="PID|host", type=_pid_or_host,
         help="hold callers to this process's pid, mount and network namespaces "
              "instead of the monitor's own (the namespaced counters, the "
              "console's [ns ...]); 'host': the kernel's initial ones, for a "
              "monitor in a container sharing the host's pid namespace (needs "
              "CAP_SYS_PTRACE at start)")
    return parser


PROBE_EXAMPLES = f"""\
examples:
  kcmp-monitor probe 4242 4243                   which resources the two share
  kcmp-monitor probe --fd 4242:3 4243:5          the same open file description?
  kcmp-monitor probe --epoll 4242:6 4243:8:6     is 4242's fd 6 the target 6 of epoll 4243:8?
  kcmp-monitor probe --shared-files 4242 4243    every fd shared among these processes
  kcmp-monitor probe --shared-files --all --freeze --json
exit codes: {EXIT_OK} ok, {EXIT_USAGE} usage, {EXIT_NO_SUCH} no such process or fd, \
{EXIT_UNAVAILABLE} no kcmp in this kernel,
  {EXIT_NOPERM} not permitted (CAP_SYS_PTRACE or the same uid), {EXIT_TIMEOUT} a kcmp call \
blocked, {EXIT_INTERRUPTED} interrupted
"""


DETECT_EXAMPLES = f"""\
examples:
  kcmp-monitor detect events.json              findings in a recorded JSON stream
  kcmp-monitor detect events.json.2.gz         an event file's gzipped backup
  kcmp-monitor --trace --output json | kcmp-monitor detect -
  kcmp-monitor detect --rules mine.yaml events.json   try a rule file before deploying it
  kcmp-monitor detect --print-rules > mine.yaml       the shipped rules, to start from

exit codes: {EXIT_OK} ok (findings or none), {EXIT_USAGE} usage or a bad rule file, \
{EXIT_NO_SUCH} no such file,
  {EXIT_DATAERR} lines that were not events (skipped, counted; the findings of the rest are \
printed)"""


def _mode_parser(mode: str, description: str, epilog: str) -> _Parser:
    return _Parser(prog=f"{PROG} {mode}", description=description, epilog=epilog,
                   formatter_class=argparse.RawDescriptionHelpFormatter)


def build_detect_parser() -> argparse.ArgumentParser:
    parser = _mode_parser(
        "detect", "Run the kcmp signatures over recorded events (JSON lines from --output "
        "json or --events-file) and print their findings.", DETECT_EXAMPLES)
    parser.add_argument("files", nargs="*", metavar="FILE",
                        help="JSON lines, gzipped or not; - for standard input")
    _add(parser, "rules", metavar="FILE", help="the rule file (default: the shipped)")
    _add(parser, "output", choices=("json", "text"), default="json",
         help="findings as JSON lines (Tracee's finding shape) or marked lines")
    _add(parser, "print_rules", action="store_true",
         help="print the shipped rule file and exit")
    return parser


def _fd_ref(text: str, parts: int) -> tuple[int, ...]:
    """PID:FD (or PID:EFD:TFD[:TOFF] for parts=3): a pid the kernel can hold, then fds and an
    offset of 32 bits, as kcmp reads them."""
    words = text.split(":")
    shape = "PID:FD" if parts == 2 else "PID:EFD:TFD[:TOFF]"
    if len(words) not in (parts, parts + 1 if parts == 3 else parts) or not all(
            w.isascii() and w.isdigit() and len(w) <= 20 for w in words):
        raise argparse.ArgumentTypeError(f"{text!r} is not {shape}")
    values = tuple(int(w) for w in words)
    if not 0 < values[0] <= abi.PID_MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"{text!r}: the pid must be 1 to {abi.PID_MAX_LIMIT}")
    if any(v >= 1 << 32 for v in values[1:]):
        raise argparse.ArgumentTypeError(f"{text!r}: fds and offsets are 32-bit")
    return values + (0,) if parts == 3 and len(values) == 3 else values


class _EpollRefs(argparse.Action):
    """--epoll PID1:FD PID2:EFD:TFD[:TOFF]: two shapes, so one type cannot parse both."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        try:
            refs = (_fd_ref(values[0], 2), _fd_ref(values[1], 3))
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentError(self, str(exc)) from None
        setattr(namespace, self.dest, refs)


def build_probe_parser() -> argparse.ArgumentParser:
    parser = _mode_parser(
        "probe", "Call kcmp directly (no BPF) to see which kernel resources processes share, "
        "and which of their fds are the same open file description.", PROBE_EXAMPLES)
    parser.add_argument("pids", nargs="*", type=_pid, metavar="PID",
                        help="two processes (or threads) to compare; with --shared-files, any")
    mode = parser.add_mutually_exclusive_group()
    _add(mode, "fd", nargs=2, metavar=("PID1:FD1", "PID2:FD2"),
         type=lambda t: _fd_ref(t, 2), help="compare two file descriptors")
    _add(mode, "epoll", nargs=2, metavar=("PID1:FD", "PID2:EFD:TFD[:TOFF]"),
         action=_EpollRefs,
         help="is PID1's FD the target TFD registered in PID2's epoll EFD")
    _add(mode, "shared_files", action="store_true",
         help="group every fd of the PIDs into shared open file descriptions")
    _add(parser, "all", action="store_true",
         help="with --shared-files: every process on the machine")
    _add(parser, "freeze", action="store_true",
         help="SIGSTOP the targets during the probe (always resumed) so the "
              "answer is exact rather than a snapshot")
    _add(parser, "json", action="store_true", help="JSON instead of a table")
    _add(parser, "timeout", type=_seconds, default=5.0, metavar="SECONDS",
         help="give up when one kcmp call blocks this long (default: 5)")
    return parser
