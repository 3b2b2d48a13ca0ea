"""Probe mode: ask kcmp itself which kernel resources processes share, and which of their fds
are the same open file description (the way CRIU groups them)."""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Callable

from .. import abi
from ..context.procfs import ProcFS
from ..errors import (MonitorError, NoPermission, NoSuchTarget, ProbeTimeout, Unavailable,
                      UsageError)
from .kcmpcall import KcmpError, KcmpFn, epoll_slot

K = abi.KcmpType
CALL_TIMEOUT_S = 5.0

# The types that ignore idx1/idx2, with what they compare.
PAIR_TYPES = (
    (K.KCMP_VM, "address space"),
    (K.KCMP_FILES, "file descriptor table"),
    (K.KCMP_FS, "fs info (root, cwd, umask)"),
    (K.KCMP_SIGHAND, "signal handlers"),
    (K.KCMP_IO, "I/O context"),
    (K.KCMP_SYSVSEM, "SysV semaphore undo list"),
)
LAZY = "allocated lazily: two tasks that never made one also compare equal"
EXITING = "a zombie or exiting task has none: any two such compare equal"


@dataclass(frozen=True)
class Task:
    pid: int
    tgid: int
    name: str
    state: str  # the letter of /proc/<pid>/stat: R, S, D, T, t, Z, X, ...
    threads: tuple[int, ...]

    @property
    def exiting(self) -> bool:
        return self.state in "ZX"


class Proc(ProcFS):
    """/proc as the probe needs it: a process or fd that is not there, or may not be looked
    at, ends the probe with what to do about it."""

    def task(self, pid: int) -> Task:
        try:
            with open(f"{self.root}/{pid}/status", "rb") as f:
                fields = dict(line.rstrip(b"\n").split(b":\t", 1) for line in f if b":\t" in line)
            threads = tuple(sorted(int(t) for t in os.listdir(f"{self.root}/{pid}/task")))
        except FileNotFoundError:
            raise NoSuchTarget(f"no process {pid}") from None
        except PermissionError:
            raise NoPermission(f"cannot read /proc/{pid}: run it as root") from None
        return Task(pid=pid, tgid=int(fields[b"Tgid"]),
                    name=fields[b"Name"].decode("utf-8", "backslashreplace"),
                    state=fields[b"State"][:1].decode(), threads=threads)

    def fds(self, pid: int) -> list[int]:
        try:
            return sorted(int(fd) for fd in os.listdir(f"{self.root}/{pid}/fd"))
        except FileNotFoundError:
            raise NoSuchTarget(f"no process {pid}") from None
        except PermissionError:
            raise NoPermission(f"cannot list the fds of {pid}: CAP_SYS_PTRACE "
                               "(root) or the same uid is needed") from None

    def fd_key(self, pid: int, fd: int) -> tuple[int, int] | None:
        """(device, inode) of what the fd points to; None once it is closed. PermissionError
        where this process may not look (pid 1 refuses even root on some systems)."""
        try:
            st = os.stat(f"{self.root}/{pid}/fd/{fd}")
        except PermissionError:
            raise
        except OSError:
            return None
        return st.st_dev, st.st_ino


def fatal(err: KcmpError, what: str) -> MonitorError:
    """The errors that end a probe, each with what to do about it."""
    if err.errno == errno.EPERM:
        return NoPermission(f"{what}: EPERM: kcmp needs CAP_SYS_PTRACE (root) or the same uid "
                            "as both processes (and no LSM refusing it)")
    if err.errno == errno.ESRCH:
        return NoSuchTarget(f"{what}: ESRCH: no such process (it may have exited)")
    if err.errno == errno.ENOSYS:
        return Unavailable("this kernel has no kcmp: it needs CONFIG_KCMP "
                           "(or CONFIG_CHECKPOINT_RESTORE)")
    return MonitorError(f"{what}: {abi.errno_name(err.errno)} ({abi.errno_message(err.errno)})")


class WatchedKcmp:
    """kcmp calls, counted, each watched for a timeout by the thread that runs the probe."""

    def __init__(self, kcmp: KcmpFn) -> None:
        self._kcmp = kcmp
        self.calls = 0
        self.busy_since: float | None = None

    def __call__(self, pid1: int, pid2: int, kcmp_type: int, idx1: int = 0,
                 idx2: int = 0) -> int:
        self.calls += 1
        self.busy_since = time.monotonic()
        try:
            return self._kcmp(pid1, pid2, kcmp_type, idx1, idx2)
        finally:
            self.busy_since = None


