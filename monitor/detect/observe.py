"""A call as an Observation: from a live record and its context, or from a recorded JSON event
(the stream's or the event file's). Both give the same fields the same way, so that a recorded
stream gives the findings the live one gave."""

from __future__ import annotations

from typing import Any, Protocol

from .. import abi
from ..context.types import Context
from ..escape import json_text
from ..kernel.events import Event
from .types import Observation, Seen


class Containers(Protocol):
    """What names containers (context.runtime.ContainerRuntime)."""

    def get(self, container_id: str | None) -> Any: ...


def from_event(event: Event, ctx: Context, wall_ns: int,
               runtime: Containers | None = None) -> Observation:
    a, c = event.args, ctx.caller
    exe = None
    if c is not None and c.exe is not None:
        exe = json_text(c.exe.encode("utf-8", "surrogateescape"))
    elif c is not None and c.exe_name is not None:
        exe = json_text(c.exe_name)
    cid = c.container_id if c is not None else None
    info = runtime.get(cid) if runtime is not None and cid else None
    targets: tuple[Seen, ...] = ()
    if a is not None and ctx.targets is not None:
        targets = tuple(Seen(pid, t and t.host_pid, t and t.uid, t and t.container_id)
                        for pid, t in zip((a.pid1, a.pid2), ctx.targets))
    return Observation(
        timestamp=wall_ns, host_pid=event.tgid, host_tid=event.tid, comm=json_text(event.comm),
        exe=exe, uid=event.uid, euid=c.euid if c is not None else None, container_id=cid,
        container_name=info and info.name, container_image=info and info.image,
        kcmp_type=abi.type_name(a.type) if a is not None else None,
        idx1=a.idx1 if a is not None else None, idx2=a.idx2 if a is not None else None,
        ret=event.ret, seccomp=event.seccomp, compat=event.compat, targets=targets,
        repeat=event.repeat)


class NotAnEvent(ValueError):
    """A JSON line that is not a kcmp event of this monitor's schema."""


def from_record(r: dict[str, Any]) -> Observation | None:
    """None for a record that is no call (events_lost, a finding); NotAnEvent for one that
    does not have the fields a call has."""
    if r.get("eventName") != "kcmp":
        return None
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
            compat=bool(r.get("compat")), targets=targets, repeat=int(r.get("repeat", 1)))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise NotAnEvent(f"not a kcmp event of this monitor ({exc!r} missing or wrong)") from None
