"""The kcmp(2) ABI: every kcmp constant the project uses, and nothing that imports BCC.

Sources: include/uapi/linux/kcmp.h, kernel/kcmp.c, FreeBSD sys/unistd.h; see
shared notes kcmp-reference.md. Where a man page and the kernel disagree, the kernel wins.
"""

from __future__ import annotations

import enum
import errno as _errno
import os
import platform
import struct


class KcmpType(enum.IntEnum):
    """Linux's kcmp types (include/uapi/linux/kcmp.h)."""

    KCMP_FILE = 0
    KCMP_VM = 1
    KCMP_FILES = 2
    KCMP_FS = 3
    KCMP_SIGHAND = 4
    KCMP_IO = 5
    KCMP_SYSVSEM = 6
    KCMP_EPOLL_TFD = 7


# A count of types, not a type: the kernel answers EINVAL for it like any other unknown value.
KCMP_TYPES = 8

# Types whose idx1/idx2 the kernel reads; the others ignore both.
FD_TYPES = frozenset({KcmpType.KCMP_FILE, KcmpType.KCMP_EPOLL_TFD})
IDX_IGNORED_TYPES = frozenset(KcmpType) - FD_TYPES

SYSCALL_NR = {
    "x86_64": 312,
    "i386": 349,  # also 32-bit (compat) callers on x86_64
    "aarch64": 272,
    "riscv64": 272,
    "loongarch64": 272,
    "arm": 378,
    "ppc64le": 354,
    "s390x": 343,
}
IA32_NR_KCMP = SYSCALL_NR["i386"]


def is_x86_64(machine: str | None = None) -> bool:
    """x86_64: the only machine with the i386 entry that 32-bit kcmp callers take, and with
    the ordering (TSO) our own ring-buffer reader relies on."""
    return (machine or platform.machine()) == "x86_64"

# struct kcmp_epoll_slot { __u32 efd, tfd, toff; }: 12 bytes (the man page's 64-bit toff is wrong).
EPOLL_SLOT = struct.Struct("<III")

RESULT_MEANINGS = {0: "same", 1: "less", 2: "greater", 3: "unordered"}

# Every errno kcmp can return, with glibc's message (what strace prints).
ERRNOS = {
    _errno.EPERM: ("EPERM", "Operation not permitted"),
    _errno.ENOENT: ("ENOENT", "No such file or directory"),
    _errno.ESRCH: ("ESRCH", "No such process"),
    _errno.EINTR: ("EINTR", "Interrupted system call"),
    _errno.EBADF: ("EBADF", "Bad file descriptor"),
    _errno.EFAULT: ("EFAULT", "Bad address"),
    _errno.EINVAL: ("EINVAL", "Invalid argument"),
    _errno.ENOSYS: ("ENOSYS", "Function not implemented"),
    _errno.EOPNOTSUPP: ("EOPNOTSUPP", "Operation not supported"),
}
EPERM = _errno.EPERM
ENOSYS = _errno.ENOSYS
ESRCH = _errno.ESRCH

# clone(2) flags (<linux/sched.h>) that decide who a new task's parent is.
CLONE_PARENT = 0x00008000
CLONE_THREAD = 0x00010000

# File systems whose files /proc/<pid>/fd names by the file system (<linux/magic.h>), and
# the names they give: "pipe:[inode]", "socket:[inode]", "anon_inode:" and the dentry's name;
# the internal tmpfs and hugetlbfs mounts (memfd_create, SysV shm) "/name (deleted)".
PIPEFS_MAGIC = 0x50495045
SOCKFS_MAGIC = 0x534F434B
ANON_INODE_FS_MAGIC = 0x09041934
TMPFS_MAGIC = 0x01021994
HUGETLBFS_MAGIC = 0x958458F6

# A task filtering its syscalls through seccomp (<linux/seccomp.h>: task_struct.seccomp.mode).
SECCOMP_MODE_FILTER = 2

# THREAD_SIZE: a task's kernel stack, whose top holds the user registers saved at syscall
# entry. Not in BTF; 16 KiB on x86_64 (32 KiB under KASAN, where the saved syscall number
# then fails the program's check and nothing is read).
THREAD_SIZE = {"x86_64": 16384}

# ioctl on a /proc/<pid>/ns/pid fd: an fd of the parent pid namespace (<linux/nsfs.h>).
NS_GET_PARENT = 0xB702

