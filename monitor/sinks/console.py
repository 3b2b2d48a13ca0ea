"""The live console: one strace-style line per call, with who made it and what it meant."""

from __future__ import annotations

import time
from typing import TextIO

from .. import PROG, abi
from ..context.containers import display_name
from ..context.types import Caller, Containers, Context, Target
from ..detect.types import SEVERITIES, Finding
from ..escape import escape, escape_word
from ..flags import flag
from ..kernel.events import Args, Event
from ..kernel.features import KERNEL_FEATURES
from ..kernel.home import Home, home_namespaces
from ..kernel.kinds import PRIORITY_LANE
from ..policy.types import Enforcement, Mechanism

START_LINE = "Tracing kcmp()... Ctrl-C to end."
DENIED_MARK = "!! DENIED"
SECCOMP_MARK = "!! SECCOMP"
CROSSING_MARK = "!! CROSSES"
DELETED = " (deleted)"  # what the kernel appends to the path of an unlinked file
NAMESPACES = ("pid", "mnt", "net")  # the caller's, named where they are not the monitor's


def start_line(notes: list[str]) -> str:
    return START_LINE + "".join(f" [{escape(note)}]" for note in notes)


def format_type(kcmp_type: int) -> str:
    name = abi.type_name(kcmp_type)
    return name if name is not None else f"{abi.as_uint32(kcmp_type):#x} /* KCMP_??? */"


def _fd(fd: int, path: str | None) -> str:
    """An fd as strace prints it: as a C int, its path in brackets, "(deleted)" after them."""
    number = abi.as_int32(fd)
    if path is None:
        return str(number)
    if path.endswith(DELETED):
        return f"{number}<{escape(path[:-len(DELETED)])}>(deleted)"
    return f"{number}<{escape(path)}>"


def _addr(addr: int) -> str:
    return f"{addr:#x}" if addr else "NULL"


def format_args(a: Args, ctx: Context) -> str:
    """The argument list exactly as `strace -y` prints it (fds as the kernel reads them)."""
    parts = [str(a.pid1), str(a.pid2), format_type(a.type)]
    fds = {key: _fd(fd, ctx.paths.get(key)) for key, _whose, fd in a.fds()}
    if a.type == abi.KcmpType.KCMP_FILE:
        parts += [fds["idx1"], fds["idx2"]]
    elif a.type == abi.KcmpType.KCMP_EPOLL_TFD:
        parts.append(fds["idx1"])
        if a.slot is None:
            parts.append(_addr(a.idx2))
        else:
            parts.append(f"{{efd={fds['efd']}, tfd={fds['tfd']}, toff={a.slot.toff}}}")
    elif a.type not in abi.IDX_IGNORED_TYPES:
        parts += [f"{a.idx1:#x}" if a.idx1 else "0", f"{a.idx2:#x}" if a.idx2 else "0"]
    return ", ".join(parts)


def format_return(ret: int) -> str:
    err = -ret if abi.is_error(ret) else None
    if err is None:
        return str(ret)
    return f"-1 {abi.errno_name(err)} ({abi.errno_message(err)})"


def format_call(event: Event, ctx: Context) -> str:
    """From `kcmp(` to the return value: the part that matches strace's line."""
    args = format_args(event.args, ctx) if event.args is not None else "?"
    return f"kcmp({args}) = {format_return(event.ret)}"


def format_duration(ns: int | None) -> str:
    if ns is None:
        return "<no entry>"
    # Thresholds sit where the rounded figure would reach the next unit.
    if ns < 999_950:
        return f"{ns / 1e3:.1f}us"
    if ns < 999_999_500:
        return f"{ns / 1e6:.3f}ms"
    return f"{ns / 1e9:.3f}s"


def _owner(uid: int | None) -> str:
    return "?" if uid is None else str(uid)


def format_target(t: Target | None, caller_tgid: int, host_pid: int | None = None,
                  runtime: Containers | None = None) -> str:
    """name/host pid and owner; "self" for the caller's own process (host_pid: the pid named,
    as the host numbers it, where known, so that a caller already gone is still itself)."""
    if t is None:
        return "self" if host_pid == caller_tgid else "?"
    if t.host_pid == caller_tgid:
        return "self"
    name = "?" if t.name is None else escape_word(t.name)
    text = f"{name}/{t.host_pid} uid={_owner(t.uid)}{_container(t.container_id, runtime)}"
    if t.gone:
        return text + " exited"
    return text + " exiting" if t.exiting else text


