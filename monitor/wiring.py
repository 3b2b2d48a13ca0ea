"""What the run plan names, built and run: the daemon, the console, or both from one process
and one set of attached programs."""

from __future__ import annotations

import logging
import signal
import sys
from dataclasses import replace

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
from .exporter.access import Access
from .exporter.check import check
from .exporter.httpd import MetricsServer
from .flags import flag
from .kernel.kcmp import KcmpProgram
from .kernel.options import ProgramOptions
from .plan import EventsFile, Plan
from .policy.types import Policy
from .sinks import logs
from .sinks.console import ConsoleSink, start_notes, exit_line
from .sinks.eventfile import FileSink, RotatingLines
from .sinks.jsonout import JsonSink
from .sinks.logs import logfmt
from .sinks.permlog import (
    ENFORCEMENT_LINES_PER_S,
    FINDINGS_PER_S,
    EnforcementLog,
    FindingLog,
    PermissionLog,
)
from .trace import Sink, Tracer, signatures

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


def kernel_options(plan: Plan, detector: Detector | None,
                   policy: Policy | None = None) -> ProgramOptions:
    """The plan's program, with the fd sweep's thresholds the rules give (where it runs) and
    the rule file's policy (a dry run unless --enforce on). A 32-bit call's entry is hooked
    wherever a policy is: it is where the policy decides."""
    options = plan.program
    if policy is not None and policy.rules:
        options = replace(options, policy=policy, enforce=plan.enforce == "on",
                          compat_entry=options.compat)
    elif plan.enforce is not None:
        raise UsageError(f"{flag('enforce')}: {flag('rules')} {plan.rules} has no policy "
                         "rules to apply (see the README: Stopping calls)")
    elif plan.rules is not None and not plan.signatures:
        raise UsageError(f"{flag('rules')} {plan.rules} configures the signatures, which do "
                         f"not run here, and has no policy (add {flag('detect')}, or leave "
                         f"out {flag('no_detect')})")
    sweep = next((s for s in detector.signatures if isinstance(s, FdSweep)), None) \
        if detector is not None and plan.sweep else None
    if sweep is None:
        return options
    return replace(options, sweep=(int(sweep.params["distinct_fds"]),
                                   sweep.params["window_s"]))


def _sinks(plan: Plan, program: KcmpProgram, events: RotatingLines | None,
           runtime: ContainerRuntime | None) -> list[Sink]:
    """The trace stream's sink (console or JSON), then the event file's."""
    sinks: list[Sink] = []
    if plan.trace == "json":
        sinks.append(JsonSink(sys.stdout, sys.stderr, runtime))
    elif plan.trace is not None:
        sinks.append(ConsoleSink(sys.stdout, sys.stderr, runtime, program.home))
    if events is not None:
        sinks.append(FileSink(events, runtime))
    return sinks


def _reader(plan: Plan, program: KcmpProgram) -> ProcReader:
    proc = ProcReader(sockets=SocketResolver(), netns=NetnsNames(), kernel=program.procs,
                      others_paths=plan.others_paths, cgroups=CgroupPaths(cgroup2_mount()))
    if program.procs is not None:
        # Processes started before the program: the fork hook never saw them.
        program.procs.remember(proc.fs.existing())
        program.procs.remember_numbers(proc.fs.numbered())
    return proc


def run(plan: Plan) -> int:
    # The console alone keeps stderr for losses and warnings; a daemon also says what it does.
    logs.setup(level=logging.INFO if plan.exporter is not None else logging.WARNING)
    events = _open_events_file(plan.events)
    # A bad rule file or web configuration is said before anything attaches.
    found, policy = rules.load_all(plan.rules) if plan.signatures or plan.rules else ([], None)
    detector = Detector(found) if plan.signatures else None
    access = Access(plan.exporter.web_config) \
        if plan.exporter is not None and plan.exporter.web_config else None
    stop = StopFlag()
    with KcmpProgram(kernel_options(plan, detector, policy)) as program:
        if plan.check:
            return check(program, None if access is None else access.config)
        # Containers are named by their runtimes where one answers (only the streams print).
        # Read now, while root: an exporter that becomes nobody keeps Docker's event stream
        # open but can look up no more.
        runtime = ContainerRuntime() if plan.containers else None
        sinks = _sinks(plan, program, events, runtime)
        tracer = _tracer(plan, program, runtime, detector, sinks)
        server = _server(plan, program, tracer, runtime, detector, access)
        caps.drop_after_attach(plan.keeps_root, stay_root=plan.stays_root,
                               rereads=() if access is None else access.config.files)
        if runtime is not None:
            runtime.start()
        if server is not None:
            server.start()
            log.info(_exporting(plan, program, server))
        daemon.notify("READY=1")
        failed = _trace(tracer, sinks, program, stop)
        daemon.notify("STOPPING=1")
        if server is not None:
            server.shutdown()
    if events is not None:
        events.close()
    if plan.trace is not None:
        sys.stderr.write(exit_line(tracer.summary) + "\n")
    if failed is not None:
        raise failed
    return EXIT_OK


