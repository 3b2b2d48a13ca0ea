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
from .context.runtime import ContainerRuntime
from .context.sockets import NetnsNames, SocketResolver
from .detect import rules
from .detect.engine import Detector
from .detect.signatures import FdSweep
from .errors import EXIT_OK, OutputFailed, OutputStalled, UsageError
from .exporter import daemon
from .exporter.check import check
from .exporter.httpd import Limits
from .kernel.kcmp import Filters, KcmpProgram, ProgramOptions
from .sinks import logs
from .sinks.console import ConsoleSink, start_notes, exit_line
from .sinks.eventfile import FileSink, RotatingLines, Tee
from .sinks.jsonout import JsonSink
from .sinks.logs import logfmt
from .sinks.permlog import FINDINGS_PER_S, FindingLog, PermissionLog
from .trace import Tracer

log = logging.getLogger("kcmp_monitor")


# Every signal whose default would end the process without its summary.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
                signal.SIGALRM)
STOP_WITHIN_S = 1.5  # and about 0.5 s more to detach: out within 2 s


class StopFlag:
    """Set by any of STOP_SIGNALS; the loop checks it between polls. A stop not come about
    STOP_WITHIN_S later (a write blocked on a reader that reads nothing) is forced: the alarm
    then raises OutputStalled out of whatever waits."""

    def __init__(self) -> None:
        self.stopped = False
        self._armed = False
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._stop)

    def _stop(self, signum, _frame) -> None:
        if self._armed and signum == signal.SIGALRM:
            self._armed = False
            raise OutputStalled(f"stopped with output unwritten: nothing read it for "
                                f"{STOP_WITHIN_S:g} s")
        if not self.stopped:
            self.stopped = True
            self._armed = True
            signal.setitimer(signal.ITIMER_REAL, STOP_WITHIN_S)

    def done(self) -> None:
        """The loop has ended: nothing is left to force."""
        self._armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)

    def __call__(self) -> bool:
        return self.stopped


def program_options(args: argparse.Namespace, exporter: bool,
                    detector: Detector | None = None) -> ProgramOptions:
    filters = Filters(tgid=args.pid, uid=args.uid, comm=args.comm, types=args.types,
                      errors_only=args.errors_only)
    # The exporter's event file and its signatures: the priority lane's kinds of call,
    # streamed for them alone; the fd sweep, which no such call shows, counted in the kernel.
    urgent = not args.trace and (args.events_file is not None or args.detect)
    fd_sweep = next((s for s in detector.signatures if isinstance(s, FdSweep)), None) \
        if detector is not None and args.detect else None
    return ProgramOptions(filters=filters, ringbuf_pages=args.ringbuf_pages,
                          compat=args.compat, compat_entry=args.compat_timing,
                          trace=args.trace or args.context or urgent,
                          urgent_only=urgent and not args.context,
                          sweep=None if fd_sweep is None else (
                              int(fd_sweep.params["distinct_fds"]), fd_sweep.params["window_s"]),
                          count=exporter or args.check,
                          log_eperm=exporter and args.eperm_log_rate > 0, btf=args.btf,
                          home=args.namespaces_of,
                          fold_ns=round(args.fold_window * 1e9) if args.trace and args.fold
                          else 0)


