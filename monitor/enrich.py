"""What /proc and the kernel's process table add to an event when it is decoded: who the
caller and the two targets really are (host pids, names, owners, parents, namespaces,
container), fd paths, and whether the call crossed a namespace or container boundary.

pid1 and pid2 are numbers in the caller's pid namespace, while /proc here is the monitor's:
for a caller in another pid namespace (a container) they are first translated to host pids,
through the NSpid: lines of the processes in that namespace. Where that cannot be done (the
namespace cannot be read without CAP_SYS_PTRACE, or a pid is not found), nothing is looked up
rather than something wrong reported, and the event says what was left unresolved.
A process gone before its event is decoded is known from the kernel's process table (its
name and parent) when the program keeps one.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from collections import OrderedDict
from typing import NamedTuple, Protocol

from . import abi
from .events import Event

# An fd above INT_MAX cannot be open; /proc would only be asked in vain.
_FD_MAX = 0x7FFFFFFF


# A container's id in a cgroup path: docker, containerd (CRI), CRI-O, podman, kubepods.
_CONTAINER = re.compile(rb"(?:docker|cri-containerd|crio|libpod|kubepods)[^\n]*?[-/:]"
                        rb"([0-9a-f]{64})(?:\.scope)?(?:/|$)", re.M)

# The kinds of boundary a call can cross, in the order they are reported.
BOUNDARIES = ("pid", "mnt", "net", "container")


class KernelTable(Protocol):
    def process(self, pid: int) -> tuple[int, bytes] | None: ...


class Caller(NamedTuple):
    """Who made the call, beyond what the kernel's record says (None: not readable)."""

    ns_pid: int | None  # the caller's pid as its own pid namespace numbers it
    ns_tid: int | None
    host_ppid: int | None
    ns_ppid: int | None  # 0 when the parent lies outside the caller's pid namespace
    pidns: int | None  # namespace inodes (need ptrace access to the caller)
    mntns: int | None
    container_id: str | None  # "" for none; None when the cgroup could not be read
    exe: str | None
    netns: int | None = None
    netns_name: str | None = None  # as `ip netns` names it
    depth: int | None = None  # how many pid namespaces deep (entries of NSpid:)
    gone: bool = False  # had exited: what is known came from the event and the process table


class Target(NamedTuple):
    """A process named by pid1 or pid2, as the host sees it (None: not readable)."""

    host_pid: int
    name: bytes | None
    uid: int | None  # effective
    host_ppid: int | None
    pidns: int | None
    mntns: int | None
    netns: int | None
    netns_name: str | None
    container_id: str | None
    gone: bool = False  # known only from the kernel's process table


class Context(NamedTuple):
    """What was learnt about an event beyond the kernel's record (a named tuple: one is made
    per event)."""

    # "idx1", "idx2", "efd", "tfd" -> the fd's path as `strace -y` shows it, where resolvable.
    paths: dict[str, str] = {}  # shared by the contexts with no paths, and never mutated
    # Whether the caller was in the monitor's pid namespace (the kernel says, at the call).
    same_pidns: bool | None = None
    # For a caller in another pid namespace: the host pids of pid1 and pid2, where found.
    host_pids: tuple[int | None, int | None] | None = None
    caller: Caller | None = None
    # pid1's and pid2's processes (each None where not found); None when not looked up.
    targets: tuple[Target | None, Target | None] | None = None
    crossings: tuple[str, ...] = ()  # the BOUNDARIES between the caller and a target
    unresolved: tuple[str, ...] = ()  # "caller", "pid1", "pid2": existed, but not found

    @property
    def owners(self) -> tuple[int | None, int | None] | None:
        """The effective uids of pid1's and pid2's processes, where known."""
        if self.targets is None:
            return None
        return tuple(t.uid if t is not None else None for t in self.targets)


