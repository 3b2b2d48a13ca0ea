"""The run plan: every mode decision made once, from the parsed flags, with the rules between
flags checked where it is made. What runs is built from the plan alone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

from .errors import UsageError
from .exporter.daemon import DEFAULT_ADDRESS, ListenAddress, parse_listen_address
from .exporter.httpd import Limits
from .flags import flag
from .kernel.folds import DEFAULT_WINDOW_S
from .kernel.options import Filters, ProgramOptions
from .sinks.eventfile import DEFAULT_BACKUPS, DEFAULT_MAX_MB

Flags = Mapping[str, Any]  # the parsed flags, by the names of flags.FLAGS


@dataclass(frozen=True)
class EventsFile:
    path: str
    max_bytes: int
    backups: int
    compress: bool


@dataclass(frozen=True)
class Exporter:
    address: ListenAddress
    limits: Limits
    context: bool  # every call streamed for its context, crossings counted (--context)
    web_config: str | None = None  # TLS and authentication (--web.config.file)


@dataclass(frozen=True)
class Plan:
    program: ProgramOptions  # the kernel side; its sweep is the rules' (see sweep)
    trace: str | None = None  # the trace stream's form, "text" or "json"; None: no stream
    exporter: Exporter | None = None
    events: EventsFile | None = None
    check: bool = False  # load, attach, say what works, exit
    signatures: bool = False  # the detections run on the calls that reach user space
    rules: str | None = None  # their rule file, and the policy's (None: the shipped one)
    enforce: str | None = None  # the policy: "dry-run", "on"; None: as the file has it
    sweep: bool = False  # the fd sweep is counted in the kernel (no streamed call shows it)
    eperm_log_rate: float = 0.0  # lines a second of the EPERM log; 0: no log
    others_paths: bool = True  # fd paths of other processes than the caller
    containers: bool = False  # the runtimes name the containers the output shows

    @property
    def findings_logged(self) -> bool:
        """The exporter's findings go to the log: no trace stream prints them."""
        return self.signatures and self.trace is None

    @property
    def stays_root(self) -> str | None:
        """Why the exporter stays uid 0, if it must: rotating the event file makes files as
        root did."""
        return "it writes the event file" if self.events is not None else None

    @property
    def keeps_root(self) -> bool:
        """Other users' /proc is read for context after attach."""
        return self.trace is not None or self.exporter is not None and self.exporter.context


def _shaping_the_stream(f: Flags) -> list[str]:
    return [flag(name) for name, given in (
        ("pid", f["pid"] is not None), ("comm", f["comm"] is not None),
        ("uid", f["uid"] is not None), ("types", f["types"]), ("errors_only", f["errors_only"]),
        ("output", f["output"] != "text"), ("fold", not f["fold"]),
        ("own_paths_only", f["own_paths_only"]),
        ("fold_window", f["fold_window"] != DEFAULT_WINDOW_S)) if given]


def _signatures_run(f: Flags) -> bool:
    return f["detect"] or f["trace"] and not f["no_detect"]


