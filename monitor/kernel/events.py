"""The captured call as a value: the Python mirror of struct kcmp_record (the call, and its
caller as the kernel saw it) and its decoder.

The layouts below are a contract with bpf/kcmp.h; tests/unit/test_events.py compiles the
header and checks every offset and the size.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .. import abi

# Field names and struct codes in the order of struct kcmp_event.
LAYOUT = (
    ("ts_ns", "Q"),
    ("duration_ns", "Q"),
    ("cgroup_id", "Q"),
    ("pid1", "Q"),
    ("pid2", "Q"),
    ("type", "Q"),
    ("idx1", "Q"),
    ("idx2", "Q"),
    ("ret", "q"),
    ("tgid", "I"),
    ("tid", "I"),
    ("uid", "I"),
    ("gid", "I"),
    ("slot_efd", "I"),
    ("slot_tfd", "I"),
    ("slot_toff", "I"),
    ("flags", "I"),
    ("comm", "16s"),
    ("ppid", "I"),
    ("repeat", "I"),
    ("last_ns", "Q"),
    ("rule", "I"),
    ("reserved", "I"),
)
RAW_EVENT = struct.Struct("<" + "".join(code for _, code in LAYOUT))
# struct kcmp_task, which follows the call in a record.
TASK_LAYOUT = (
    ("pidns", "I"),
    ("mntns", "I"),
    ("netns", "I"),
    ("userns", "I"),
    ("utsns", "I"),
    ("ipcns", "I"),
    ("cgroupns", "I"),
    ("ppid", "I"),
    ("ns_pid", "I"),
    ("ns_tid", "I"),
    ("ns_ppid", "I"),
    ("pid_level", "I"),
    ("uid", "I"),
    ("gid", "I"),
    ("euid", "I"),
    ("egid", "I"),
    ("cap_effective", "Q"),
    ("exe_ino", "Q"),
    ("exe_name_len", "I"),
    ("reserved", "I"),
    ("exe_name", "64s"),
    ("cgroup", "96s"),
)
RAW_TASK = struct.Struct("<" + "".join(code for _, code in TASK_LAYOUT))
# struct kcmp_target: pid1's and pid2's follow the task.
TARGET_LAYOUT = (
    ("pid", "I"),
    ("tgid", "I"),
    ("ppid", "I"),
    ("uid", "I"),
    ("euid", "I"),
    ("pidns", "I"),
    ("mntns", "I"),
    ("netns", "I"),
    ("flags", "I"),
    ("comm", "16s"),
    ("cgroup", "96s"),
)
RAW_TARGET = struct.Struct("<" + "".join(code for _, code in TARGET_LAYOUT))
TARGETS_AT = RAW_EVENT.size + RAW_TASK.size
RECORD_SIZE = TARGETS_AT + 2 * RAW_TARGET.size
# struct kcmp_file: KCMP_FILES of them follow the task in the record of a call naming fds.
FILE_LAYOUT = (
    ("ino", "Q"),
    ("dev", "I"),
    ("magic", "I"),
    ("flags", "I"),
    ("path_len", "I"),
    ("path", "256s"),
)
RAW_FILE = struct.Struct("<" + "".join(code for _, code in FILE_LAYOUT))
FILES = 3  # idx1; idx2 or the slot's efd; the slot's tfd
FILES_RECORD_SIZE = RECORD_SIZE + FILES * RAW_FILE.size
# The same bytes read the way the kernel reads the arguments: pid1, pid2 and type are the low
# 32 bits of their registers taken as signed (little-endian: the first 4 of the 8 bytes), so
# the C unpacker truncates them, not Python code per event.
_DECODE = struct.Struct("<" + "".join("i4x" if name in ("pid1", "pid2", "type") else code
                                      for name, code in LAYOUT))

# Flag bits of struct kcmp_event.flags (bpf/kcmp.h).
EV_ENTRY = 0x1
EV_COMPAT = 0x2
EV_SLOT_READ = 0x4
EV_SLOT_FAULT = 0x8
EV_TRACE = 0x10
EV_OWN_PIDNS = 0x20
EV_TASK = 0x40
EV_REGS = 0x80
EV_SECCOMP = 0x100
EV_PRIORITY = 0x200
EV_FOLDED = 0x400
EV_SWEEP = 0x800
EV_TARGETS = 0x1000
EV_POLICY = 0x2000
EV_APPLIED = 0x4000
EV_KILLED = 0x8000

# Flag bits of struct kcmp_target.flags.
TARGET_FOUND = 0x1
TARGET_EXITING = 0x2

# Flag bits of struct kcmp_file.flags.
FILE_LOOKED = 0x1
FILE_OPEN = 0x2
FILE_DNAME = 0x4
FILE_UNLINKED = 0x8
FILE_CUT = 0x10


# Named tuples rather than frozen dataclasses: the same immutable values, built several times
# faster, which counts at hundreds of thousands of events a second.
class EpollSlot(NamedTuple):
    efd: int
    tfd: int
    toff: int


class Args(NamedTuple):
    """The arguments as the kernel reads them: pids and type truncated to int32."""

    pid1: int
    pid2: int
    type: int
    idx1: int  # the raw register; an fd only for the types in abi.FD_TYPES
    idx2: int  # for KCMP_EPOLL_TFD, the address of the slot in the caller's memory
    slot: EpollSlot | None  # KCMP_EPOLL_TFD with a readable slot
    slot_fault: bool  # KCMP_EPOLL_TFD whose slot could not be read at entry

    @property
    def fd1(self) -> int:
        return abi.as_uint32(self.idx1)

    @property
    def fd2(self) -> int:
        return abi.as_uint32(self.idx2)

    def fds(self) -> tuple[tuple[str, int, int], ...]:
        """The fds the call names, as (key, whose, fd) with whose 0 for pid1 and 1 for pid2:
        idx1 is pid1's fd; idx2 (KCMP_FILE) and the epoll slot's efd and tfd are pid2's. In
        the order of the kernel's record of them (Event.files)."""
        if self.type == abi.KcmpType.KCMP_FILE:
            return (("idx1", 0, self.fd1), ("idx2", 1, self.fd2))
        if self.type != abi.KcmpType.KCMP_EPOLL_TFD:
            return ()
        if self.slot is None:
            return (("idx1", 0, self.fd1),)
        return (("idx1", 0, self.fd1), ("efd", 1, self.slot.efd), ("tfd", 1, self.slot.tfd))


