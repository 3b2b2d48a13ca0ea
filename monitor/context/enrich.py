"""The context of one event: who its caller and targets are, their fd paths, and whether the
call crossed a namespace or container boundary. Only what the kernel's record cannot carry."""

from __future__ import annotations

from .. import abi
from ..kernel.events import Event
from ..memo import IdentityMemo
from .processes import ProcReader
from .types import Caller, Context, Target, crossings

# Contexts made of one cached caller and targets: the same meet again and again.
_contexts: IdentityMemo[Context] = IdentityMemo(ProcReader.CALLERS)


def _with_targets(bare: Context, caller: Caller, t1: Target | None, t2: Target | None,
                  host_pids: tuple | None, existed: bool) -> Context:
    """A caller's context with its targets, crossings and what is unresolved; no paths."""
    key = (id(bare), id(t1), id(t2), host_pids, existed)
    ctx = _contexts.get(key)
    if ctx is not None:
        return ctx
    unresolved: tuple[str, ...] = ("caller",) if caller.gone and caller.host_ppid is None else ()
    if existed:  # both pids named processes: one not found now is unresolved
        unresolved += tuple(name for name, t in (("pid1", t1), ("pid2", t2)) if t is None)
    return _contexts.put(key, (bare, t1, t2), Context(
        same_pidns=bare.same_pidns, host_pids=host_pids, caller=caller, targets=(t1, t2),
        crossings=crossings(caller, (t1, t2)), unresolved=unresolved))


def _in_callers_container(t: Target | None, tgid: int, caller: Caller) -> Target | None:
    if t is None or t.container_id is not None or t.host_pid != tgid:
        return t
    return t._replace(container_id=caller.container_id)


def enrich(event: Event, proc: ProcReader) -> Context:
    bare = proc.caller(event)
    caller, a = bare.caller, event.args
    if caller is None or a is None:
        return bare
    # Both pids named processes unless the call said otherwise (ESRCH).
    existed = event.ret != -abi.ESRCH
    now = event.ts_ns
    recorded = event.targets
    host_pids: tuple[int | None, ...] | None = None
    if recorded is not None and (not existed or None not in recorded):
        t1, t2 = (None if k is None else proc.recorded_target(k, now) for k in recorded)
        pid1, pid2 = (None if k is None else k.pid for k in recorded)
        host_pids = None if event.own_pidns else (pid1, pid2)
    else:  # not looked up, or a task gone between the call and its record: /proc
        pid1, pid2 = a.pid1, a.pid2
        if not event.own_pidns:
            host_pids = proc.pidns.translate(event.tgid, event.tid, caller, (a.pid1, a.pid2))
            if host_pids is None:
                unresolved = ("caller", "pid1", "pid2") if existed else ("caller",)
                return bare._replace(unresolved=unresolved)
            pid1, pid2 = host_pids
        t1, t2 = proc.target(pid1, now), proc.target(pid2, now)
        if not existed:  # ESRCH: a pid the process table remembers may have been gone already
            t1, t2 = (None if t is None or t.gone else t for t in (t1, t2))
        # A caller gone and naming itself: its container is the caller's (the record's cgroup).
        t1, t2 = (_in_callers_container(t, event.tgid, caller) for t in (t1, t2))
    ctx = _with_targets(bare, caller, t1, t2, host_pids, existed)
    return ctx._replace(paths=_paths(event, proc, (pid1, pid2))) if a.fds() else ctx


def _paths(event: Event, proc: ProcReader, owners: tuple[int | None, int | None]) -> dict[str, str]:
    """The paths of the fds the call named, by argument: as the kernel saw them at the call,
    from /proc where it did not look (owners: the host pids of pid1 and pid2)."""
    assert event.args is not None
    files = event.files
    paths: dict[str, str] = {}
    for i, (key, whose, fd) in enumerate(event.args.fds()):
        known = files[i] if files is not None else None
        path = known.path() if known is not None else None
        owner = owners[whose]
        if not proc.others_paths and owner not in (event.tgid, event.tid):
            continue
        if path is not None:
            path = proc.described(owner, path)
        elif known is None or known.open:  # not looked up, or of a file system unknown here
            path = proc.fd_path(owner, fd)
        if path is not None:
            paths[key] = path
    return paths