# The rules between flags that a parser cannot state: (broken when, what to say).
RULES: tuple[tuple[Callable[[Flags], bool], Callable[[Flags], str]], ...] = (
    (lambda f: not f["trace"] and bool(_shaping_the_stream(f)),
     lambda f: f"{', '.join(_shaping_the_stream(f))} shape the {flag('trace')} stream; the "
               f"exporter counts every call (add {flag('trace')})"),
    (lambda f: f["events_file"] is None and (
        f["events_file_compress"] or f["events_file_max_size_mb"] != DEFAULT_MAX_MB
        or f["events_file_max_backups"] != DEFAULT_BACKUPS),
     lambda _: f"the {flag('events_file')}-* flags shape the {flag('events_file')}, which is "
             "not given"),
    (lambda f: f["events_file"] is not None and f["check"],
     lambda _: f"{flag('check')} writes no events: leave out {flag('events_file')}"),
    (lambda f: not f["fold"] and f["fold_window"] != DEFAULT_WINDOW_S,
     lambda _: f"{flag('fold_window')} sets how calls are folded, which {flag('fold')} turns "
             "off"),
    (lambda f: f["compat_timing"] and not f["compat"],
     lambda _: f"{flag('compat_timing')} times 32-bit calls, which {flag('compat')} leaves out"),
    (lambda f: f["detect"] and f["trace"],
     lambda _: f"{flag('detect')} is the exporter's: with {flag('trace')} the signatures run on "
             f"every traced call already ({flag('no_detect')} turns them off)"),
    (lambda f: f["no_detect"] and not f["trace"],
     lambda _: f"{flag('no_detect')} is {flag('trace')}'s: the exporter runs no signatures "
             f"unless {flag('detect')} is given"),
    (lambda f: f["enforce"] is not None and f["rules"] is None,
     lambda _: f"{flag('enforce')} applies the policy of a rule file: give {flag('rules')} "
             "FILE"),
    (lambda f: f["enforce"] == "on" and not f["compat"],
     lambda _: f"{flag('enforce')} on stops 32-bit calls too, which {flag('compat')} leaves "
             "uncaught: leave it out"),
    (lambda f: f["detect"] and f["check"],
     lambda _: f"{flag('check')} finds nothing: leave out {flag('detect')}"),
    (lambda f: f["web_config"] is not None and f["trace"] and f["listen"] is None,
     lambda _: f"{flag('web_config')} secures /metrics, which {flag('trace')} alone does not "
               f"serve (add {flag('listen')})"),
    (lambda f: f["context"] and f["trace"],
     lambda _: f"{flag('context')} is the exporter's: {flag('trace')} already gives every "
             "traced call its context"),
)


def check(f: Flags) -> None:
    """Raise UsageError for the first rule the flags break."""
    for broken, message in RULES:
        if broken(f):
            raise UsageError(message(f))


def _exporter(f: Flags) -> Exporter:
    return Exporter(
        parse_listen_address(DEFAULT_ADDRESS if f["listen"] is None else f["listen"]),
        Limits(connections=f["max_connections"], requests=f["max_requests"],
               read_timeout_s=f["read_timeout"]),
        f["context"], f["web_config"])


def _program(f: Flags, trace: bool, counts: bool, log_eperm: bool, urgent: bool) -> ProgramOptions:
    """The kernel side: what it streams (the trace, the exporter's context, the priority
    lane's calls alone), counts and folds."""
    return ProgramOptions(
        filters=Filters(tgid=f["pid"], uid=f["uid"], comm=f["comm"], types=f["types"],
                        errors_only=f["errors_only"]),
        ringbuf_pages=f["ringbuf_pages"], compat=f["compat"], compat_entry=f["compat_timing"],
        hooks=f["hooks"],
        trace=trace or f["context"] or urgent, urgent_only=urgent and not f["context"],
        count=counts, log_eperm=log_eperm, btf=f["btf"], home=f["namespaces_of"],
        fold_ns=round(f["fold_window"] * 1e9) if trace and f["fold"] else 0)


def from_flags(f: Flags) -> Plan:
    """The plan the flags ask for (UsageError where they contradict each other)."""
    check(f)
    trace = f["output"] if f["trace"] else None
    exporter = _exporter(f) if trace is None or f["listen"] is not None else None
    events = None if f["events_file"] is None else EventsFile(
        f["events_file"], f["events_file_max_size_mb"] << 20, f["events_file_max_backups"],
        f["events_file_compress"])
    signatures = _signatures_run(f)
    # The exporter's event file and its signatures: the priority lane's kinds of call, streamed
    # for them alone; the fd sweep, which no such call shows, counted in the kernel.
    urgent = trace is None and (events is not None or f["detect"])
    log_eperm = exporter is not None and f["eperm_log_rate"] > 0
    return Plan(program=_program(f, trace is not None, exporter is not None or f["check"],
                                 log_eperm, urgent),
                trace=trace, exporter=exporter, events=events, check=f["check"],
                signatures=signatures, rules=f["rules"], enforce=f["enforce"],
                sweep=signatures and trace is None,
                eperm_log_rate=f["eperm_log_rate"] if log_eperm else 0.0,
                others_paths=not f["own_paths_only"],
                containers=trace is not None or events is not None or log_eperm or signatures)