def run_watched(fn: Callable[[], object], caller: WatchedKcmp,
                timeout: float = CALL_TIMEOUT_S) -> object:
    """Run fn in a worker thread; a kcmp call that blocks (a target in execve) for longer than
    the timeout raises ProbeTimeout here. Signals keep reaching this (main) thread."""
    result: dict = {}

    def work():
        try:
            result["value"] = fn()
        except BaseException as exc:  # handed over to the main thread below
            result["error"] = exc

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.05)
        since = caller.busy_since
        if since is not None and time.monotonic() - since > timeout:
            raise ProbeTimeout(f"a kcmp call blocked for more than {timeout:g} s "
                               "(is a target in execve?)")
    if "error" in result:
        raise result["error"]
    return result.get("value")


@dataclass(frozen=True)
class Answer:
    kcmp_type: int
    resource: str
    result: int | None  # 0 shared, 1/2 not; None on error
    errno: int | None
    caveat: str | None

    @property
    def shared(self) -> bool | None:
        return None if self.result is None else self.result == 0


@dataclass
class PairReport:
    task1: Task
    task2: Task
    answers: list[Answer]
    notes: list[str]


def task_notes(task: Task) -> list[str]:
    notes = []
    if task.tgid != task.pid:
        notes.append(f"{task.pid} is a thread of process {task.tgid}: kcmp compares that "
                     "thread's resources")
    if task.exiting:
        live = [t for t in task.threads if t != task.pid]
        hint = f"; probe a live thread instead: {live[0]}" if live else ""
        notes.append(f"{task.pid} is a zombie or exiting ({task.state}){hint}")
    return notes


def probe_pair(pid1: int, pid2: int, kcmp: KcmpFn, proc: Proc) -> PairReport:
    task1, task2 = proc.task(pid1), proc.task(pid2)
    answers = []
    for kcmp_type, resource in PAIR_TYPES:
        try:
            result, err = kcmp(pid1, pid2, kcmp_type), None
        except KcmpError as exc:
            if exc.errno in (errno.EPERM, errno.ESRCH, errno.ENOSYS):
                raise fatal(exc, f"kcmp({pid1}, {pid2}, {kcmp_type.name})") from None
            result, err = None, exc.errno
        caveat = None
        if result == 0 and kcmp_type in (K.KCMP_IO, K.KCMP_SYSVSEM):
            caveat = LAZY
        elif result == 0 and (task1.exiting or task2.exiting) and kcmp_type in (
                K.KCMP_VM, K.KCMP_FILES, K.KCMP_FS):
            caveat = EXITING
        answers.append(Answer(kcmp_type, resource, result, err, caveat))
    return PairReport(task1, task2, answers, task_notes(task1) + task_notes(task2))


@dataclass
class FdReport:
    pid1: int
    fd1: int
    path1: str | None
    pid2: int
    fd2: int
    path2: str | None
    result: int


def _require_fd(proc: Proc, pid: int, fd: int, what: str = "fd") -> None:
    proc.task(pid)
    try:
        missing = proc.fd_key(pid, fd) is None and proc.fd_path(pid, fd) is None
    except PermissionError:
        raise NoPermission(f"cannot read the fds of {pid}: CAP_SYS_PTRACE (root) or the same "
                           "uid is needed") from None
    if missing:
        raise NoSuchTarget(f"{what} {fd} is not open in process {pid}")


def probe_fd(pid1: int, fd1: int, pid2: int, fd2: int, kcmp: KcmpFn, proc: Proc) -> FdReport:
    _require_fd(proc, pid1, fd1)
    _require_fd(proc, pid2, fd2)
    try:
        result = kcmp(pid1, pid2, K.KCMP_FILE, fd1, fd2)
    except KcmpError as exc:
        if exc.errno == errno.EBADF:
            raise NoSuchTarget(f"EBADF: {pid1}:{fd1} or {pid2}:{fd2} closed during the probe") \
                from None
        raise fatal(exc, f"kcmp({pid1}, {pid2}, KCMP_FILE, {fd1}, {fd2})") from None
    return FdReport(pid1, fd1, proc.fd_path(pid1, fd1), pid2, fd2, proc.fd_path(pid2, fd2),
                    result)


@dataclass
class EpollReport:
    pid1: int
    fd: int
    path: str | None
    pid2: int
    efd: int
    tfd: int
    toff: int
    target_path: str | None
    result: int | None  # 0: fd is that target; 1/2: the target is another file; None: none
    errno: int | None  # ENOENT: no such target registered


def probe_epoll(pid1: int, fd: int, pid2: int, efd: int, tfd: int, toff: int, kcmp: KcmpFn,
                proc: Proc) -> EpollReport:
    _require_fd(proc, pid1, fd)
    _require_fd(proc, pid2, efd, "epoll fd")
    slot = epoll_slot(efd, tfd, toff)
    result, err = None, None
    try:
        result = kcmp(pid1, pid2, K.KCMP_EPOLL_TFD, fd, ctypes.addressof(slot))
    except KcmpError as exc:
        if exc.errno == errno.EINVAL:
            raise UsageError(f"EINVAL: fd {efd} of process {pid2} is not an epoll fd") from None
        if exc.errno == errno.EOPNOTSUPP:
            raise Unavailable("this kernel has no KCMP_EPOLL_TFD (it needs CONFIG_EPOLL)") \
                from None
        if exc.errno != errno.ENOENT:
            raise fatal(exc, f"kcmp({pid1}, {pid2}, KCMP_EPOLL_TFD, {fd}, ...)") from None
        err = exc.errno
    return EpollReport(pid1, fd, proc.fd_path(pid1, fd), pid2, efd, tfd, toff,
                       proc.fd_path(pid2, tfd), result, err)


