"""`kcmp-monitor probe`: from the parsed command line to a job, its answer, and its view."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import EXIT_OK, UsageError
from ..flags import flag
from ..sinks.jsonout import dumps
from . import logic, views
from .freeze import frozen
from .kcmpcall import make_kcmp


@dataclass(frozen=True)
class Request:
    """What `probe` was asked, as parsed."""
    pids: list[int]
    fd: tuple[tuple[int, int], tuple[int, int]] | None = None
    epoll: tuple[tuple[int, int], tuple[int, int, int, int]] | None = None
    shared_files: bool = False
    all: bool = False
    freeze: bool = False
    json: bool = False
    timeout: float = 5.0


def run(args: Request) -> int:
    proc = logic.Proc()
    kcmp = logic.WatchedKcmp(make_kcmp())
    job: Callable[[], Any]
    as_json: Callable[[Any, bool], dict[str, Any]]
    as_table: Callable[[Any, bool], str]
    if (args.fd or args.epoll) and (args.pids or args.all):
        raise UsageError(f"{flag('fd') if args.fd else flag('epoll')} names its processes "
                         f"itself: drop the other PIDs and {flag('all')}")
    if args.fd:
        (pid1, fd1), (pid2, fd2) = args.fd
        targets = [pid1, pid2]
        job = functools.partial(logic.probe_fd, pid1, fd1, pid2, fd2, kcmp, proc)
        as_json, as_table = views.fd_json, views.fd_table
    elif args.epoll:
        (pid1, fd), (pid2, efd, tfd, toff) = args.epoll
        targets = [pid1, pid2]
        job = functools.partial(logic.probe_epoll, pid1, fd, pid2, efd, tfd, toff, kcmp, proc)
        as_json, as_table = views.epoll_json, views.epoll_table
    elif args.shared_files:
        if args.all == bool(args.pids):
            raise UsageError(f"{flag('shared_files')} takes PIDs or {flag('all')} (not both)")
        targets = [p for p in proc.pids() if p != os.getpid()] if args.all else args.pids
        job = functools.partial(logic.shared_files, targets, kcmp, proc, strict=not args.all)
        as_json, as_table = views.shared_json, views.shared_table
    else:
        if len(args.pids) != 2 or args.all:
            raise UsageError(f"give two PIDs, or {flag('fd')}, {flag('epoll')} or "
                             f"{flag('shared_files')}")
        targets = args.pids
        pid1, pid2 = args.pids
        job = functools.partial(logic.probe_pair, pid1, pid2, kcmp, proc)
        as_json, as_table = views.pair_json, views.pair_table

    def interrupted(_signum, _frame):
        raise KeyboardInterrupt  # unwinds through --freeze, which resumes the targets

    signal.signal(signal.SIGTERM, interrupted)
    with frozen(targets, proc, strict=not args.all) if args.freeze else \
            contextlib.nullcontext():
        report: Any = logic.run_watched(job, kcmp, args.timeout)
    if args.shared_files:
        report.calls = kcmp.calls
    print(dumps(as_json(report, args.freeze)) if args.json else as_table(report, args.freeze))
    return EXIT_OK
