"""Records as the kernel streams them, made from Events (the inverse of the monitor's decode),
and events as a JSON reader of the stream gets them: for the tests that feed the loop, the
folds, the sinks and the signatures without a kernel."""

import json

from kcmp_monitor.kernel.events import (
    EV_APPLIED,
    EV_COMPAT,
    EV_ENTRY,
    EV_FOLDED,
    EV_KILLED,
    EV_OWN_PIDNS,
    EV_POLICY,
    EV_PRIORITY,
    EV_REGS,
    EV_SECCOMP,
    EV_SLOT_FAULT,
    EV_SLOT_READ,
    EV_SWEEP,
    EV_TARGETS,
    EV_TASK,
    EV_TRACE,
    FILE_CUT,
    FILE_DNAME,
    FILE_OPEN,
    FILE_LOOKED,
    FILE_UNLINKED,
    RAW_EVENT,
    RAW_FILE,
    RAW_TARGET,
    RAW_TASK,
    TARGET_EXITING,
    TARGET_FOUND,
    EpollSlot,
    Event,
)
from kcmp_monitor.sinks.jsonout import event_line


def encode(event: Event) -> bytes:
    """The record bytes of an Event: the inverse of decode (what the kernel would stream)."""
    a = event.args
    flags = ((EV_COMPAT if event.compat else 0) | (EV_TRACE if event.traced else 0)
             | (EV_OWN_PIDNS if event.own_pidns else 0) | (EV_SECCOMP if event.seccomp else 0)
             | (EV_PRIORITY if event.priority else 0) | (EV_FOLDED if event.folded else 0)
             | (EV_SWEEP if event.swept else 0))
    p = event.policed
    if p is not None:
        flags |= EV_POLICY | (EV_APPLIED if p.applied else 0) | (EV_KILLED if p.killed else 0)
    slot = EpollSlot(0, 0, 0)
    if a is not None:
        flags |= EV_ENTRY if event.duration_ns is not None else EV_REGS
        if a.slot is not None:
            flags |= EV_SLOT_READ
            slot = a.slot
        if a.slot_fault:
            flags |= EV_SLOT_FAULT
    t = event.task
    task = bytes(RAW_TASK.size)
    if t is not None:
        flags |= EV_TASK
        name_len = len(t.exe_name) + 1 if t.exe_name_cut else len(t.exe_name)
        task = RAW_TASK.pack(t.pidns, t.mntns, t.netns, t.userns, t.utsns, t.ipcns, t.cgroupns,
                             t.ppid, t.ns_pid, t.ns_tid, t.ns_ppid, t.depth - 1, t.uid, t.gid,
                             t.euid, t.egid, t.cap_effective, t.exe_ino, name_len, 0,
                             t.exe_name, t.cgroup)
    targets = bytes(2 * RAW_TARGET.size)
    if event.targets is not None:
        flags |= EV_TARGETS
        targets = b"".join(bytes(RAW_TARGET.size) if k is None else RAW_TARGET.pack(
            k.pid, k.tgid, k.ppid, k.uid, k.euid, k.pidns, k.mntns, k.netns,
            TARGET_FOUND | (TARGET_EXITING if k.exiting else 0), k.comm, k.cgroup)
            for k in event.targets)
    files = b""
    if event.files is not None:
        for f in event.files:
            if f is None:
                files += bytes(RAW_FILE.size)
                continue
            bits = (FILE_LOOKED | (FILE_OPEN if f.open else 0) | (FILE_DNAME if f.pseudo else 0)
                    | (FILE_UNLINKED if f.deleted else 0) | (FILE_CUT if f.cut else 0))
            files += RAW_FILE.pack(f.inode, f.dev, f.magic, bits, len(f.name), f.name)
    mask = 0xFFFFFFFFFFFFFFFF
    return RAW_EVENT.pack(
        event.ts_ns, (event.duration_ns or 0) * (event.repeat if event.folded else 1),
        event.cgroup_id,
        (a.pid1 & mask) if a else 0, (a.pid2 & mask) if a else 0, (a.type & mask) if a else 0,
        a.idx1 if a else 0, a.idx2 if a else 0, event.ret,
        event.tgid, event.tid, event.uid, event.gid, slot.efd, slot.tfd, slot.toff, flags,
        event.comm, event.ppid, event.repeat if event.folded else 0, event.last_ns or 0,
        p.rule if p is not None else 0, 0,
    ) + task + targets + files


def json_record(event: Event, ctx, wall_ns: int, runtime=None) -> dict:
    """The event as the JSON stream writes it, read back."""
    return json.loads(event_line(event, ctx, wall_ns, runtime))
