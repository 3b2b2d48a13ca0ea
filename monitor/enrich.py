"""What /proc adds to an event when it is decoded: fd paths and the targets' owners.

pid1 and pid2 are numbers in the caller's pid namespace, while /proc here is the monitor's:
for a caller in another pid namespace (a container) they name other processes, so nothing is
looked up rather than something wrong reported (translating them is a later step).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from . import abi
from .events import Event

# An fd above INT_MAX cannot be open; /proc would only be asked in vain.
_FD_MAX = 0x7FFFFFFF


@dataclass(frozen=True)
class Context:
    """What was learnt about an event beyond the kernel's record."""

    # "idx1", "idx2", "efd", "tfd" -> the fd's path as `strace -y` shows it, where resolvable.
    paths: dict[str, str] = field(default_factory=dict)
    # For a permission failure: the effective uids of pid1 and pid2, where readable.
    owners: tuple[int | None, int | None] | None = None
    # Whether the caller's pid namespace is the monitor's: True, False (no lookups were
    # made), or None when not checked (nothing to look up) or the caller is gone.
    same_pidns: bool | None = None


class ProcReader:
    """Reads /proc (or a tree laid out like it, for tests)."""

    def __init__(self, root: str = "/proc") -> None:
        self.root = root
        self.own_depth = self._nspid_depth("self")
        self.own_pidns = self._pid_namespace("self")

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
        try:
            return os.stat(f"{self.root}/{pid}/ns/pid").st_ino
        except OSError:  # gone, or another user's process to a monitor without CAP_SYS_PTRACE
            return None

    def same_pidns(self, pid: int) -> bool | None:
        """Whether a process shares this one's pid namespace; None if that cannot be told.

        From the host (depth 1) the world-readable NSpid: line settles it: the only
        namespace at depth 1 is the initial one. Deeper, siblings share a depth, so the
        namespace inodes are compared, which needs ptrace access to the process."""
        if self.own_depth == 1:
            depth = self._nspid_depth(pid)
            return None if depth is None else depth == 1
        ns = self._pid_namespace(pid)
        return None if ns is None or self.own_pidns is None else ns == self.own_pidns

    def fd_path(self, pid: int, fd: int) -> str | None:
        if pid <= 0 or fd > _FD_MAX:
            return None
        try:
            target = os.readlink(f"{self.root}/{pid}/fd/{fd}".encode())
        except OSError:
            return None
        return target.decode("utf-8", "surrogateescape")

    def effective_uid(self, pid: int) -> int | None:
        uid = self._status_field(pid, b"Uid:") if pid > 0 else None
        try:
            return int(uid[1]) if uid else None
        except (ValueError, IndexError):
            return None


NOTHING = Context()
OTHER_PIDNS = Context(same_pidns=False)


def enrich(event: Event, proc: ProcReader) -> Context:
    """The context of one event: only what the kernel's record cannot carry."""
    a = event.args
    if a is None or (a.type not in abi.FD_TYPES and event.ret != -abi.EPERM):
        return NOTHING
    same = proc.same_pidns(event.tgid)
    if not same:
        return NOTHING if same is None else OTHER_PIDNS
    paths: dict[str, str] = {}
    if a.type in abi.FD_TYPES:
        # As strace -y: idx1 belongs to pid1; idx2 and the epoll slot's fds to pid2.
        wanted = [("idx1", a.pid1, a.fd1)]
        if a.type == abi.KcmpType.KCMP_FILE:
            wanted.append(("idx2", a.pid2, a.fd2))
        elif a.slot is not None:
            wanted += [("efd", a.pid2, a.slot.efd), ("tfd", a.pid2, a.slot.tfd)]
        for key, pid, fd in wanted:
            path = proc.fd_path(pid, fd)
            if path is not None:
                paths[key] = path
    owners = None
    if event.permission_denied:
        owners = (proc.effective_uid(a.pid1), proc.effective_uid(a.pid2))
    return Context(paths=paths, owners=owners, same_pidns=True)
