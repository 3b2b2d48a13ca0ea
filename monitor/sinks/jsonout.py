"""JSON lines of the event schema (schema.py), written out directly: the stream's hot path."""

from __future__ import annotations

import functools
import json
from typing import Any, TextIO

from .. import abi, schema
from ..context.types import Caller, ContainerInfo, Containers, Context, Target
from ..detect.types import Finding
from ..kernel.events import Args, Event, KernelFile
from ..escape import json_text
from ..memo import IdentityMemo
from ..policy.types import Enforcement
from .console import start_line

# (name, Tracee's type) of kcmp's arguments, in order.
ARG_TYPES = (("pid1", "pid_t"), ("pid2", "pid_t"), ("type", "int"),
             ("idx1", "unsigned long"), ("idx2", "unsigned long"))




def path_text(path: str) -> str:
    """A path read with surrogateescape, as JSON text (a byte not UTF-8 shows as \\xNN)."""
    return json_text(path.encode("utf-8", "surrogateescape"))


def json_string(text: str) -> str:
    """A JSON string literal, ASCII only, DEL escaped too."""
    return json.dumps(text, ensure_ascii=True).replace("\x7f", "\\u007f")


# Built once: the pieces of a record that repeat from event to event.
_ARGS = "[" + ",".join('{"name":"%s","type":"%s","value":%%d}' % arg  # noqa: UP031
                       for arg in ARG_TYPES) + "]"
_TYPE = {t.value: json_string(t.name) for t in abi.KcmpType}
_BOOL = ("false", "true")
_LANES = ("bulk", "priority")
_PIDNS = {True: '"host"', False: '"other"', None: "null"}
_UNKNOWN = Caller(None, None, None, None, None, None, None, None)
# A target no process could be found for: all but its pid and its container's names.
_NO_TARGET = schema.nulls({k: v for k, v in schema.TARGET.items()
                           if k != "pid" and k not in schema.CONTAINER})


@functools.lru_cache(maxsize=4096)
def _comm(comm: bytes) -> str:
    return json_string(json_text(comm))


@functools.lru_cache(maxsize=512)
def _errno(ret: int) -> str:
    if not abi.is_error(ret):
        return '"errno":null,"errnoMessage":null'
    return (f'"errno":{json_string(abi.errno_name(-ret))},'
            f'"errnoMessage":{json_string(abi.errno_message(-ret))}')


def _int(value: int | None) -> str:
    return "null" if value is None else str(value)


def _netns(inode: int | None, name: str | None) -> str:
    if inode is None:
        return "null"
    return f'{{"inode":{inode},"name":{"null" if name is None else json_string(name)}}}'


def _container(cid: str | None) -> str:
    return "null" if cid is None else f'"{cid}"'  # hex digits or empty: nothing to escape


def _target(t: Target | None) -> str:
    """A target's fields but its pid, made once per target."""
    if t is None:
        return _NO_TARGET
    name = "null" if t.name is None else _comm(t.name)
    return (f'"hostPid":{t.host_pid},"processName":{name},"userId":{_int(t.uid)},'
            f'"hostParentProcessId":{_int(t.host_ppid)},"pidNamespace":{_int(t.pidns)},'
            f'"mountNamespace":{_int(t.mntns)},"networkNamespace":{_netns(t.netns, t.netns_name)},'
            f'"containerId":{_container(t.container_id)},"exited":{_BOOL[t.gone]},'
            f'"exiting":{_BOOL[t.exiting]},"realUserId":{_int(t.real_uid)}')


@functools.lru_cache(maxsize=64)
def _names(names: tuple[str, ...]) -> str:
    return "[" + ",".join(f'"{n}"' for n in names) + "]"


def _str(text: str | None) -> str:
    return "null" if text is None else json_string(text)


@functools.lru_cache(maxsize=4096)
def _container_fields(info: ContainerInfo | None) -> str:
    """The runtime's names of a container, with Tracee's field names (nulls: none known)."""
    if info is None:
        return _NO_CONTAINER
    return (f',"containerName":{_str(info.name)},"containerImage":{_str(info.image)},'
            f'"containerImageId":{_str(info.image_id)},"podName":{_str(info.pod_name)},'
            f'"podNamespace":{_str(info.pod_namespace)},"podUID":{_str(info.pod_uid)}')


_NO_CONTAINER = "," + schema.nulls(schema.CONTAINER)


def _container_of(runtime: Containers | None, cid: str | None) -> str:
    return _NO_CONTAINER if runtime is None or not cid else _container_fields(runtime.get(cid))