def _tracer(plan: Plan, program: KcmpProgram, runtime: ContainerRuntime | None,
            detector: Detector | None, sinks: list[Sink]) -> Tracer:
    """The loop, with the logs the daemon writes where no stream prints (permission
    failures, findings, the policy's calls)."""
    return Tracer(
        program, _reader(plan, program), sinks=sinks,
        eperm_log=(PermissionLog(rate=plan.eperm_log_rate, runtime=runtime)
                   if plan.eperm_log_rate else None),
        observer=None if detector is None else signatures(detector, runtime),
        # The exporter's findings are log lines (and lines of its event file, if any).
        finding_logs=[FindingLog(FINDINGS_PER_S)] if plan.findings_logged else [],
        count_context=plan.exporter is not None and plan.exporter.context,
        policy=program.policy,
        enforcement_log=(EnforcementLog(ENFORCEMENT_LINES_PER_S, runtime=runtime)
                         if program.policy is not None and plan.trace is None else None))


def _server(plan: Plan, program: KcmpProgram, tracer: Tracer,
            runtime: ContainerRuntime | None, detector: Detector | None,
            access: Access | None) -> MetricsServer | None:
    """The /metrics server, bound (a port below 1024 needs CAP_NET_BIND_SERVICE, which goes
    after attach) but not yet serving."""
    if plan.exporter is None:
        return None
    registry = daemon.build_registry(
        program, (lambda: tracer.summary) if plan.program.trace else None,
        runtime if runtime is not None and runtime.available else None, detector,
        None if access is None else access.refusals, program.policy)
    return daemon.listen(registry, plan.exporter.address, plan.exporter.limits, access)


def _exporting(plan: Plan, program: KcmpProgram, server: MetricsServer) -> str:
    assert plan.exporter is not None
    return logfmt(msg="exporting kcmp metrics", address=str(plan.exporter.address),
                  web=None if server.access is None else server.access.config.describe(),
                  hooks="fentry" if program.fentry else "tracepoint",
                  no_fentry=program.fentry_error,
                  compat=program.compat, compat_error=program.compat_error,
                  context=plan.exporter.context,
                  policy=None if program.policy is None else program.policy.describe(),
                  events_file=None if plan.events is None else plan.events.path,
                  kernel=",".join(program.kernel_on) or None,
                  **{f"no_{feature}": reason for feature, reason in program.kernel_off.items()})


def _trace(tracer: Tracer, sinks: list[Sink], program: KcmpProgram,
           stop: StopFlag) -> OutputFailed | None:
    """The loop until stopped; what made the output fail, if anything did."""
    try:
        notes = start_notes(program)
        for sink in sinks:
            sink.start(notes)
        tracer.run(stop)
    except BrokenPipeError:  # the reader went away (`| head`): not a fault
        pass
    except OutputStalled as exc:
        return exc
    except OSError as exc:  # a full disk, a closed or faulty output
        return OutputFailed(f"could not write the output: {exc.strerror or exc}")
    finally:
        stop.done()
    return None


def _open_events_file(events: EventsFile | None) -> RotatingLines | None:
    """Opened before anything is attached (and while root): a path that cannot be written is
    a usage error."""
    if events is None:
        return None
    try:
        return RotatingLines(events.path, events.max_bytes, events.backups, events.compress)
    except OSError as exc:
        raise UsageError(f"{flag('events_file')} {events.path}: {exc.strerror}") from None