# Capabilities (<linux/capability.h>) the monitor checks for or keeps.
CAP_DAC_READ_SEARCH = 2
CAP_SETGID = 6
CAP_SETUID = 7
CAP_SETPCAP = 8
CAP_SYS_PTRACE = 19
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39
CAP_LAST_CAP = 40

# The kernel returns errors as -1..-4095 (MAX_ERRNO).
MAX_ERRNO = 4095


def may_ptrace(cap_effective: int) -> bool:
    """Whether capabilities hold CAP_SYS_PTRACE, which lets kcmp compare any process."""
    return bool(cap_effective >> CAP_SYS_PTRACE & 1)


def ns_link_inode(text: str) -> int | None:
    """The inode in what a /proc/PID/ns link reads ("pid:[4026531836]"); None if not that."""
    kind, _, rest = text.partition(":[")
    if not kind or not rest.endswith("]") or not rest[:-1].isdigit():
        return None
    return int(rest[:-1])


def as_int32(value: int) -> int:
    """The low 32 bits as a signed int, as the kernel takes pid1, pid2 and type."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def as_uint32(value: int) -> int:
    """The low 32 bits as an unsigned int, as the kernel takes file descriptors."""
    return value & 0xFFFFFFFF


def type_name(kcmp_type: int) -> str | None:
    """The Linux name of a type, or None for KCMP_TYPES and anything else unknown."""
    try:
        return KcmpType(kcmp_type).name
    except ValueError:
        return None


def parse_type(text: str) -> int:
    """A type from its name (with or without KCMP_, any case) or its number 0..7."""
    word = text.strip().upper()
    if word.isdigit() and int(word) in KcmpType._value2member_map_:
        return int(word)
    name = word if word.startswith("KCMP_") else "KCMP_" + word
    try:
        return KcmpType[name].value
    except KeyError:
        known = ", ".join(t.name[5:] for t in KcmpType)
        raise ValueError(f"unknown kcmp type {text!r} (known: {known}, or 0..7)") from None


def is_error(ret: int) -> bool:
    return -MAX_ERRNO <= ret < 0


def errno_name(err: int) -> str:
    """The symbolic name of an errno, falling back to the platform table, then the number."""
    if err in ERRNOS:
        return ERRNOS[err][0]
    return _errno.errorcode.get(err, f"E{err}")


def errno_message(err: int) -> str:
    if err in ERRNOS:
        return ERRNOS[err][1]
    return os.strerror(err)


def result_meaning(ret: int) -> str:
    """'same', 'less', 'greater', 'unordered', 'error', or 'unknown' for anything else."""
    if is_error(ret):
        return "error"
    return RESULT_MEANINGS.get(ret, "unknown")


# The bpf(2) syscall, for what BCC does not expose: a program's run time and count.
# Offsets of the UAPI struct bpf_prog_info and union bpf_attr (stable, append-only);
# tests/unit/test_abi.py checks them against <linux/bpf.h>.
BPF_SYSCALL_NR = {"x86_64": 321, "aarch64": 280, "riscv64": 280}
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_INFO_RUN_TIME_NS = 192
BPF_PROG_INFO_RUN_CNT = 200
BPF_PROG_INFO_SIZE = 208  # through run_cnt: older kernels accept a shorter struct
# Loading and attaching an fexit program, to ask whether BPF trampolines work here: commands,
# the program and attach types, and the offsets of union bpf_attr's members for them.
BPF_PROG_LOAD = 5
BPF_RAW_TRACEPOINT_OPEN = 17
BPF_PROG_TYPE_TRACING = 26
BPF_TRACE_FEXIT = 25
BPF_ATTR_EXPECTED_ATTACH_TYPE = 68
BPF_ATTR_ATTACH_BTF_ID = 108
BPF_ATTR_SIZE = 128
BTF_KIND_FUNC = 12

# A task that has begun to exit, and a kernel thread (<linux/sched.h>: task_struct.flags), the
# same since 2.6.
PF_EXITING = 0x00000004
PF_KTHREAD = 0x00200000
SIGKILL = 9

# A task in a 32-bit syscall (x86's thread_info.status, <asm/thread_info.h>): what the kernel's
# in_ia32_syscall() tests, the same from 4.x to 6.18.
TS_COMPAT = 0x0002


# The widths the kernel holds ids in: pid_t up to PID_MAX_LIMIT (2^22 on 64-bit), uid_t 32
# bits of which (uid_t)-1 means "none".
PID_MAX_LIMIT = 1 << 22
UID_MAX = (1 << 32) - 2