def _container(cid: str | None, runtime: Containers | None = None) -> str:
    """A container by the name its runtime gives it, else its short id as docker shows it
    (hex: nothing to escape)."""
    if not cid:
        return ""
    info = runtime.get(cid) if runtime is not None else None
    return f" ctr={escape_word(display_name(cid, info and info.name).encode())}"


def format_namespaces(c: Caller, own: dict[str, int | None]) -> str:
    """The caller's namespaces that are not those it is held to (own: kcmp.Home.inodes()), as
    "pid:N mnt:N net:N"."""
    mine = {"pid": c.pidns, "mnt": c.mntns, "net": c.netns}
    return " ".join(f"{kind}:{mine[kind]}" for kind in NAMESPACES
                    if mine[kind] is not None and mine[kind] != own.get(kind))


def format_time(wall_ns: int) -> str:
    seconds, ns = divmod(wall_ns, 1_000_000_000)
    return time.strftime("%H:%M:%S", time.localtime(seconds)) + f".{ns // 1000:06d}"


def _duration(event: Event, wall_ns: int) -> str:
    """How long the call took (or why that is not known), and a folded run's repeats."""
    if event.seccomp:
        duration = " <refused by seccomp>"
    elif event.compat and event.duration_ns is None and event.args is not None:
        duration = ""  # 32-bit calls are seen at exit only unless their entry is hooked too
    else:
        duration = " " + format_duration(event.duration_ns)
    if event.last_ns is not None and event.repeat > 1:  # one folded call reads as any call
        until = format_time(wall_ns + event.last_ns - event.ts_ns)
        duration += f" ×{event.repeat} until {until}"
    return duration


def _targets(event: Event, ctx: Context, runtime: Containers | None) -> str:
    """Whom the call compared, unless a process compared itself; where its pids were not
    the host's."""
    text = ""
    if ctx.targets is not None:
        a = event.args
        named = ctx.host_pids or ((a.pid1, a.pid2) if a is not None and ctx.same_pidns is not False
                                  else (None, None))
        t1, t2 = (format_target(t, event.tgid, pid, runtime)
                  for t, pid in zip(ctx.targets, named))
        if a is not None and a.pid1 == a.pid2:
            text += f"  [pid1=pid2 {t1}]" if t1 != "self" else ""
        elif t1 != "self" or t2 != "self":  # a process comparing itself needs no word
            text += f"  [pid1 {t1}, pid2 {t2}]"
    if ctx.same_pidns is False:
        text += ("  [caller in another pid namespace]" if ctx.host_pids is not None else
                 "  [caller in another pid namespace: pids not looked up]")
    return text


def _marks(event: Event, ctx: Context, own: dict[str, int | None] | None) -> str:
    """The caller's other namespaces, what is unresolved, and the boundary, seccomp and
    permission marks."""
    text = ""
    if own is not None and ctx.caller is not None:
        namespaces = format_namespaces(ctx.caller, own)
        if namespaces:
            text += f"  [ns {namespaces}]"
    if ctx.unresolved:
        text += f"  [unresolved: {','.join(ctx.unresolved)}]"
    if ctx.crossings:
        text += f"  {CROSSING_MARK} {','.join(ctx.crossings)}"
    if ctx.enforcement is not None:
        text += f"  {enforcement_mark(ctx.enforcement)}"
    if event.seccomp:
        text += f"  {SECCOMP_MARK} caller uid={event.uid}"
    elif event.permission_denied:
        text += f"  {DENIED_MARK} caller uid={event.uid}"
        if ctx.owners is not None:
            text += f", pid1 owner={_owner(ctx.owners[0])}, pid2 owner={_owner(ctx.owners[1])}"
    return text


def enforcement_mark(e: Enforcement) -> str:
    """What the policy made of the call: done, or (a dry run) what it would have done."""
    if e.action == "log":
        return f"!! POLICY rule={e.rule}"
    if not e.applied:
        return f"!! WOULD {e.action.upper()} rule={e.rule}"
    if e.mechanism == Mechanism.SIGKILL.value:
        by = "" if e.action == "kill" else " (deny by SIGKILL)"
        return f"!! KILLED BY POLICY rule={e.rule}{by}"
    return f"!! DENIED BY POLICY rule={e.rule}"