class KernelFile(NamedTuple):
    """An fd the call named, as its task's fd table held it at the call."""

    open: bool  # False: not open (the call then fails with EBADF)
    inode: int
    dev: int  # the kernel's dev_t: major << 20 | minor
    magic: int  # the file system's
    name: bytes  # the path from the caller's root, or for a pseudo
    pseudo: bool  # file (pipe, socket, anon inode) the name its file system gives it
    deleted: bool
    cut: bool  # longer or deeper than the record holds: name is the path's end

    @property
    def device(self) -> str:
        return f"{self.dev >> 20}:{self.dev & 0xFFFFF}"

    def path(self) -> str | None:
        """What /proc/<pid>/fd/<n> showed at the call; None where not open, or for a pseudo
        file of a file system not known here."""
        if not self.open:
            return None
        name = self.name.decode("utf-8", "surrogateescape")
        if self.pseudo:
            if self.magic == abi.PIPEFS_MAGIC:
                return f"pipe:[{self.inode}]"
            if self.magic == abi.SOCKFS_MAGIC:
                return f"socket:[{self.inode}]"
            if self.magic == abi.ANON_INODE_FS_MAGIC:
                return f"anon_inode:{name}"
            if self.magic in (abi.TMPFS_MAGIC, abi.HUGETLBFS_MAGIC):
                return f"/{name} (deleted)"
            return None
        return ("..." if self.cut else "") + name + (" (deleted)" if self.deleted else "")


