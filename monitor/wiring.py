"""What the flags ask for, built and run: the daemon, the console, or both from one process and
one set of attached programs."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from . import caps
from .context.cgroups import CgroupPaths, cgroup2_mount
from .context.processes import ProcReader
from .context.sockets import NetnsNames, SocketResolver
from .errors import EXIT_OK
from .exporter import daemon
from .exporter.check import check
from .exporter.httpd import Limits
from .kernel.kcmp import Filters, KcmpProgram, ProgramOptions
from .sinks import logs
from .sinks.console import ConsoleSink, start_notes, exit_line
from .sinks.jsonout import JsonSink
from .sinks.logs import logfmt
from .sinks.permlog import PermissionLog
from .trace import Tracer

log = logging.getLogger("kcmp_monitor")


class StopFlag:
    """Set by SIGINT or SIGTERM; the loop checks it between polls."""

    def __init__(self) -> None:
        self.stopped = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._stop)

    def _stop(self, _signum, _frame) -> None:
        self.stopped = True

    def __call__(self) -> bool:
        return self.stopped


def program_options(args: argparse.Namespace, exporter: bool) -> ProgramOptions:
    filters = Filters(tgid=args.pid, uid=args.uid, comm=args.comm, types=args.types,
                      errors_only=args.errors_only)
    return ProgramOptions(filters=filters, ringbuf_pages=args.ringbuf_pages,
                          compat=args.compat, compat_entry=args.compat_timing,
                          trace=args.trace or args.context,
                          count=exporter or args.check,
                          log_eperm=exporter and args.eperm_log_rate > 0, btf=args.btf,
                          fold_ns=round(args.fold_window * 1e9) if args.trace and args.fold
                          else 0)


def run(args: argparse.Namespace) -> int:
    exporter = not args.trace or args.listen is not None
    # The console alone keeps stderr for losses and warnings; a daemon also says what it does.
    logs.setup(level=logging.INFO if exporter else logging.WARNING)
    address = daemon.parse_listen_address(args.listen or daemon.DEFAULT_ADDRESS)
    stop = StopFlag()
    options = program_options(args, exporter)
    with KcmpProgram(options) as program:
        if args.check:
            return check(program)
        proc = ProcReader(sockets=SocketResolver(), netns=NetnsNames(), kernel=program.procs,
                          cgroups=CgroupPaths(cgroup2_mount()))
        if program.procs is not None:
            # Processes started before the program: the fork hook never saw them.
            program.procs.remember(proc.fs.existing())
            program.procs.remember_numbers(proc.fs.numbered())
        sink: ConsoleSink | JsonSink | None = None
        if args.trace:
            sink = (JsonSink if args.output == "json" else ConsoleSink)(sys.stdout, sys.stderr)
        eperm_log = PermissionLog(rate=args.eperm_log_rate) if options.log_eperm else None
        tracer = Tracer(program, proc, sink=sink, eperm_log=eperm_log,
                        count_context=args.context)
        registry = None
        if exporter:
            registry = daemon.build_registry(
                program, (lambda: tracer.summary) if options.trace else None)
        caps.drop_after_attach(args.trace or args.context)
        limits = Limits(connections=args.max_connections, requests=args.max_requests,
                        read_timeout_s=args.read_timeout)
        server = daemon.serve(registry, address, limits) if registry is not None else None
        if sink is not None:
            sink.start(start_notes(program))
        if server is not None:
            log.info(logfmt(msg="exporting kcmp metrics", address=str(address),
                            compat=program.compat, compat_error=program.compat_error,
                            context=options.trace, kernel=",".join(program.kernel_on) or None,
                            **{f"no_{feature}": reason
                               for feature, reason in program.kernel_off.items()}))
        daemon.notify("READY=1")
        summary = tracer.run(stop)
        daemon.notify("STOPPING=1")
        if server is not None:
            server.shutdown()
    if args.trace:
        sys.stderr.write(exit_line(summary) + "\n")
    return EXIT_OK