def format_line(event: Event, ctx: Context, wall_ns: int,
                own: dict[str, int | None] | None = None,
                runtime: Containers | None = None) -> str:
    """One console line: time, caller, the strace part, its meaning, duration, repeats,
    markers; own: the monitor's namespaces, to name the caller's where they differ."""
    caller = f"{escape_word(event.comm)}/{event.tgid}"
    if event.tid != event.tgid:
        caller += f"/{event.tid}"
    compat = "[compat] " if event.compat else ""
    meaning = "" if event.errno is not None else f" <{event.meaning}>"
    where = _container(ctx.caller.container_id, runtime) if ctx.caller is not None else ""
    return (f"{format_time(wall_ns)} {caller} uid={event.uid}{where} {compat}"
            f"{format_call(event, ctx)}{meaning}{_duration(event, wall_ns)}"
            f"{_targets(event, ctx, runtime)}{_marks(event, ctx, own)}")


def format_finding(finding: Finding) -> str:
    """A finding's marked line: the signature, its severity and technique, what was seen."""
    m = finding.meta
    when = format_time(finding.events[-1].timestamp)
    # The summary holds names as JSON text: control characters are still to be escaped.
    return (f"{when} !! FINDING {m.id} {m.name} ({SEVERITIES[m.severity]}, {m.technique} "
            f"{m.technique_name}): {escape(finding.summary, backslash=False)}")


def format_lost(count: int, lane: str = "bulk") -> str:
    if lane == "priority":
        return (f"{PROG}: lost {count} events of the priority lane ({PRIORITY_LANE}): both "
                f"ring buffers were full (raise {flag('ringbuf_pages')})")
    return (f"{PROG}: lost {count} events: the ring buffer was full "
            f"(raise {flag('ringbuf_pages')} or narrow the filters)")


def start_notes(program) -> list[str]:
    """What the start line says of 32-bit capture and of what the kernel side cannot give."""
    if program.compat and program.fentry:
        notes = ["32-bit: on, timed"]
    elif program.compat and program.compat_entry:
        notes = [f"32-bit: on, timed: two programs on every syscall; {flag('compat')}"]
    elif program.compat:
        notes = [f"32-bit: on, untimed: a program on every syscall's exit; {flag('compat')}"]
    elif program.compat_error:
        notes = [f"32-bit callers not captured: {program.compat_error}"]
    else:
        notes = ["32-bit: off"]
    if program.folds is not None:
        notes.append(f"identical calls folded within {program.folds.window_ns / 1e9:g} s; "
                     f"{flag('fold')}")
    if program.policy is not None:
        notes.append(f"policy: {program.policy.describe()}")
    return [program.hooks()] + notes + [f"no {KERNEL_FEATURES[feature]}: {reason}"
                    for feature, reason in program.kernel_off.items()]


def exit_line(summary) -> str:
    """What the trace saw, lost and could not resolve, in one line."""
    line = f"{PROG}: {summary.events} calls traced"
    if summary.folded:
        line += f" ({summary.folded} of them folded)"
    line += f", {summary.lost} lost"
    if summary.lost_priority:
        line += f" ({summary.lost_priority} of the priority lane)"
    if summary.unpaired:
        line += f", {summary.unpaired} without entry (in-flight map full)"
    crossed = [f"{kind} {n}" for kind, n in summary.crossings.items() if n]
    if crossed:
        line += f"; crossing a boundary: {', '.join(crossed)}"
    if summary.unresolved:
        line += f"; {summary.unresolved} with context unresolved"
    return line


class ConsoleSink:
    """Lines for a person: calls on out, losses on err as they happen."""

    def __init__(self, out: TextIO, err: TextIO, runtime: Containers | None = None,
                 home: Home | None = None) -> None:
        self.out = out
        self.err = err
        self.own = (home or home_namespaces(None)).inodes()
        self.runtime = runtime

    def start(self, notes: list[str]) -> None:
        self.out.write(start_line(notes) + "\n")
        self.out.flush()

    def event(self, event: Event, ctx: Context, wall_ns: int) -> None:
        self.out.write(format_line(event, ctx, wall_ns, self.own, self.runtime) + "\n")

    def lost(self, count: int, wall_ns: int, lane: str = "bulk") -> None:
        self.err.write(format_lost(count, lane) + "\n")
        self.err.flush()

    def finding(self, finding: Finding) -> None:
        self.out.write(format_finding(finding) + "\n")

    def flush(self) -> None:
        self.out.flush()