@dataclass(frozen=True, order=True)
class FdRef:
    pid: int
    fd: int


@dataclass
class Group:
    path: str
    members: list[FdRef]


@dataclass
class SharedFiles:
    pids: list[int]
    groups: list[Group] = field(default_factory=list)
    gone: list[tuple[FdRef, str]] = field(default_factory=list)  # closed or exited mid-probe
    skipped: list[tuple[int, str]] = field(default_factory=list)  # whole processes left out
    fds: int = 0
    calls: int = 0

    @property
    def naive_pairs(self) -> int:
        return self.fds * (self.fds - 1) // 2


class _Gone(Exception):
    def __init__(self, ref: FdRef, reason: str) -> None:
        super().__init__(reason)
        self.ref = ref
        self.reason = reason


def shared_files(pids: Iterable[int], kcmp: KcmpFn, proc: Proc,
                 strict: bool = True) -> SharedFiles:
    """Every fd of these processes grouped into open file descriptions: bucket by the target's
    (device, inode), sort each bucket with kcmp as the comparator, merge equal neighbours.

    strict: every PID was named by the user, so one that is missing or not permitted ends the
    probe; otherwise (all processes) it is skipped and listed."""
    pids = sorted(set(pids))
    report = SharedFiles(pids=pids)
    if strict:
        for pid in pids:
            proc.task(pid)
    buckets: dict[tuple[int, int], list[FdRef]] = defaultdict(list)
    for pid in pids:
        try:
            refs = [(fd, proc.fd_key(pid, fd)) for fd in proc.fds(pid)]
        except NoSuchTarget:
            report.skipped.append((pid, "exited"))
            continue
        except (NoPermission, PermissionError):
            if strict:
                raise NoPermission(f"cannot read the fds of {pid}: CAP_SYS_PTRACE (root) or "
                                   "the same uid is needed") from None
            report.skipped.append((pid, "not permitted"))
            continue
        for fd, key in refs:
            report.fds += 1
            if key is None:
                report.gone.append((FdRef(pid, fd), "closed"))
            else:
                buckets[key].append(FdRef(pid, fd))
    known: dict[tuple[FdRef, FdRef], int] = {}
    mirror = {0: 0, 1: 2, 2: 1}

    def compare(a: FdRef, b: FdRef) -> int:
        if (a, b) not in known:
            try:
                result = kcmp(a.pid, b.pid, K.KCMP_FILE, a.fd, b.fd)
            except KcmpError as exc:
                raise _Gone(_culprit(a, b, exc), abi.errno_name(exc.errno)) from None
            known[a, b], known[b, a] = result, mirror.get(result, result)
        return {0: 0, 1: -1, 2: 1}.get(known[a, b], 1)

    def _culprit(a: FdRef, b: FdRef, exc: KcmpError) -> FdRef:
        if exc.errno == errno.EPERM:
            raise fatal(exc, f"kcmp({a.pid}, {b.pid}, KCMP_FILE, {a.fd}, {b.fd})")
        for ref in (a, b):  # the one that no longer compares with itself is gone
            try:
                kcmp(ref.pid, ref.pid, K.KCMP_FILE, ref.fd, ref.fd)
            except KcmpError:
                return ref
        return a

    def runs_of(members: list[FdRef]) -> list[list[FdRef]]:
        """Equal runs after sorting; a member that fails the comparator is dropped and the
        bucket sorted again, so a closed fd or an exited process cannot corrupt a group."""
        while len(members) > 1:
            try:
                ordered = sorted(members, key=functools.cmp_to_key(compare))
                runs = [[ordered[0]]]
                for prev, cur in zip(ordered, ordered[1:]):
                    if compare(prev, cur) == 0:
                        runs[-1].append(cur)
                    else:
                        runs.append([cur])
                return runs
            except _Gone as gone:
                members = [m for m in members if m != gone.ref]
                report.gone.append((gone.ref, gone.reason))
        return []

    for members in buckets.values():
        for run in runs_of(members):
            if len(run) > 1:
                path = proc.fd_path(run[0].pid, run[0].fd) or "?"
                report.groups.append(Group(path, sorted(run)))
    report.groups.sort(key=lambda g: g.members[0])
    report.gone.sort()
    return report
