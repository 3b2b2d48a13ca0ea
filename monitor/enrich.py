"""What /proc adds to an event when it is decoded: fd paths and the targets' owners.

pid1 and pid2 are numbers in the caller's pid namespace, while /proc here is the monitor's:
for a caller in another pid namespace (a container) they are first translated to host pids,
through the NSpid: lines of the processes in that namespace. Where that cannot be done (the
namespace cannot be read without CAP_SYS_PTRACE, or a pid is not found), nothing is looked up
rather than something wrong reported.
"""

from __future__ import annotations

import os
import re
import time
from collections import OrderedDict
from typing import NamedTuple

from . import abi
from .events import Event

# An fd above INT_MAX cannot be open; /proc would only be asked in vain.
_FD_MAX = 0x7FFFFFFF


# A container's id in a cgroup path: docker, containerd (CRI), CRI-O, podman, kubepods.
_CONTAINER = re.compile(rb"(?:docker|cri-containerd|crio|libpod|kubepods)[^\n]*?[-/:]"
                        rb"([0-9a-f]{64})(?:\.scope)?(?:/|$)", re.M)


class Caller(NamedTuple):
    """Who made the call, beyond what the kernel's record says (None: not readable)."""

    ns_pid: int | None  # the caller's pid as its own pid namespace numbers it
    ns_tid: int | None
    host_ppid: int | None
    ns_ppid: int | None  # 0 when the parent lies outside the caller's pid namespace
    pidns: int | None  # namespace inodes (need ptrace access to the caller)
    mntns: int | None
    container_id: str | None
    exe: str | None
    netns: int | None = None
    netns_name: str | None = None  # as `ip netns` names it
    depth: int | None = None  # how many pid namespaces deep (entries of NSpid:)


class Context(NamedTuple):
    """What was learnt about an event beyond the kernel's record (a named tuple: one is made
    per event)."""

    # "idx1", "idx2", "efd", "tfd" -> the fd's path as `strace -y` shows it, where resolvable.
    paths: dict[str, str] = {}  # shared by the contexts with no paths, and never mutated
    # For a permission failure: the effective uids of pid1 and pid2, where readable.
    owners: tuple[int | None, int | None] | None = None
    # Whether the caller's pid namespace is the monitor's: True, False (no lookups were
    # made), or None when not checked (nothing to look up) or the caller is gone.
    same_pidns: bool | None = None
    # For a caller in another pid namespace: the host pids of pid1 and pid2, where found.
    host_pids: tuple[int | None, int | None] | None = None
    caller: Caller | None = None