def _caller(c: Caller, tgid: int, tid: int) -> str:
    """The caller's fields, made once per caller: they repeat from event to event."""
    # As the caller's pid namespace numbers them; the host's when the caller could not be
    # read (it had gone), and null for a thread gone from another namespace.
    pid, ns_tid = (tgid, str(tid)) if c.ns_pid is None else (c.ns_pid, _int(c.ns_tid))
    if c.exe is None and c.exe_name is None:
        exe = "null"
    else:
        path = "null" if c.exe is None else json_string(path_text(c.exe))
        name = "null" if c.exe_name is None else _comm(c.exe_name)
        exe = (f'{{"path":{path},"name":{name},"inode":{_int(c.exe_inode)},'
               f'"elfClass":{_int(c.exe_bits)}}}')
    caps = "null" if c.caps is None else (
        f'{{"effective":"{c.caps:#x}",'
        f'"sysPtrace":{_BOOL[abi.may_ptrace(c.caps)]}}}')
    return (f'"processId":{pid},"threadId":{ns_tid},"hostProcessId":{tgid},'
            f'"hostThreadId":{tid},"parentProcessId":{_int(c.ns_ppid)},'
            f'"hostParentProcessId":{_int(c.host_ppid)},"pidNamespace":{_int(c.pidns)},'
            f'"mountNamespace":{_int(c.mntns)},'
            f'"networkNamespace":{_netns(c.netns, c.netns_name)},'
            f'"userNamespace":{_int(c.userns)},"utsNamespace":{_int(c.utsns)},'
            f'"ipcNamespace":{_int(c.ipcns)},"cgroupNamespace":{_int(c.cgroupns)},'
            f'"effectiveUserId":{_int(c.euid)},"effectiveGroupId":{_int(c.egid)},'
            f'"capabilities":{caps},'
            f'"containerId":{_container(c.container_id)},"executable":{exe},'
            f'"callerExited":{_BOOL[c.gone]},'
            f'"callerContext":"{"kernel" if c.from_kernel else "proc"}"')


# The text of the enricher's cached caller and targets, looked up by their identity.
_texts: IdentityMemo[tuple[str, tuple[str, str] | None]] = IdentityMemo(4096)


def _who_text(c: Caller, targets: tuple | None, tgid: int, tid: int,
              a: Args | None) -> tuple[str, tuple[str, str] | None]:
    """The caller's fields, and each target's object but its container's names (which the
    runtime may learn later) and its closing brace; None for no targets."""
    t1, t2 = targets or (None, None)
    pids = None if targets is None or a is None else (a.pid1, a.pid2)
    key = (id(c), id(t1), id(t2), tgid, tid, pids)
    texts = _texts.get(key)
    if texts is not None:
        return texts
    return _texts.put(key, (c, t1, t2), (
        _caller(c, tgid, tid), None if pids is None else
        (f'{{"pid":{pids[0]},{_target(t1)}', f'{{"pid":{pids[1]},{_target(t2)}')))


def _with_containers(targets: tuple[str, str] | None, ctx: Context,
                     runtime: Containers | None) -> str:
    if targets is None:
        return "null"
    t1, t2 = ctx.targets or (None, None)
    first, second = targets
    return (f"[{first}{_container_of(runtime, t1 and t1.container_id)}}},"
            f"{second}{_container_of(runtime, t2 and t2.container_id)}}}]")


@functools.lru_cache(maxsize=4096)
def _call_text(cgroup_id: int, uid: int, gid: int, comm: bytes, ret: int, compat: bool,
               a: Args | None, seccomp: bool, priority: bool) -> str:
    """The fields the kernel's record gives, but the times: a loop of calls repeats them."""
    if a is None:
        args, argsnum, kcmp_type, slot, fault = "[]", 0, "null", "null", "false"
    else:
        args = _ARGS % (a.pid1, a.pid2, a.type, a.idx1, a.idx2)
        argsnum, kcmp_type = len(ARG_TYPES), _TYPE.get(a.type, "null")
        slot = ("null" if a.slot is None
                else f'{{"efd":{abi.as_int32(a.slot.efd)},"tfd":{abi.as_int32(a.slot.tfd)},'
                f'"toff":{a.slot.toff}}}')
        fault = _BOOL[a.slot_fault]
    return (f'"cgroupId":{cgroup_id},"userId":{uid},"groupId":{gid},'
            f'"processName":{_comm(comm)},"eventName":"kcmp","syscall":"kcmp",'
            f'"returnValue":{ret},"argsNum":{argsnum},"args":{args},'
            f'"kcmpType":{kcmp_type},"result":"{abi.result_meaning(ret)}",{_errno(ret)},'
            f'"permissionDenied":{_BOOL[ret == -abi.EPERM]},'
            f'"compat":{_BOOL[compat]},"argsKnown":{_BOOL[a is not None]},'
            f'"refusedBySeccomp":{_BOOL[seccomp]},"lane":"{_LANES[priority]}",'
            f'"epollSlot":{slot},"epollSlotFault":{fault}')


