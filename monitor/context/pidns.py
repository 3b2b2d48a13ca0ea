"""pid1 and pid2 are numbers in the caller's pid namespace, while /proc here is the monitor's:
for a caller in another pid namespace (a container) they are translated to host pids through
the NSpid: lines of the processes that namespace numbers, nested namespaces included. Where
that cannot be done, nothing is guessed: the answer says which pids were not found."""

from __future__ import annotations

import fcntl
import os
import time
from typing import Protocol

from .. import abi
from .procfs import ProcFS
from .types import Caller


class KernelNumbers(Protocol):
    def host_pid(self, pidns: int, nr: int) -> int | None: ...


class PidNamespaces:
    # A namespace's table of pids is read again on a miss, at most this often (a pid that
    # does not exist, as in an ESRCH call, must not cost a scan of /proc per event).
    RESCAN_S = 0.1

    def __init__(self, fs: ProcFS, kernel: KernelNumbers | None = None) -> None:
        """kernel: the program's table of pid numbers, for namespaces whose processes have
        gone from /proc."""
        self.fs = fs
        self.kernel = kernel
        # pid namespace inode -> ({pid in that namespace: host pid}, when it was read)
        self._pids: dict[int, tuple[dict[int, int], float]] = {}
        # (pid namespace inode, levels up) -> the ancestor namespace's inode (never changes)
        self._ancestors: dict[tuple[int, int], int | None] = {}

    def translate(self, tgid: int, tid: int, caller: Caller,
                  pids: tuple[int, ...]) -> tuple[int | None, ...] | None:
        """The host pids of pids numbered in the caller's pid namespace (None for one not
        found); None when the caller's namespace cannot be read. caller: as read for the
        thread tid of process tgid (a process's pid namespace never changes)."""
        ns, depth = caller.pidns, caller.depth
        if ns is None or depth is None or caller.ns_pid is None:
            return None
        # The caller and its thread are known without a scan, even once gone.
        own = {caller.ns_pid: tgid}
        if caller.ns_tid is not None:
            own[caller.ns_tid] = tid
        others = [p for p in pids if p not in own]
        table, when = self._pids.get(ns, ({}, -self.RESCAN_S))
        for p in others:  # a pid reused since the scan must not keep its old host pid
            if p in table and not self._still(table[p], p, depth):
                del table[p]
        if any(p not in table for p in others) and time.monotonic() - when >= self.RESCAN_S:
            table = self._scan(ns, depth)
            when = time.monotonic()
        self._pids[ns] = (table, when)
        return tuple(own[p] if p in own else table.get(p) or self._recorded(ns, p)
                     for p in pids)

    def _recorded(self, ns: int, nr: int) -> int | None:
        """The host pid the kernel recorded when the namespace's task nr was made."""
        if self.kernel is None or nr <= 0:
            return None
        return self.kernel.host_pid(ns, nr)

    def _still(self, host: int, nspid: int, depth: int) -> bool:
        now = self.fs.nspid(host)
        return now is not None and len(now) >= depth and now[depth - 1] == nspid

    def _scan(self, ns: int, depth: int) -> dict[int, int]:
        """Every process the namespace numbers: its own, and those of namespaces nested in
        it (NSpid: has a number for each level, the namespace's at index depth - 1)."""
        table: dict[int, int] = {}
        for pid in self.fs.pids():
            nspid = self.fs.nspid(pid)
            if not nspid or len(nspid) < depth:
                continue
            own = self.fs.ns(pid, "pid")
            if own == ns or (len(nspid) > depth and own is not None
                             and self._ancestor(pid, own, len(nspid) - depth) == ns):
                table[nspid[depth - 1]] = pid
                self._scan_threads(pid, depth, table)
        return table

    def _scan_threads(self, pid: int, depth: int, table: dict[int, int]) -> None:
        """A process's other threads: a target may be a thread id."""
        for tid in self.fs.tasks(pid) or ():
            if tid != pid:
                nspid = self.fs.nspid(f"{pid}/task/{tid}")
                if nspid and len(nspid) >= depth:
                    table[nspid[depth - 1]] = tid

    def _ancestor(self, pid: int, own: int, levels: int) -> int | None:
        """The inode of the pid namespace `levels` above a process's (NS_GET_PARENT)."""
        key = (own, levels)
        if key in self._ancestors:
            return self._ancestors[key]
        try:
            fd = os.open(self.fs.ns_path(pid, "pid"), os.O_RDONLY)
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
