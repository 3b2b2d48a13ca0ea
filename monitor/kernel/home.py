"""The namespaces a caller is held to: the monitor's own, another process's, or the host's."""

from __future__ import annotations

import os
from typing import NamedTuple

from .. import abi
from ..errors import MonitorError, NoPermission, NoSuchTarget, Unavailable
from ..flags import flag


HOST = "host"  # --namespaces-of host: the kernel's initial namespaces


class Home(NamedTuple):
    """The pid, mount and network namespaces a caller is held to: a caller elsewhere is said
    to be, and counted. The monitor's own, or (in a container sharing the host's pid
    namespace) the host's."""
    pidns_dev: int
    pid: int
    mnt: int
    net: int

    def inodes(self) -> dict[str, int | None]:
        return {"pid": self.pid, "mnt": self.mnt, "net": self.net}


def home_namespaces(of: int | str | None) -> Home:
    """The namespaces of process `of` (None: the monitor's; HOST: kthreadd's, which are the
    kernel's initial ones), from /proc/PID/ns: another process's need ptrace access."""
    pid = _kthreadd() if of == HOST else of
    proc = "/proc/self" if pid is None else f"/proc/{pid}"
    try:
        # Read before stat(2): on 5.10 a link the reader may not follow stats as /proc's.
        pidns, mntns, netns = (abi.ns_link_inode(os.readlink(f"{proc}/ns/{kind}"))
                               for kind in ("pid", "mnt", "net"))
        if pidns is None or mntns is None or netns is None:
            raise MonitorError(f"{proc}/ns: not namespace links")
        return Home(os.stat(f"{proc}/ns/pid").st_dev, pidns, mntns, netns)
    except PermissionError:
        raise NoPermission(f"{flag('namespaces_of')} {of}: cannot read its namespaces (needs "
                           "CAP_SYS_PTRACE, which a container must be given for it)") from None
    except FileNotFoundError:
        raise NoSuchTarget(f"{flag('namespaces_of')} {of}: no such process") from None


def _kthreadd() -> int:
    """Pid 2 where the monitor sees the host's pid namespace (the kernel's thread starter)."""
    try:
        with open("/proc/2/status") as f:
            status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    except OSError:
        status = {}
    if status.get("Name") != "kthreadd" or status.get("PPid") != "0":
        raise Unavailable(f"{flag('namespaces_of')} host: the kernel's threads are not visible "
                          "here; share the host's pid namespace (docker run --pid=host, hostPID) "
                          "or name a process of the host")
    return 2
