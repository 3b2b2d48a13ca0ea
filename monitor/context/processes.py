"""Who the caller and the targets of a call are (host pids, names, owners, parents,
namespaces, container), read from /proc while they live and from the kernel's process table
once they are gone, and remembered for a short while: a loop of calls asks the same again."""

from __future__ import annotations

from typing import Protocol

from ..kernel.events import Event, KernelTarget, KernelTask
from ..memo import Keyed
from .containers import container_in, container_of_leaf
from .pidns import PidNamespaces
from .procfs import ProcFS
from .types import Caller, Context, Target

# An fd above INT_MAX cannot be open; /proc would only be asked in vain.
_FD_MAX = 0x7FFFFFFF


class KernelTable(Protocol):
    def process(self, pid: int) -> tuple[int, bytes] | None: ...

    def host_pid(self, pidns: int, nr: int) -> int | None: ...


class ProcReader:
    CALLERS = 4096  # callers remembered
    CALLER_TTL_NS = 5_000_000_000  # after which a caller is read again (pid reuse)
    TARGETS = 4096
    TARGET_TTL_NS = 1_000_000_000  # a target is not validated by its name: kept shorter
    MISSING_TTL_NS = 100_000_000  # a pid found nowhere (an ESRCH flood must stay cheap)

    def __init__(self, root: str = "/proc", sockets=None, netns=None,
                 kernel: KernelTable | None = None, cgroups=None,
                 others_paths: bool = True) -> None:
        """sockets: a sockets.SocketResolver to show what socket fds are connected to;
        netns: a sockets.NetnsNames to name network namespaces; kernel: the program's
        process table, and cgroups: a cgroups.CgroupPaths, for processes gone from /proc
        (all optional); others_paths: whether the fds of processes other than the caller
        get their paths."""
        self.others_paths = others_paths
        self.fs = ProcFS(root)
        self.pidns = PidNamespaces(self.fs, kernel)
        self.sockets = sockets
        self.netns = netns
        self.kernel = kernel
        self.cgroups = cgroups
        own = self.fs.nspid("self")
        self.own_depth = len(own) if own else None
        self.own_pidns = self.fs.ns("self", "pid")
        # (tgid, tid) -> (comm, the kernel's view, when read, the caller's Context with nothing
        # looked up): a process that exec'd or changed as the kernel sees it, or read longer
        # ago than the time to live, is read again
        self._callers = Keyed(self.CALLERS)
        # host pid -> (when read, the Target or None)
        self._targets = Keyed(self.TARGETS)
        # the kernel's record of a target -> (when /proc was asked of it, the Target)
        self._recorded = Keyed(self.TARGETS)

    def caller(self, event: Event) -> Context:
        """The caller's context, nothing looked up yet (its caller is always set)."""
        key = (event.tgid, event.tid)
        hit = self._callers.get(key)
        if (hit and hit[0] == event.comm and hit[1] is event.task
                and event.ts_ns - hit[2] < self.CALLER_TTL_NS):
            return hit[3]
        caller = (self._read_caller(event) if event.task is None
                  else self._kernel_caller(event, event.task))
        bare = Context(same_pidns=event.own_pidns, caller=caller)
        self._callers.put(key, (event.comm, event.task, event.ts_ns, bare))
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
        self._targets.put(pid, (now_ns, found))
        return found

    def recorded_target(self, k: KernelTarget, now_ns: int) -> Target:
        """A target as the kernel recorded it at the call; /proc adds whether it has exited
        since, its network namespace's name and, where the kernel read no cgroup, its
        container."""
        hit = self._recorded.get(k)
        if hit is not None and now_ns - hit[0] < self.TARGET_TTL_NS:
            return hit[1]
        gone = self.fs.exited(k.pid)
        if k.cgroup:
            container: str | None = container_of_leaf(k.cgroup)
        else:
            container = None if gone else self._container(k.pid)
        found = Target(k.pid, k.comm, k.euid, k.ppid or None, k.pidns or None, k.mntns or None,
                       k.netns or None, self._netns_name(k.netns), container, gone=gone,
                       real_uid=k.uid, exiting=k.exiting)
        self._recorded.put(k, (now_ns, found))
        return found

    def fd_path(self, pid: int | None, fd: int) -> str | None:
        """An fd's path as `strace -yy` shows it (a socket by its endpoints), where it can be
        read."""
        if not pid or pid <= 0 or fd > _FD_MAX:
            return None
        return self.described(pid, self.fs.fd_path(pid, fd))

    def described(self, pid: int | None, path: str | None) -> str | None:
        """A socket's path as its endpoints, where they can be found."""
        if pid and path is not None and self.sockets is not None and path.startswith("socket:["):
            return self.sockets.describe(int(path[8:-1]), pid) or path
        return path

    def _read_target(self, pid: int) -> Target | None:
        fs = self.fs
        status = fs.status(pid, (b"PPid:", b"Uid:"))
        name = None if status is None else fs.comm(pid)
        if status is not None and name is not None:
            netns = fs.ns(pid, "net")
            read = Target(pid, name, _uid(status.get(b"Uid:")),
                          _first(status.get(b"PPid:")), fs.ns(pid, "pid"), fs.ns(pid, "mnt"),
                          netns, self._netns_name(netns), self._container(pid))
            # A field unread because the process exited among the reads would pass for one
            # it hides (pid 1's namespaces): an exited one is told from the table whole.
            if None not in (read.pidns, read.mntns, read.netns, read.container_id) \
                    or not fs.exited(pid):
                return read
        known = self.kernel.process(pid) if self.kernel is not None else None
        if known is None:
            return None
        return Target(pid, known[1], None, known[0] or None, None, None, None, None, None,
                      gone=True)

    def _read_caller(self, event: Event) -> Caller:
        fs, tgid, tid = self.fs, event.tgid, event.tid
        status = fs.status(tgid, (b"NSpid:", b"PPid:"))
        if status is None:
            return self._gone_caller(event)
        words = status.get(b"NSpid:")
        nspid = [int(w) for w in words] if words else None
        host_ppid = _first(status.get(b"PPid:"))
        ns_ppid = None
        parent = fs.nspid(host_ppid) if nspid and host_ppid else None
        if nspid and parent:
            # The parent is in the caller's namespace when it is as deep or deeper.
            ns_ppid = parent[len(nspid) - 1] if len(parent) >= len(nspid) else 0
        ns_tid = None
        if nspid and (tid == tgid or len(nspid) == 1):  # the main thread, or the host's view
            ns_tid = nspid[-1] if tid == tgid else tid
        elif nspid:  # another thread in a namespace: None once it has gone
            tids = fs.nspid(f"{tgid}/task/{tid}")
            ns_tid = tids[-1] if tids else None
        netns = fs.ns(tgid, "net")
        return Caller(ns_pid=nspid[-1] if nspid else None, ns_tid=ns_tid,
                      host_ppid=host_ppid, ns_ppid=ns_ppid,
                      pidns=fs.ns(tgid, "pid"), mntns=fs.ns(tgid, "mnt"),
                      container_id=self._container(tgid), exe=fs.exe(tgid), netns=netns,
                      netns_name=self._netns_name(netns), depth=len(nspid) if nspid else None,
                      exe_bits=fs.exe_bits(tgid))

    def _kernel_caller(self, event: Event, t: KernelTask) -> Caller:
        """The caller as the kernel's record has it; /proc adds only the executable's path
        and, where the kernel read no cgroup name and the cgroup id names no directory, the
        container."""
        gone = not self.fs.exists(event.tgid)
        if t.cgroup:
            container: str | None = container_of_leaf(t.cgroup)
        else:
            # A v2 cgroup without a container may still hold one in a v1 hierarchy (hybrid).
            container = self._cgroup_container(event.cgroup_id)
            if not container and not gone:
                container = self._container(event.tgid) or container
        return Caller(ns_pid=t.ns_pid, ns_tid=t.ns_tid, host_ppid=t.ppid or None,
                      ns_ppid=t.ns_ppid, pidns=t.pidns or None, mntns=t.mntns or None,
                      container_id=container, exe=None if gone else self.fs.exe(event.tgid),
                      netns=t.netns or None, netns_name=self._netns_name(t.netns),
                      depth=t.depth, gone=gone, userns=t.userns or None,
                      utsns=t.utsns or None, ipcns=t.ipcns or None,
                      cgroupns=t.cgroupns or None, euid=t.euid, egid=t.egid,
                      caps=t.cap_effective, exe_name=t.exe_name or None,
                      exe_inode=t.exe_ino or None,
                      exe_bits=None if gone else self.fs.exe_bits(event.tgid))

    def _cgroup_container(self, cgroup_id: int) -> str | None:
        path = self.cgroups.path(cgroup_id) if self.cgroups is not None else None
        return None if path is None else container_in(path.encode())

    def _gone_caller(self, event: Event) -> Caller:
        """A caller that exited before its event was read: its parent and cgroup from the
        event, and its pid namespace when the kernel said it was the monitor's."""
        ppid = event.ppid or None
        container = self._cgroup_container(event.cgroup_id)
        if not event.own_pidns:
            return Caller(None, None, ppid, None, None, None, container, None, gone=True)
        return Caller(event.tgid, event.tid, ppid, ppid, self.own_pidns, None, container, None,
                      depth=self.own_depth, gone=True)

    def _netns_name(self, inode: int | None) -> str | None:
        return self.netns.name(inode) if self.netns is not None and inode else None

    def _container(self, pid: int) -> str | None:
        cgroups = self.fs.cgroups(pid)
        return None if cgroups is None else container_in(cgroups)


def _first(words: list[bytes] | None) -> int | None:
    return int(words[0]) if words else None


def _uid(words: list[bytes] | None) -> int | None:
    """The effective uid of a status Uid: line (real, effective, saved, filesystem)."""
    return int(words[1]) if words and len(words) > 1 else None