class ProcReader:
    """Reads /proc (or a tree laid out like it, for tests)."""

    CALLERS = 4096  # callers remembered
    CALLER_TTL_NS = 5_000_000_000  # after which a caller is read again (pid reuse)
    # A namespace's table of pids is read again on a miss, at most this often (a pid that
    # does not exist, as in an ESRCH call, must not cost a scan of /proc per event).
    RESCAN_S = 0.1

    def __init__(self, root: str = "/proc", sockets=None, netns=None) -> None:
        """sockets: a sockets.SocketResolver to show what socket fds are connected to;
        netns: a sockets.NetnsNames to name network namespaces (both optional)."""
        self.root = root
        self.sockets = sockets
        self.netns = netns
        self.own_depth = self._nspid_depth("self")
        self.own_pidns = self._pid_namespace("self")
        # pid namespace inode -> ({pid in that namespace: host pid}, when it was read)
        self._ns_pids: dict[int, tuple[dict[int, int], float]] = {}
        # (tgid, tid) -> (comm, when read, the caller's Context with nothing looked up): a
        # process that exec'd, or read longer ago than the time to live, is read again
        self._callers: OrderedDict[tuple[int, int], tuple[bytes, int, Context]] = OrderedDict()

    def caller(self, tgid: int, tid: int, comm: bytes, now_ns: int) -> Context:
        """The caller's context, nothing looked up yet; now_ns: the event's monotonic time."""
        key = (tgid, tid)
        hit = self._callers.get(key)
        if hit and hit[0] == comm and now_ns - hit[1] < self.CALLER_TTL_NS:
            return hit[2]
        bare = Context(caller=self._read_caller(tgid, tid))
        self._callers[key] = (comm, now_ns, bare)
        self._callers.move_to_end(key)
        if len(self._callers) > self.CALLERS:
            self._callers.popitem(last=False)
        return bare

    def _read_caller(self, tgid: int, tid: int) -> Caller:
        nspid = self._status_field(tgid, b"NSpid:")
        ppid = self._status_field(tgid, b"PPid:")
        host_ppid = int(ppid[0]) if ppid else None
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
            with open(f"{self.root}/{tgid}/cgroup", "rb") as f:
                found = _CONTAINER.search(f.read())
            container = found.group(1).decode() if found else None
        except OSError:
            container = None
        try:
            exe = os.readlink(f"{self.root}/{tgid}/exe".encode()).decode("utf-8",
                                                                          "surrogateescape")
        except OSError:
            exe = None
        netns = self._ns(tgid, "net")
        name = self.netns.name(netns) if self.netns is not None and netns else None
        return Caller(ns_pid=int(nspid[-1]) if nspid else None, ns_tid=ns_tid,
                      host_ppid=host_ppid, ns_ppid=ns_ppid,
                      pidns=self._pid_namespace(tgid), mntns=self._ns(tgid, "mnt"),
                      container_id=container, exe=exe, netns=netns, netns_name=name,
                      depth=len(nspid) if nspid else None)

    def _ns(self, pid: int | str, kind: str) -> int | None:
        try:
            return os.stat(f"{self.root}/{pid}/ns/{kind}").st_ino
        except OSError:
            return None

    def _status_field(self, pid: int | str, name: bytes) -> list[bytes] | None:
        try:
            with open(f"{self.root}/{pid}/status", "rb") as status:
                for line in status:
                    if line.startswith(name):
                        return line.split()[1:]
        except OSError:
            return None
        return None

    def _nspid_depth(self, pid: int | str) -> int | None:
        """How many pid namespaces deep a process is (NSpid: has one number per level)."""
        nspid = self._status_field(pid, b"NSpid:")
        return len(nspid) if nspid else None

    def _pid_namespace(self, pid: int | str) -> int | None:
        # None: gone, or another user's process to a monitor without CAP_SYS_PTRACE
        return self._ns(pid, "pid")

    def same_pidns(self, caller: Caller) -> bool | None:
        """Whether a caller (as caller() read it) shares this process's pid namespace; None
        if that cannot be told.

        From the host (depth 1) the world-readable NSpid: line settles it: the only
        namespace at depth 1 is the initial one. Deeper, siblings share a depth, so the
        namespace inodes are compared, which needs ptrace access to the process."""
        if self.own_depth == 1:
            return None if caller.depth is None else caller.depth == 1
        if caller.pidns is None or self.own_pidns is None:
            return None
        return caller.pidns == self.own_pidns

    def translate(self, tgid: int, caller: Caller,
                  pids: tuple[int, ...]) -> tuple[int | None, ...] | None:
        """The host pids of pids numbered in the caller's pid namespace (None for one not
        found); None when the caller's namespace cannot be read. caller: as caller() read
        the process tgid (a process's pid namespace never changes)."""
        ns, depth = caller.pidns, caller.depth
        if ns is None or depth is None or caller.ns_pid is None:
            return None
        table, when = self._ns_pids.get(ns, ({}, -self.RESCAN_S))
        table[caller.ns_pid] = tgid  # the caller is known without a scan
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
        return bool(now) and len(now) == depth and int(now[-1]) == nspid

    def _scan(self, ns: int, depth: int) -> dict[int, int]:
        table = {}
        for entry in os.listdir(self.root):
            if not entry.isdigit():
                continue
            nspid = self._status_field(entry, b"NSpid:")
            if nspid and len(nspid) == depth and self._pid_namespace(entry) == ns:
                table[int(nspid[-1])] = int(entry)
        return table

    def fd_path(self, pid: int | None, fd: int) -> str | None:
        if not pid or pid <= 0 or fd > _FD_MAX:
            return None
        try:
            target = os.readlink(f"{self.root}/{pid}/fd/{fd}".encode())
        except OSError:
            return None
        path = target.decode("utf-8", "surrogateescape")
        if self.sockets is not None and path.startswith("socket:["):
            return self.sockets.describe(int(path[8:-1])) or path
        return path

    def effective_uid(self, pid: int | None) -> int | None:
        uid = self._status_field(pid, b"Uid:") if pid and pid > 0 else None
        try:
            return int(uid[1]) if uid else None
        except (ValueError, IndexError):
            return None


def enrich(event: Event, proc: ProcReader) -> Context:
    """The context of one event: only what the kernel's record cannot carry."""
    bare = proc.caller(event.tgid, event.tid, event.comm, event.ts_ns)
    a = event.args
    if a is None or (a.type not in abi.FD_TYPES and event.ret != -abi.EPERM):
        return bare
    # The namespace facts come from the caller's cached context: no /proc read per event.
    caller = bare.caller
    same = proc.same_pidns(caller)
    if same is None:
        return bare
    pid1, pid2, host_pids = a.pid1, a.pid2, None
    if not same:
        host_pids = proc.translate(event.tgid, caller, (a.pid1, a.pid2))
        if host_pids is None:
            return Context(same_pidns=False, caller=caller)
        pid1, pid2 = host_pids
    paths: dict[str, str] = {}
    if a.type in abi.FD_TYPES:
        # As strace -y: idx1 belongs to pid1; idx2 and the epoll slot's fds to pid2.
        wanted = [("idx1", pid1, a.fd1)]
        if a.type == abi.KcmpType.KCMP_FILE:
            wanted.append(("idx2", pid2, a.fd2))
        elif a.slot is not None:
            wanted += [("efd", pid2, a.slot.efd), ("tfd", pid2, a.slot.tfd)]
        for key, pid, fd in wanted:
            path = proc.fd_path(pid, fd)
            if path is not None:
                paths[key] = path
    owners = None
    if event.permission_denied:
        owners = (proc.effective_uid(pid1), proc.effective_uid(pid2))
    return Context(paths=paths, owners=owners, same_pidns=same, host_pids=host_pids,
                   caller=caller)