class KernelTask(NamedTuple):
    """The caller as the kernel saw it at the call (0: the kernel had none to give)."""

    pidns: int  # namespace inodes; pidns is the caller's own, not its children's
    mntns: int
    netns: int
    userns: int
    utsns: int
    ipcns: int
    cgroupns: int
    ppid: int  # the real parent's tgid, as the host numbers it
    ns_pid: int  # as the caller's pid namespace numbers them
    ns_tid: int
    ns_ppid: int  # 0: the parent is outside the caller's pid namespace
    depth: int  # how many pid namespaces deep (1: the host's), as NSpid: counts them
    uid: int  # real
    gid: int
    euid: int
    egid: int
    cap_effective: int
    exe_ino: int
    exe_name: bytes  # the executable's file name (not its path)
    exe_name_cut: bool  # longer than the record holds
    cgroup: bytes = b""  # its cgroup's own name (the leaf of its path); b"": not read


class KernelTarget(NamedTuple):
    """A task pid1 or pid2 named, as the kernel found it at the call (host pids)."""

    pid: int  # the task's own (a thread's, where a thread was named)
    tgid: int
    ppid: int  # its real parent's tgid
    uid: int  # real
    euid: int
    pidns: int  # namespace inodes (0: none, as for a task that has exited)
    mntns: int
    netns: int
    exiting: bool  # exiting, or a zombie, at the call
    comm: bytes
    cgroup: bytes  # its cgroup's own name; b"": not read


class Policed(NamedTuple):
    """A rule of the policy matched the call at its entry: its index, whether its action was
    carried out, and whether by SIGKILL (else kcmp's access check refused the call)."""
    rule: int
    applied: bool
    killed: bool


class Event(NamedTuple):
    ts_ns: int  # CLOCK_MONOTONIC
    duration_ns: int | None  # None when the entry was not seen
    cgroup_id: int
    tgid: int
    tid: int
    uid: int
    gid: int
    comm: bytes
    ret: int
    compat: bool
    # None when unknown: no entry was seen and the registers could not be read
    args: Args | None
    traced: bool = True  # passed the trace filters; False: streamed only for the EPERM log
    ppid: int = 0  # the caller's parent as the kernel's process table knew it; 0: not known
    own_pidns: bool = True  # the caller was in the monitor's pid namespace at the call
    task: KernelTask | None = None  # the caller as the kernel saw it, where it could say
    seccomp: bool = False  # refused before entry while the caller ran under a seccomp filter
    # idx1; idx2 or the slot's efd; the slot's tfd: the caller's own fds as the kernel saw
    # them (None for one the kernel did not look up: not the caller's, or not read)
    files: tuple[KernelFile | None, ...] | None = None
    priority: bool = False  # streamed through the priority lane
    # A folded record stands for `repeat` calls like the one its thread streamed before, made
    # from ts_ns to last_ns (its duration_ns is their mean); any other stands for one.
    repeat: int = 1
    last_ns: int | None = None
    swept: bool = False  # the call completed an fd sweep the kernel counted (SWEEP_FDS)
    # The tasks pid1 and pid2 named at the call (None for a pid that named none); None where
    # the kernel did not look them up.
    targets: tuple[KernelTarget | None, KernelTarget | None] | None = None
    policed: Policed | None = None

    @property
    def folded(self) -> bool:
        return self.last_ns is not None

    @property
    def errno(self) -> int | None:
        return -self.ret if abi.is_error(self.ret) else None

    @property
    def permission_denied(self) -> bool:
        return self.ret == -abi.EPERM

    @property
    def meaning(self) -> str:
        return abi.result_meaning(self.ret)


# A caller's task repeats from call to call: decoded once per distinct bytes (and the same
# object handed out, which the identity memos downstream rely on).
_TASKS: dict[bytes, KernelTask] = {}
_TASKS_MAX = 4096


def _task(raw: bytes) -> KernelTask:
    key = raw[RAW_EVENT.size:TARGETS_AT]
    task = _TASKS.get(key)
    if task is not None:
        return task
    (pidns, mntns, netns, userns, utsns, ipcns, cgroupns, ppid, ns_pid, ns_tid, ns_ppid, level,
     uid, gid, euid, egid, caps, exe_ino, name_len, _, name, cgroup) = RAW_TASK.unpack(key)
    name = name.split(b"\0", 1)[0]
    task = KernelTask(pidns, mntns, netns, userns, utsns, ipcns, cgroupns, ppid, ns_pid, ns_tid,
                      ns_ppid, level + 1, uid, gid, euid, egid, caps, exe_ino, name,
                      name_len > len(name), cgroup.split(b"\0", 1)[0])
    if len(_TASKS) >= _TASKS_MAX:
        _TASKS.clear()
    _TASKS[key] = task
    return task