def _file(f: KernelFile) -> str:
    return (f'{{"open":{_BOOL[f.open]},"inode":{f.inode},"device":"{f.device}",'
            f'"fsMagic":"{f.magic:#x}","pathCut":{_BOOL[f.cut]}}}')


def _files(a: Args | None, files: tuple[KernelFile | None, ...] | None) -> str:
    """The caller's own fds as the kernel saw them at the call, by argument."""
    if a is None or files is None:
        return ""
    return ",".join(f'"{key}":{_file(f)}' for (key, _, _), f in zip(a.fds(), files)
                    if f is not None)


def event_line(event: Event, ctx: Context, wall_ns: int,
               runtime: Containers | None = None) -> str:
    """The event as one JSON line, written out directly: the stream's hot path (a dict and
    json.dumps cost several times more per event). runtime: where containers are named."""
    a = event.args
    paths = ",".join(f'"{key}":{json_string(path_text(path))}'
                     for key, path in ctx.paths.items()) if ctx.paths else ""
    caller = ctx.caller or _UNKNOWN
    who, target_texts = _who_text(caller, ctx.targets, event.tgid, event.tid, a)
    who += _container_of(runtime, caller.container_id)
    targets = _with_containers(target_texts, ctx, runtime)
    call = _call_text(event.cgroup_id, event.uid, event.gid, event.comm, event.ret,
                      event.compat, a, event.seccomp, event.priority)
    last = None if event.last_ns is None else wall_ns + event.last_ns - event.ts_ns
    return (f'{{"timestamp":{wall_ns},{who},{call},'
            f'"durationNs":{_int(event.duration_ns)},"repeat":{event.repeat},'
            f'"fdSweep":{_BOOL[event.swept]},'
            f'"lastTimestamp":{_int(last)},"fdPaths":{{{paths}}},'
            f'"fdFiles":{{{_files(a, event.files)}}},'
            f'"callerPidNamespace":{_PIDNS[ctx.same_pidns]},'
            f'"targets":{targets},"crossesBoundary":{_names(ctx.crossings)},'
            f'"contextUnresolved":{_names(ctx.unresolved)},'
            f'"enforcement":{_enforcement(ctx.enforcement)}}}')


def _enforcement(e: Enforcement | None) -> str:
    if e is None:
        return "null"
    return (f'{{"rule":{json_string(e.rule)},"action":"{e.action}",'
            f'"applied":{_BOOL[e.applied]},"mechanism":{_str(e.mechanism)}}}')


def lost_record(count: int, wall_ns: int, lane: str = "bulk") -> dict[str, Any]:
    return {"timestamp": wall_ns, "eventName": "events_lost", "lostEvents": count,
            "reason": "ring buffer full", "lane": lane}


def dumps(record: dict[str, Any]) -> str:
    """One line of ASCII JSON: every control character escaped, DEL included."""
    return json.dumps(record, ensure_ascii=True, separators=(",", ":")).replace("\x7f", "\\u007f")


class JsonLines:
    """Events and losses as JSON lines, gathered until a poll's end takes them."""

    def __init__(self, runtime: Containers | None = None) -> None:
        self.runtime = runtime
        self._lines: list[str] = []

    def event(self, event: Event, ctx: Context, wall_ns: int) -> None:
        self._lines.append(event_line(event, ctx, wall_ns, self.runtime))

    def lost(self, count: int, wall_ns: int, lane: str = "bulk") -> None:
        self._lines.append(dumps(lost_record(count, wall_ns, lane)))

    def finding(self, finding: Finding) -> None:
        self._lines.append(dumps(finding.record()))

    def take(self) -> list[str]:
        lines, self._lines = self._lines, []
        return lines


class JsonSink(JsonLines):
    """JSON lines on out, losses as records in the same stream; notes for people on err.
    Lines are written once per poll."""

    def __init__(self, out: TextIO, err: TextIO, runtime: Containers | None = None) -> None:
        super().__init__(runtime)
        self.out = out
        self.err = err

    def start(self, notes: list[str]) -> None:
        self.err.write(start_line(notes) + "\n")
        self.err.flush()

    def flush(self) -> None:
        lines = self.take()
        if lines:
            self.out.write("\n".join(lines) + "\n")
        self.out.flush()