def run(args: argparse.Namespace) -> int:
    exporter = not args.trace or args.listen is not None
    # The console alone keeps stderr for losses and warnings; a daemon also says what it does.
    logs.setup(level=logging.INFO if exporter else logging.WARNING)
    address = daemon.parse_listen_address(
        daemon.DEFAULT_ADDRESS if args.listen is None else args.listen)
    events = _open_events_file(args)
    # A bad rule file is said before anything attaches.
    detector = (Detector(rules.load(args.rules))
                if args.detect or args.trace and not args.no_detect else None)
    stop = StopFlag()
    options = program_options(args, exporter, detector)
    with KcmpProgram(options) as program:
        if args.check:
            return check(program)
        proc = ProcReader(sockets=SocketResolver(), netns=NetnsNames(), kernel=program.procs,
                          others_paths=not args.own_paths_only,
                          cgroups=CgroupPaths(cgroup2_mount()))
        if program.procs is not None:
            # Processes started before the program: the fork hook never saw them.
            program.procs.remember(proc.fs.existing())
            program.procs.remember_numbers(proc.fs.numbered())
        sink: ConsoleSink | JsonSink | FileSink | Tee | None = None
        # Containers are named by their runtimes where one answers (only the streams print).
        # Read now, while root: an exporter that becomes nobody keeps Docker's event stream
        # open but can look up no more.
        runtime = (ContainerRuntime() if args.trace or events is not None or options.log_eperm
                   or detector is not None else None)
        if args.trace:
            sink = (JsonSink(sys.stdout, sys.stderr, runtime) if args.output == "json"
                    else ConsoleSink(sys.stdout, sys.stderr, runtime, program.home))
        if events is not None:
            sink = (FileSink(events, runtime) if sink is None
                    else Tee(sink, FileSink(events, runtime)))
        eperm_log = (PermissionLog(rate=args.eperm_log_rate, runtime=runtime)
                     if options.log_eperm else None)
        # The exporter's findings are log lines (and lines of its event file, if any).
        finding_log = (FindingLog(FINDINGS_PER_S) if detector is not None and not args.trace
                       else None)
        tracer = Tracer(program, proc, sink=sink, eperm_log=eperm_log,
                        count_context=args.context, detector=detector, runtime=runtime,
                        finding_log=finding_log)
        registry = None
        if exporter:
            registry = daemon.build_registry(
                program, (lambda: tracer.summary) if options.trace else None,
                runtime if runtime is not None and runtime.available else None, detector)
        limits = Limits(connections=args.max_connections, requests=args.max_requests,
                        read_timeout_s=args.read_timeout)
        # Bound before the capabilities go: a port below 1024 needs CAP_NET_BIND_SERVICE.
        server = daemon.listen(registry, address, limits) if registry is not None else None
        # Rotating makes files where the event file is: the exporter then stays uid 0.
        caps.drop_after_attach(args.trace or args.context, stay_root=events is not None)
        if runtime is not None:
            runtime.start()
        if server is not None:
            server.start()
            log.info(logfmt(msg="exporting kcmp metrics", address=str(address),
                            compat=program.compat, compat_error=program.compat_error,
                            context=args.context, events_file=args.events_file,
                            kernel=",".join(program.kernel_on) or None,
                            **{f"no_{feature}": reason
                               for feature, reason in program.kernel_off.items()}))
        daemon.notify("READY=1")
        failed: OutputFailed | None = None
        try:
            if sink is not None:
                sink.start(start_notes(program))
            tracer.run(stop)
        except BrokenPipeError:  # the reader went away (`| head`): not a fault
            pass
        except OutputStalled as exc:
            failed = exc
        except OSError as exc:  # a full disk, a closed or faulty output
            failed = OutputFailed(f"could not write the output: {exc.strerror or exc}")
        finally:
            stop.done()
        daemon.notify("STOPPING=1")
        if server is not None:
            server.shutdown()
    if events is not None:
        events.close()
    if args.trace:
        sys.stderr.write(exit_line(tracer.summary) + "\n")
    if failed is not None:
        raise failed
    return EXIT_OK


def _open_events_file(args: argparse.Namespace) -> RotatingLines | None:
    """Opened before anything is attached (and while root): a path that cannot be written is
    a usage error."""
    if args.events_file is None:
        return None
    try:
        return RotatingLines(args.events_file, args.events_file_max_size_mb << 20,
                             args.events_file_max_backups, args.events_file_compress)
    except OSError as exc:
        raise UsageError(f"--events-file {args.events_file}: {exc.strerror}") from None

