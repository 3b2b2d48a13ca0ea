"""A call as an Observation: from a live record and its context, or from a recorded JSON event
(the stream's or the event file's). Both give the same fields the same way, so that a recorded
stream gives the findings the live one gave."""

from __future__ import annotations

from typing import Any

from .. import abi, schema
from ..context.types import Containers, Context
from ..escape import json_text
from ..kernel.events import Event
from ..memo import IdentityMemo
from .types import Observation, Seen


# Who a call is about, made once per (caller, targets, pids, comm): the enricher hands out
# the same cached objects from call to call.
_who: IdentityMemo[tuple] = IdentityMemo(4096)
_TYPES = {t.value: t.name for t in abi.KcmpType}


def quiet(event: Event, ctx: Context) -> bool:
    """A call no signature looks at: not refused, not 32-bit, not a counted sweep, its caller
    in no container, and naming no process but its own. Most calls are, and this spares them
    the observation (tests/unit/test_detect.py holds the signatures to it)."""
    if event.ret == -abi.EPERM or event.seccomp or event.compat or event.swept:
        return False
    c = ctx.caller
    if c is not None and c.container_id:
        return False
    return all(t is None or t.host_pid is None or t.host_pid == event.tgid
               for t in ctx.targets or ())


def from_event(event: Event, ctx: Context, wall_ns: int,
               runtime: Containers | None = None) -> Observation:
    a, c, targets = event.args, ctx.caller, ctx.targets
    pids = None if a is None else (a.pid1, a.pid2)
    key = (id(c), id(targets), pids, event.comm)
    who = _who.get(key)
    if who is None:
        who = _who.put(key, (c, targets), _who_of(event.comm, c, targets, pids))
    comm, exe, euid, cid, seen, bits = who
    # The runtime may learn a container later: asked each time (a dict lookup).
    info = runtime.get(cid) if runtime is not None and cid else None
    kcmp_type = _TYPES.get(a.type) if a is not None else None
    target_fd = None
    if a is not None:
        slot_tfd = a.slot.tfd if a.slot is not None else None
        target_fd = _target_fd(kcmp_type, a.idx2, slot_tfd)
    return Observation(
        wall_ns, event.tgid, event.tid, comm, exe, event.uid, euid, cid,
        info and info.name, info and info.image, kcmp_type,
        a.idx1 if a is not None else None, a.idx2 if a is not None else None,
        event.ret, event.seccomp, event.compat, seen, event.repeat, event.swept, bits,
        target_fd)


def _fd(value: int | None) -> int | None:
    """An fd the JSON prints as a C int, as the kernel holds it (unsigned)."""
    return None if value is None else abi.as_uint32(value)


def _target_fd(kcmp_type: str | None, idx2: int | None, slot_tfd: int | None) -> int | None:
    if kcmp_type == abi.KcmpType.KCMP_FILE.name:
        return idx2
    return slot_tfd if kcmp_type == abi.KcmpType.KCMP_EPOLL_TFD.name else None


def _who_of(comm: bytes, c, targets, pids) -> tuple:
    exe = None
    if c is not None and c.exe is not None:
        exe = json_text(c.exe.encode("utf-8", "surrogateescape"))
    elif c is not None and c.exe_name is not None:
        exe = json_text(c.exe_name)
    seen: tuple[Seen, ...] = ()
    if pids is not None and targets is not None:
        seen = tuple(Seen(pid, t and t.host_pid, t and t.uid, t and t.container_id)
                     for pid, t in zip(pids, targets))
    return (json_text(comm), exe, c.euid if c is not None else None,
            c.container_id if c is not None else None, seen,
            c.exe_bits if c is not None else None)


# The fields a call's observation cannot be made without (the rest: read where present).
_REQUIRED = ("timestamp", "hostProcessId", "hostThreadId", "processName", "userId",
             "returnValue", "args")


class NotAnEvent(ValueError):
    """A JSON line that is not a kcmp event of this monitor's schema."""


def from_record(r: dict[str, Any]) -> Observation | None:
    """None for a record that is no call (events_lost, a finding); NotAnEvent for one that
    does not have the fields a call has."""
    if r.get("eventName") != "kcmp":
        return None
    bad = schema.mistyped(r, _REQUIRED)
    if bad:
        raise NotAnEvent(f"not a kcmp event of this monitor ({', '.join(bad)} missing or "
                         "wrong)")
    try:
        exe = r.get("executable") or {}
        args = {a["name"]: a["value"] for a in r["args"]}
        targets = tuple(Seen(t["pid"], t.get("hostPid"), t.get("userId"), t.get("containerId"))
                        for t in r.get("targets") or ())
        return Observation(
            timestamp=int(r["timestamp"]), host_pid=int(r["hostProcessId"]),
            host_tid=int(r["hostThreadId"]), comm=str(r["processName"]),
            exe=exe.get("path") or exe.get("name"), uid=int(r["userId"]),
            euid=r.get("effectiveUserId"), container_id=r.get("containerId"),
            container_name=r.get("containerName"), container_image=r.get("containerImage"),
            kcmp_type=r.get("kcmpType"), idx1=args.get("idx1"), idx2=args.get("idx2"),
            ret=int(r["returnValue"]), seccomp=bool(r.get("refusedBySeccomp")),
            compat=bool(r.get("compat")), targets=targets, repeat=int(r.get("repeat", 1)),
            swept=bool(r.get("fdSweep")), exe_bits=exe.get("elfClass"),
            target_fd=_target_fd(r.get("kcmpType"), args.get("idx2"),
                                 _fd((r.get("epollSlot") or {}).get("tfd"))))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise NotAnEvent(f"not a kcmp event of this monitor ({exc!r} missing or wrong)") from None