def crossings(caller: Caller, targets) -> tuple[str, ...]:
    """The boundaries between the caller and any target, where both sides are known."""
    found = []
    for kind, field in zip(BOUNDARIES, ("pidns", "mntns", "netns", "container_id")):
        mine = getattr(caller, field)
        if mine is not None and any(
                t is not None and getattr(t, field) is not None and getattr(t, field) != mine
                for t in targets):
            found.append(kind)
    return tuple(found)


class ProcReader:
    """Reads /proc (or a tree laid out like it, for tests)."""

    CALLERS = 4096  # callers remembered
    CALLER_TTL_NS = 5_000_000_000  # after which a caller is read again (pid reuse)
    TARGETS = 4096
    TARGET_TTL_NS = 1_000_000_000  # a target is not validated by its name: kept shorter
    MISSING_TTL_NS = 100_000_000  # a pid found nowhere (an ESRCH flood must stay cheap)
    # A namespace's table of pids is read again on a miss, at most this often (a pid that
    # does not exist, as in an ESRCH call, must not cost a scan of /proc per event).
    RESCAN_S = 0.1

    def __init__(self, root: str = "/proc", sockets=None, netns=None,
                 kernel: KernelTable | None = None, cgroups=None) -> None:
        """sockets: a sockets.SocketResolver to show what socket fds are connected to;
        netns: a sockets.NetnsNames to name network namespaces; kernel: the program's
        process table, and cgroups: a cgroups.CgroupPaths, for processes gone from /proc
        (all optional)."""
        self.root = root
        self.sockets = sockets
        self.netns = netns
        self.kernel = kernel
        self.cgroups = cgroups
        self.own_depth = self._nspid_depth("self")
        self.own_pidns = self._ns("self", "pid")
        # pid namespace inode -> ({pid in that namespace: host pid}, when it was read)
        self._ns_pids: dict[int, tuple[dict[int, int], float]] = {}
        # (tgid, tid) -> (comm, when read, the caller's Context with nothing looked up): a
        # process that exec'd, or read longer ago than the time to live, is read again
        self._callers: OrderedDict[tuple[int, int], tuple[bytes, int, Context]] = OrderedDict()
        # host pid -> (when read, the Target or None)
        self._targets: OrderedDict[int, tuple[int, Target | None]] = OrderedDict()
        # Contexts by the identity of the cached caller and targets they were made of (the
        # objects are kept in the value, so an id cannot be reused meanwhile).
        self._contexts: dict[tuple, tuple] = {}
        # (pid namespace inode, levels up) -> the ancestor namespace's inode (never changes)
        self._ancestors: dict[tuple[int, int], int | None] = {}

    def context(self, bare: Context, t1: Target | None, t2: Target | None,
                host_pids: tuple | None, existed: bool) -> Context:
        """A caller's context with its targets, crossings and what is unresolved; no paths.
        The same cached caller and targets meet again and again: made once for them."""
        key = (id(bare), id(t1), id(t2), host_pids, existed)
        hit = self._contexts.get(key)
        if hit is not None and hit[0] is bare and hit[1] is t1 and hit[2] is t2:
            return hit[3]
        caller = bare.caller
        unresolved = ("caller",) if caller.gone and caller.host_ppid is None else ()
        if existed:  # both pids named processes: one not found now is unresolved
            unresolved += tuple(name for name, t in (("pid1", t1), ("pid2", t2)) if t is None)
        ctx = Context(same_pidns=bare.same_pidns, host_pids=host_pids, caller=caller,
                      targets=(t1, t2), crossings=crossings(caller, (t1, t2)),
                      unresolved=unresolved)
        if len(self._contexts) >= self.CALLERS:
            self._contexts.clear()
        self._contexts[key] = (bare, t1, t2, ctx)
        return ctx

    def caller(self, event: Event) -> Context:
        """The caller's context, nothing looked up yet."""
        key = (event.tgid, event.tid)
        hit = self._callers.get(key)
        if hit and hit[0] == event.comm and event.ts_ns - hit[1] < self.CALLER_TTL_NS:
            return hit[2]
        bare = Context(same_pidns=event.own_pidns, caller=self._read_caller(event))
        self._callers[key] = (event.comm, event.ts_ns, bare)
        self._callers.move_to_end(key)
        if len(self._callers) > self.CALLERS:
            self._callers.popitem(last=False)
        return bare

    def target(self, pid: int | None, now_ns: int) -> Target | None:
        """The process of a host pid (None: found neither in /proc nor the process table)."""
        if pid is None or pid <= 0:
            return None
        hit = self._targets.get(pid)
        if hit is not None:
            ttl = self.TARGET_TTL_NS if hit[1] is not None else self.MISSING_TTL_NS
            if now_ns - hit[0] < ttl:
                return hit[1]
        found = self._read_target(pid)
        self._targets[pid] = (now_ns, found)
        self._targets.move_to_end(pid)
        if len(self._targets) > self.TARGETS:
            self._targets.popitem(last=False)
        return found

    def _read_target(self, pid: int) -> Target | None:
        status = self._status(pid, (b"PPid:", b"Uid:"))
        if status is None:
            known = self.kernel.process(pid) if self.kernel is not None else None
            if known is None:
                return None
            return Target(pid, known[1], None, known[0] or None, None, None, None, None, None,
                          gone=True)
        netns = self._ns(pid, "net")
        return Target(pid, self._comm(pid), _uid(status.get(b"Uid:")),
                      _first(status.get(b"PPid:")), self._ns(pid, "pid"), self._ns(pid, "mnt"),
                      netns, self._netns_name(netns), self._container(pid))

    def _read_caller(self, event: Event) -> Caller:
        tgid, tid = event.tgid, event.tid
        status = self._status(tgid, (b"NSpid:", b"PPid:"))
        if status is None:
            return self._gone_caller(event)
        nspid = status.get(b"NSpid:")
        host_ppid = _first(status.get(b"PPid:"))
        ns_ppid = None
        parent = self._status_field(host_ppid, b"NSpid:") if nspid and host_ppid else None
        if parent:
            # The parent is in the caller's namespace when it is as deep or deeper.
            ns_ppid = int(parent[len(nspid) - 1]) if len(parent) >= len(nspid) else 0
        ns_tid = None
        if nspid and (tid == tgid or len(nspid) == 1):  # the main thread, or the host's view
            ns_tid = int(nspid[-1]) if tid == tgid else tid
        elif nspid:  # another thread in a namespace: None once it has gone
            tids = self._status_field(f"{tgid}/task/{tid}", b"NSpid:")
            ns_tid = int(tids[-1]) if tids else None
        try:
            exe = os.readlink(f"{self.root}/{tgid}/exe".encode()).decode("utf-8",
                                                                          "surrogateescape")
        except OSError:
            exe = None
        netns = self._ns(tgid, "net")
        return Caller(ns_pid=int(nspid[-1]) if nspid else None, ns_tid=ns_tid,
                      host_ppid=host_ppid, ns_ppid=ns_ppid,
                      pidns=self._ns(tgid, "pid"), mntns=self._ns(tgid, "mnt"),
                      container_id=self._container(tgid), exe=exe, netns=netns,
                      netns_name=self._netns_name(netns), depth=len(nspid) if nspid else None)

    def _gone_caller(self, event: Event) -> Caller:
        """A caller that exited before its event was read: its parent and cgroup from the
        event, and its pid namespace when the kernel said it was the monitor's."""
        ppid = event.ppid or None
        path = self.cgroups.path(event.cgroup_id) if self.cgroups is not None else None
        container = None if path is None else _container_in(path.encode())
        if not event.own_pidns:
            return Caller(None, None, ppid, None, None, None, container, None, gone=True)
        return Caller(event.tgid, event.tid, ppid, ppid, self.own_pidns, None, container, None,
                      depth=self.own_depth, gone=True)

    def _netns_name(self, inode: int | None) -> str | None:
        return self.netns.name(inode) if self.netns is not None and inode else None

    def _container(self, pid: int) -> str | None:
        try:
            with open(f"{self.root}/{pid}/cgroup", "rb") as f:
                return _container_in(f.read())
        except OSError:
            return None

    def _comm(self, pid: int) -> bytes | None:
        try:
            with open(f"{self.root}/{pid}/comm", "rb") as f:
                return f.read().rstrip(b"\n")
        except OSError:
            return None

    def _status(self, pid: int | str, names: tuple[bytes, ...]) -> dict[bytes, list[bytes]] | None:
        """The named lines of a process's status (None: no such process here)."""
        found: dict[bytes, list[bytes]] = {}
        try:
            with open(f"{self.root}/{pid}/status", "rb") as status:
                for line in status:
                    name = line.split(b"\t", 1)[0]
                    if name in names:
                        found[name] = line.split()[1:]
                        if len(found) == len(names):
                            break
        except OSError:
            return None
        return found

    def existing(self):
        """(pid, parent, name) of every process now in /proc: what the kernel's process
        table cannot have seen start."""
        for entry in os.listdir(self.root):
            if not entry.isdigit():
                continue
            try:
                with open(f"{self.root}/{entry}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            # "pid (name) state ppid ...": the name may hold spaces and parentheses.
            left, right = stat.find(b"("), stat.rfind(b")")
            fields = stat[right + 2:].split()
            if left < 0 or right < left or len(fields) < 2:
                continue
            yield int(entry), int(fields[1]), stat[left + 1:right]

    def _ns(self, pid: int | str, kind: str) -> int | None:
        try:
            return os.stat(f"{self.root}/{pid}/ns/{kind}").st_ino
        except OSError:
            return None

    def _status_field(self, pid: int | str, name: bytes) -> list[bytes] | None:
        status = self._status(pid, (name,))
        return None if status is None else status.get(name)

    def _nspid_depth(self, pid: int | str) -> int | None:
        """How many pid namespaces deep a process is (NSpid: has one number per level)."""
        nspid = self._status_field(pid, b"NSpid:")
        return len(nspid) if nspid else None

    def translate(self, tgid: int, tid: int, caller: Caller,
                  pids: tuple[int, ...]) -> tuple[int | None, ...] | None:
        """The host pids of pids numbered in the caller's pid namespace (None for one not
        found); None when the caller's namespace cannot be read. caller: as caller() read
        the thread tid of process tgid (a process's pid namespace never changes)."""
        ns, depth = caller.pidns, caller.depth
        if ns is None or depth is None or caller.ns_pid is None:
            return None
        table, when = self._ns_pids.get(ns, ({}, -self.RESCAN_S))
        table[caller.ns_pid] = tgid  # the caller and its thread are known without a scan
        if caller.ns_tid is not None:
            table[caller.ns_tid] = tid
        for p in pids:  # a pid reused since the scan must not keep its old host pid
            if p in table and not self._still(table[p], p, depth):
                del table[p]
        if any(p not in table for p in pids) and time.monotonic() - when >= self.RESCAN_S:
            table = self._scan(ns, depth)
            when = time.monotonic()
        self._ns_pids[ns] = (table, when)
        return tuple(table.get(p) for p in pids)

    def _still(self, host: int, nspid: int, depth: int) -> bool:
        now = self._status_field(host, b"NSpid:")
        return bool(now) and len(now) >= depth and int(now[depth - 1]) == nspid

    def _scan(self, ns: int, depth: int) -> dict[int, int]:
        """Every process the namespace numbers: its own, and those of namespaces nested in
        it (NSpid: has a number for each level, the namespace's at index depth - 1)."""
        table = {}
        for entry in os.listdir(self.root):
            if not entry.isdigit():
                continue
            nspid = self._status_field(entry, b"NSpid:")
            if not nspid or len(nspid) < depth:
                continue
            own = self._ns(entry, "pid")
            if own == ns or (len(nspid) > depth and own is not None
                             and self._ancestor(entry, own, len(nspid) - depth) == ns):
                table[int(nspid[depth - 1])] = int(entry)
                self._scan_threads(entry, depth, table)
        return table

    def _scan_threads(self, pid: str, depth: int, table: dict[int, int]) -> None:
        """A process's other threads: a target may be a thread id."""
        try:
            tids = os.listdir(f"{self.root}/{pid}/task")
        except OSError:
            return
        for tid in tids:
            if tid != pid:
                nspid = self._status_field(f"{pid}/task/{tid}", b"NSpid:")
                if nspid and len(nspid) >= depth:
                    table[int(nspid[depth - 1])] = int(tid)

    def _ancestor(self, pid: str, own: int, levels: int) -> int | None:
        """The inode of the pid namespace `levels` above a process's (NS_GET_PARENT)."""
        key = (own, levels)
        if key in self._ancestors:
            return self._ancestors[key]
        try:
            fd = os.open(f"{self.root}/{pid}/ns/pid", os.O_RDONLY)
        except OSError:  # the process is gone: another of its namespace may answer later
            return None
        found = None
        try:
            for _ in range(levels):
                parent = fcntl.ioctl(fd, abi.NS_GET_PARENT)
                os.close(fd)
                fd = parent
            found = os.fstat(fd).st_ino
        except OSError:
            pass  # not allowed to see that far up: the same for every process in it
        finally:
            os.close(fd)
        self._ancestors[key] = found
        return found

    def fd_path(self, pid: int | None, fd: int) -> str | None:
        if not pid or pid <= 0 or fd > _FD_MAX:
            return None
        try:
            target = os.readlink(f"{self.root}/{pid}/fd/{fd}".encode())
        except OSError:
            return None
        path = target.decode("utf-8", "surrogateescape")
        if self.sockets is not None and path.startswith("socket:["):
            return self.sockets.describe(int(path[8:-1]), pid) or path
        return path


def _container_in(cgroups: bytes) -> str:
    """The container id in cgroup paths, or "" for none."""
    found = _CONTAINER.search(cgroups)
    return found.group(1).decode() if found else ""


def _first(words: list[bytes] | None) -> int | None:
    return int(words[0]) if words else None


def _uid(words: list[bytes] | None) -> int | None:
    """The effective uid of a status Uid: line (real, effective, saved, filesystem)."""
    return int(words[1]) if words and len(words) > 1 else None


def enrich(event: Event, proc: ProcReader) -> Context:
    """The context of one event: only what the kernel's record cannot carry."""
    bare = proc.caller(event)
    a = event.args
    if a is None:
        return bare
    pid1, pid2, host_pids = a.pid1, a.pid2, None
    # Both pids named processes unless the call said otherwise (ESRCH).
    existed = event.ret != -abi.ESRCH
    if not event.own_pidns:
        host_pids = proc.translate(event.tgid, event.tid, bare.caller, (a.pid1, a.pid2))
        if host_pids is None:
            unresolved = ("caller", "pid1", "pid2") if existed else ("caller",)
            return bare._replace(unresolved=unresolved)
        pid1, pid2 = host_pids
    now = event.ts_ns
    t1, t2 = proc.target(pid1, now), proc.target(pid2, now)
    if not existed:  # ESRCH: a pid the process table remembers may have been gone already
        t1, t2 = (None if t is None or t.gone else t for t in (t1, t2))
    ctx = proc.context(bare, t1, t2, host_pids, existed)
    if a.type not in abi.FD_TYPES:
        return ctx
    # As strace -y: idx1 belongs to pid1; idx2 and the epoll slot's fds to pid2.
    wanted = [("idx1", pid1, a.fd1)]
    if a.type == abi.KcmpType.KCMP_FILE:
        wanted.append(("idx2", pid2, a.fd2))
    elif a.slot is not None:
        wanted += [("efd", pid2, a.slot.efd), ("tfd", pid2, a.slot.tfd)]
    paths: dict[str, str] = {}
    for key, pid, fd in wanted:
        path = proc.fd_path(pid, fd)
        if path is not None:
            paths[key] = path
    return ctx._replace(paths=paths)