_TARGETS: dict[bytes, KernelTarget | None] = {}


def _target(raw: bytes, at: int) -> KernelTarget | None:
    key = raw[at:at + RAW_TARGET.size]
    if key in _TARGETS:
        return _TARGETS[key]
    pid, tgid, ppid, uid, euid, pidns, mntns, netns, flags, comm, cgroup = RAW_TARGET.unpack(key)
    target = None if not flags & TARGET_FOUND else KernelTarget(
        pid, tgid, ppid, uid, euid, pidns, mntns, netns, bool(flags & TARGET_EXITING),
        comm.split(b"\0", 1)[0], cgroup.split(b"\0", 1)[0])
    if len(_TARGETS) >= _TASKS_MAX:
        _TARGETS.clear()
    _TARGETS[key] = target
    return target


def _targets(raw: bytes) -> tuple[KernelTarget | None, KernelTarget | None]:
    return (_target(raw, TARGETS_AT), _target(raw, TARGETS_AT + RAW_TARGET.size))


def _files(raw: bytes) -> tuple[KernelFile | None, ...]:
    found: list[KernelFile | None] = []
    for i in range(FILES):
        ino, dev, magic, flags, length, path = RAW_FILE.unpack_from(
            raw, RECORD_SIZE + i * RAW_FILE.size)
        found.append(None if not flags & FILE_LOOKED else KernelFile(
            bool(flags & FILE_OPEN), ino, dev, magic, path[:length], bool(flags & FILE_DNAME),
            bool(flags & FILE_UNLINKED), bool(flags & FILE_CUT)))
    return tuple(found)


def decode(raw: bytes) -> Event:
    """An Event from the bytes of one ring-buffer record."""
    (ts_ns, duration_ns, cgroup_id, pid1, pid2, kcmp_type, idx1, idx2, ret, tgid, tid, uid, gid,
     efd, tfd, toff, flags, comm, ppid, repeat, last_ns, rule, _) = _DECODE.unpack_from(raw)
    # Positional construction: this runs for every event of the stream.
    if flags & (EV_ENTRY | EV_REGS):
        args = Args(pid1, pid2, kcmp_type, idx1, idx2,
                    EpollSlot(efd, tfd, toff) if flags & EV_SLOT_READ else None,
                    bool(flags & EV_SLOT_FAULT))
    else:
        args = None
    folded = flags & EV_FOLDED
    if not flags & EV_ENTRY:
        duration_ns = None
    elif folded and repeat:
        duration_ns //= repeat  # the kernel sums the folded calls' durations
    return Event(ts_ns, duration_ns, cgroup_id, tgid, tid, uid, gid, comm.split(b"\0", 1)[0],
                 ret, bool(flags & EV_COMPAT), args, bool(flags & EV_TRACE), ppid,
                 bool(flags & EV_OWN_PIDNS), _task(raw) if flags & EV_TASK else None,
                 bool(flags & EV_SECCOMP),
                 _files(raw) if len(raw) >= FILES_RECORD_SIZE else None,
                 bool(flags & EV_PRIORITY), repeat if folded else 1,
                 last_ns if folded else None, bool(flags & EV_SWEEP),
                 _targets(raw) if flags & EV_TARGETS else None,
                 Policed(rule, bool(flags & EV_APPLIED), bool(flags & EV_KILLED))
                 if flags & EV_POLICY else None)


# Where each field of struct kcmp_event starts.
OFFSETS = {name: struct.calcsize("<" + "".join(code for _, code in LAYOUT[:i]))
           for i, (name, _) in enumerate(LAYOUT)}
_RET = struct.Struct("<q")
_FLAGS = struct.Struct("<I")


def peek(raw: bytes) -> tuple[int, int]:
    """A record's result and flags alone: what the logs' gate reads before any decoding."""
    return _RET.unpack_from(raw, OFFSETS["ret"])[0], _FLAGS.unpack_from(raw, OFFSETS["flags"])[0]
