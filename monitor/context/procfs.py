"""/proc (or a tree laid out like it, for tests), one file or link a call. Each read answers
None where the process or the file is not there, or not readable: a process may go at any
moment, and callers say what that means for them."""

from __future__ import annotations

import os

from ..abi import ns_link_inode


def ns_inode(link: str) -> int | None:
    """The inode of the namespace a /proc/PID/ns link names ("pid:[4026531836]"). Read, not
    stat(2)-ed: on 5.10 a link the reader may not follow stats as an inode of /proc."""
    try:
        return ns_link_inode(os.readlink(link))
    except OSError:
        return None


class ProcFS:
    def __init__(self, root: str = "/proc") -> None:
        self.root = root

    def pids(self) -> list[int]:
        """Every process now here."""
        return sorted(int(entry) for entry in os.listdir(self.root) if entry.isdigit())

    def exists(self, pid: int) -> bool:
        """Whether the process is still here (a zombie is)."""
        return os.path.exists(f"{self.root}/{pid}")

    def exited(self, pid: int) -> bool:
        """Whether the process has exited: gone, or a zombie or dead task not yet reaped."""
        state = self.status_field(pid, b"State:")
        return not state or state[0] in (b"Z", b"X")

    def tasks(self, pid: int) -> list[int] | None:
        """A process's threads, the main one included."""
        try:
            return sorted(int(tid) for tid in os.listdir(f"{self.root}/{pid}/task"))
        except OSError:
            return None

    def status(self, pid: int | str, names: tuple[bytes, ...]) -> dict[bytes, list[bytes]] | None:
        """The named lines of a process's (or "pid/task/tid"'s) status, split into words."""
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

    def status_field(self, pid: int | str, name: bytes) -> list[bytes] | None:
        status = self.status(pid, (name,))
        return None if status is None else status.get(name)

    def nspid(self, pid: int | str) -> list[int] | None:
        """The pid as each pid namespace from the host's down to the process's numbers it."""
        words = self.status_field(pid, b"NSpid:")
        return [int(w) for w in words] if words else None

    def ns(self, pid: int | str, kind: str) -> int | None:
        """The inode of one of a process's namespaces ("pid", "mnt", "net", ...)."""
        return ns_inode(f"{self.root}/{pid}/ns/{kind}")

    def ns_path(self, pid: int | str, kind: str) -> str:
        return f"{self.root}/{pid}/ns/{kind}"

    def comm(self, pid: int) -> bytes | None:
        return self._read(f"{pid}/comm", strip=True)

    def cgroups(self, pid: int) -> bytes | None:
        return self._read(f"{pid}/cgroup")

    def exe(self, pid: int) -> str | None:
        return self._link(f"{pid}/exe")

    def exe_bits(self, pid: int) -> int | None:
        """32 or 64: the ELF class of what the process runs (None: gone, or not ELF)."""
        try:
            with open(f"{self.root}/{pid}/exe", "rb") as f:
                ident = f.read(5)
        except OSError:
            return None
        return {1: 32, 2: 64}.get(ident[4]) if ident[:4] == b"\x7fELF" else None

    def fd_path(self, pid: int, fd: int) -> str | None:
        """What an fd points to, as readlink gives it (bytes not UTF-8 kept: surrogateescape)."""
        return self._link(f"{pid}/fd/{fd}")

    def existing(self):
        """(pid, parent, name) of every process now here."""
        for pid in self.pids():
            stat = self._read(f"{pid}/stat")
            if stat is None:
                continue
            # "pid (name) state ppid ...": the name may hold spaces and parentheses.
            left, right = stat.find(b"("), stat.rfind(b")")
            fields = stat[right + 2:].split()
            if left < 0 or right < left or len(fields) < 2:
                continue
            yield pid, int(fields[1]), stat[left + 1:right]

    def numbered(self):
        """(pid namespace inode, number there, host pid) of every process now here in a pid
        namespace other than the host's: what the kernel's table of numbers cannot have seen
        made."""
        for pid in self.pids():
            nspid = self.nspid(pid)
            ns = self.ns(pid, "pid") if nspid and len(nspid) > 1 else None
            if ns is not None and nspid:
                yield ns, nspid[-1], pid

    def _read(self, name: str, strip: bool = False) -> bytes | None:
        try:
            with open(f"{self.root}/{name}", "rb") as f:
                data = f.read()
        except OSError:
            return None
        # The kernel ends the line with one newline: a name may end with its own.
        return data[:-1] if strip and data.endswith(b"\n") else data

    def _link(self, name: str) -> str | None:
        try:
            target = os.readlink(f"{self.root}/{name}".encode())
        except OSError:
            return None
        return target.decode("utf-8", "surrogateescape")
