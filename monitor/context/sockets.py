"""What a socket fd is connected to, as `strace -yy` shows it, from the kernel's sock_diag
(through pyroute2), and the names `ip netns` gives network namespaces.

sock_diag answers for the monitor's network namespace. A socket of a process in another one
(a container's) is found in that process's /proc/<pid>/net tables instead, which show its
namespace's sockets: endpoints for TCP and UDP, the type for Unix sockets (those tables do
not name a Unix socket's peer).
"""

from __future__ import annotations

import os
import socket
import sys

from pyroute2 import DiagSocket

from .procfs import ns_inode
from .refresh import MissRefreshed

NETNS_DIR = "/run/netns"
_STATES_ALL = 0xFFFFFFFF
_UNIX_TYPES = {socket.SOCK_STREAM: "STREAM", socket.SOCK_DGRAM: "DGRAM",
               socket.SOCK_SEQPACKET: "SEQPACKET"}


# /proc/<pid>/net tables: (file, protocol, family)
_PROC_NET = (("tcp", "TCP", socket.AF_INET), ("tcp6", "TCP", socket.AF_INET6),
             ("udp", "UDP", socket.AF_INET), ("udp6", "UDP", socket.AF_INET6))
_PROC_UNIX_TYPES = {1: "STREAM", 2: "DGRAM", 5: "SEQPACKET"}  # the Type column, in hex


def _endpoints(family: int, proto: str, src: str, sport: int, dst: str, dport: int) -> str:
    if family == socket.AF_INET6:
        proto += "v6"
        src, dst = f"[{src}]", f"[{dst}]"
    local = f"{src}:{sport}"
    if dport == 0:  # listening or unconnected
        return f"{proto}:[{local}]"
    return f"{proto}:[{local}->{dst}:{dport}]"


def _inet(family: int, proto: str, m) -> str:
    return _endpoints(family, proto, m["idiag_src"], m["idiag_sport"], m["idiag_dst"],
                      m["idiag_dport"])


def _proc_address(family: int, text: str) -> tuple[str, int]:
    """"0100007F:1F90" -> ("127.0.0.1", 8080): the address in 32-bit words of host order."""
    addr, port = text.split(":")
    raw = bytes.fromhex(addr)
    if sys.byteorder == "little":
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(family, raw), int(port, 16)


def proc_net_sockets(root: str, pid: int) -> dict[int, str]:
    """inode -> description of the sockets of pid's network namespace, from /proc."""
    known: dict[int, str] = {}
    for name, proto, family in _PROC_NET:
        try:
            with open(f"{root}/{pid}/net/{name}") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            try:
                (src, sport), (dst, dport) = (_proc_address(family, fields[1]),
                                              _proc_address(family, fields[2]))
                inode = int(fields[9])
            except (IndexError, ValueError, OSError):
                continue
            if inode:
                known[inode] = _endpoints(family, proto, src, sport, dst, dport)
    try:
        with open(f"{root}/{pid}/net/unix") as f:
            rows = f.read().splitlines()[1:]
    except OSError:
        rows = []
    for row in rows:
        fields = row.split()
        try:
            inode, kind = int(fields[6]), _PROC_UNIX_TYPES.get(int(fields[4], 16), "UNKNOWN")
        except (IndexError, ValueError):
            continue
        known[inode] = f"UNIX-{kind}:[{inode}]"
    return known


class SocketResolver:
    """socket inode -> "TCP:[a:p->b:q]", "UDP:[...]", "UNIX-STREAM:[ino->peer]"; read all at
    once, again at most every `refresh_s` when an inode is not known; each other network
    namespace likewise, through the /proc/<pid>/net of a process in it."""

    NAMESPACES = 256  # other network namespaces remembered

    def __init__(self, refresh_s: float = 0.5, root: str = "/proc") -> None:
        self.refresh_s = refresh_s
        self.root = root
        self._own = MissRefreshed(self._dump, refresh_s)
        self._own_netns = self._netns("self")
        # network namespace inode -> its sockets, read through a process in it
        self._others: dict[int, MissRefreshed[int, str]] = {}

    def describe(self, inode: int, pid: int | None = None) -> str | None:
        """What a socket is; pid: the process holding it, for one of another namespace."""
        found = self._own.get(inode)
        if found is not None or pid is None:
            return found
        netns = self._netns(pid)
        if netns is None or netns == self._own_netns:
            return None
        other = self._others.get(netns)
        if other is None:
            if len(self._others) >= self.NAMESPACES:  # namespaces come and go with containers
                self._others.clear()
            other = self._others[netns] = MissRefreshed(
                lambda holder: proc_net_sockets(self.root, holder), self.refresh_s)
        return other.get(inode, pid)

    def _netns(self, pid: int | str) -> int | None:
        return ns_inode(f"{self.root}/{pid}/ns/net")

    @staticmethod
    def _dump() -> dict[int, str]:
        known: dict[int, str] = {}
        try:
            with DiagSocket() as diag:
                diag.bind()
                for family in (socket.AF_INET, socket.AF_INET6):
                    for proto, number in (("TCP", socket.IPPROTO_TCP),
                                          ("UDP", socket.IPPROTO_UDP)):
                        for m in diag.get_sock_stats(family=family, protocol=number,
                                                     states=_STATES_ALL):
                            known[m["idiag_inode"]] = _inet(family, proto, m)
                for m in diag.get_sock_stats(family=socket.AF_UNIX, states=_STATES_ALL):
                    peer = dict(m["attrs"]).get("UNIX_DIAG_PEER")
                    ino, kind = m["udiag_ino"], _UNIX_TYPES.get(m["udiag_type"], "UNKNOWN")
                    known[ino] = f"UNIX-{kind}:[{ino}" + (f"->{peer}]" if peer else "]")
        except OSError:
            return known  # sock_diag unavailable: fds stay socket:[inode]
        return known


def netns_names(directory: str = NETNS_DIR) -> dict[int, str]:
    """Network namespace inode -> the name `ip netns` knows it by."""
    names: dict[int, str] = {}
    try:
        entries = os.listdir(directory)
    except OSError:
        return names
    for name in entries:
        try:
            names[os.stat(os.path.join(directory, name)).st_ino] = name
        except OSError:
            continue
    return names


class NetnsNames:
    """The names of network namespaces, read again (at most every `refresh_s`) when an inode
    is not known."""

    def __init__(self, directory: str = NETNS_DIR, refresh_s: float = 1.0) -> None:
        self._names = MissRefreshed(lambda: netns_names(directory), refresh_s)

    def name(self, inode: int) -> str | None:
        return self._names.get(inode)
