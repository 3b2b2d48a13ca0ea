"""JSON lines: Tracee's v0.24 event field names where Tracee has the field, ours beside them."""

from __future__ import annotations

import json
from typing import Any, TextIO

from . import abi
from .console import start_line
from .enrich import Context
from .events import Event

# (name, Tracee's type) of kcmp's arguments, in order.
ARG_TYPES = (("pid1", "pid_t"), ("pid2", "pid_t"), ("type", "int"),
             ("idx1", "unsigned long"), ("idx2", "unsigned long"))


def _text(raw: bytes) -> str:
    # JSON carries text, not bytes: a byte that is not UTF-8 becomes a visible \xNN.
    return raw.decode("utf-8", "backslashreplace")


def path_text(path: str) -> str:
    """A path read with surrogateescape, as JSON text (a byte not UTF-8 shows as \\xNN)."""
    return _text(path.encode("utf-8", "surrogateescape"))


def event_record(event: Event, ctx: Context, wall_ns: int) -> dict[str, Any]:
    a = event.args
    err = event.errno
    record: dict[str, Any] = {
        "timestamp": wall_ns,
        "processId": event.tgid,
        "threadId": event.tid,
        "cgroupId": event.cgroup_id,
        "userId": event.uid,
        "groupId": event.gid,
        "processName": _text(event.comm),
        "eventName": "kcmp",
        "syscall": "kcmp",
        "returnValue": event.ret,
        "argsNum": len(ARG_TYPES) if a else 0,
        "args": [],
        "kcmpType": None,
        "result": event.meaning,
        "errno": abi.errno_name(err) if err is not None else None,
        "errnoMessage": abi.errno_message(err) if err is not None else None,
        "permissionDenied": event.permission_denied,
        "targetOwners": None,
        "compat": event.compat,
        "argsKnown": a is not None,
        "durationNs": event.duration_ns,
        "epollSlot": None,
        "epollSlotFault": False,
        "fdPaths": {key: path_text(path) for key, path in ctx.paths.items()},
    }
    if a is not None:
        values = (a.pid1, a.pid2, a.type, a.idx1, a.idx2)
        record["args"] = [{"name": name, "type": typ, "value": value}
                          for (name, typ), value in zip(ARG_TYPES, values)]
        record["kcmpType"] = abi.type_name(a.type)
        if a.slot is not None:
            record["epollSlot"] = {"efd": a.slot.efd, "tfd": a.slot.tfd, "toff": a.slot.toff}
        record["epollSlotFault"] = a.slot_fault
    if ctx.owners is not None:
        record["targetOwners"] = {"pid1": ctx.owners[0], "pid2": ctx.owners[1]}
    return record


def lost_record(count: int, wall_ns: int) -> dict[str, Any]:
    return {"timestamp": wall_ns, "eventName": "events_lost", "lostEvents": count,
            "reason": "ring buffer full"}


def dumps(record: dict[str, Any]) -> str:
    """One line of ASCII JSON: every control character escaped, DEL included."""
    return json.dumps(record, ensure_ascii=True, separators=(",", ":")).replace("\x7f", "\\u007f")


class JsonSink:
    """JSON lines on out, losses as records in the same stream; notes for people on err."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.err = err

    def start(self, notes: list[str]) -> None:
        self.err.write(start_line(notes) + "\n")
        self.err.flush()

    def event(self, event: Event, ctx: Context, wall_ns: int) -> None:
        self.out.write(dumps(event_record(event, ctx, wall_ns)) + "\n")

    def lost(self, count: int, wall_ns: int) -> None:
        self.out.write(dumps(lost_record(count, wall_ns)) + "\n")

    def flush(self) -> None:
        self.out.flush()
