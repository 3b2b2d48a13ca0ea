"""The command line, the program's boundary: flags parsed into a run plan, then each failure
mapped to one line and an exit code."""

from __future__ import annotations

import argparse
import errno
import io
import os
import sys
from collections.abc import Sequence

from . import PROG, __version__, plan
from .errors import (
    EXIT_INTERRUPTED,
    EXIT_IOERR,
    EXIT_OK,
    MonitorError,
    OutputFailed,
    UsageError,
)
from .escape import escape
from .parsers import build_detect_parser, build_parser, build_probe_parser

_STDOUT_CLOSED = ("standard output is closed: what this prints has nowhere to go (redirect it, "
                  "e.g. >/dev/null)")
# What a write to a full, broken or closed output fails with.
_OUTPUT_FAULTS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EBADF}


def run(the_plan: plan.Plan) -> int:
    """The monitor (imported here: --help and usage errors need none of it)."""
    from .wiring import run as run_monitor

    return run_monitor(the_plan)


def run_detect(args: argparse.Namespace) -> int:
    """`detect` (imported here, like the monitor)."""
    from .replay import run as replay

    return replay(args.files, args.rules, args.output, args.print_rules)


def run_probe(args: argparse.Namespace) -> int:
    """The probe (imported here, like the monitor)."""
    from .probe.run import Request, run as probe

    return probe(Request(**vars(args)))


def _reopen_closed(fd: int, name: str) -> bool:
    """A standard stream closed at start (`>&-`) gets /dev/null in its place, so that no file
    opened later takes its number and receives what was meant for it. Whether it was."""
    if getattr(sys, name) is not None:
        return False
    _devnull_onto(fd)
    setattr(sys, name, open(fd, "w", closefd=False))
    return True


def _devnull_onto(fd: int) -> None:
    null = os.open(os.devnull, os.O_WRONLY)
    if null != fd:
        os.dup2(null, fd)
        os.close(null)


def _needs_stdout(argv: list[str], args: argparse.Namespace | None) -> bool:
    if argv[:1] in (["probe"], ["detect"]) or {"-h", "--help"} & set(argv):
        return True
    return args is not None and (args.trace or args.check or args.version)


def main(argv: Sequence[str] | None = None) -> int:
    _reopen_closed(2, "stderr")
    stdout_closed = _reopen_closed(1, "stdout")
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if stdout_closed and _needs_stdout(argv, None):
            raise UsageError(_STDOUT_CLOSED)
        if argv[:1] == ["probe"]:
            return run_probe(build_probe_parser().parse_args(argv[1:]))
        if argv[:1] == ["detect"]:
            return run_detect(build_detect_parser().parse_args(argv[1:]))
        args = build_parser().parse_args(argv)
        if stdout_closed and _needs_stdout(argv, args):
            raise UsageError(_STDOUT_CLOSED)
        if args.version:
            print(f"{PROG} {__version__}")
            return EXIT_OK
        code = run(plan.from_flags(vars(args)))
        sys.stdout.flush()  # what is still buffered: its fault is this run's too
        return code
    except BrokenPipeError:
        # The reader went away (`| head`): leave quietly, without flushing into the closed pipe.
        _null_stdout()
        return EXIT_OK
    except OSError as exc:
        if exc.filename is not None or exc.errno not in _OUTPUT_FAULTS:
            raise
        _null_stdout()
        sys.stderr.write(f"{PROG}: error: could not write the output: {exc.strerror}\n")
        return EXIT_IOERR
    except OutputFailed as exc:
        _null_stdout()
        sys.stderr.write(f"{PROG}: error: {escape(str(exc))}\n")
        return exc.exit_code
    except MonitorError as exc:
        # Messages may quote user input or kernel text: one line, terminal-safe.
        sys.stderr.write(f"{PROG}: error: {escape(str(exc))}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return EXIT_INTERRUPTED


def _null_stdout() -> None:
    """/dev/null in place of a stdout that cannot be written, so that the interpreter's last
    flush of what is still buffered fails no more."""
    _devnull_onto(sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
