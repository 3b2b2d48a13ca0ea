"""What a socket fd is connected to, as `strace -yy` shows it, from the kernel's sock_diag
(through pyroute2), and the names `ip netns` gives network namespaces.

Sockets are looked up in the monitor's network namespace: a socket of a process in another
network namespace is left as `socket:[inode]`.
"""

from __future__ import annotations

import os
import socket
import time

from pyroute2 import DiagSocket

NETNS_DIR = "/run/netns"
_STATES_ALL = 0xFFFFFFFF
_UNIX_TYPES = {socket.SOCK_STREAM: "STREAM", socket.SOCK_DGRAM: "DGRAM",
               socket.SOCK_SEQPACKET: "SEQPACKET"}


def _inet(family: int, proto: str, m) -> str:
    src, dst = m["idiag_src"], m["idiag_dst"]
    if family == socket.AF_INET6:
        proto += "v6"
        src, dst = f"[{src}]", f"[{dst}]"
    local = f"{src}:{m['idiag_sport']}"
    if m["idiag_dport"] == 0:  # listening or unconnected
        return f"{proto}:[{local}]"
    return f"{proto}:[{local}->{dst}:{m['idiag_dport']}]"


class SocketResolver:
    """socket inode -> "TCP:[a:p->b:q]", "UDP:[...]", "UNIX-STREAM:[ino->peer]"; read all at
    once, again at most every `refresh_s` when an inode is not known."""

    def __init__(self, refresh_s: float = 0.5) -> None:
        self.refresh_s = refresh_s
        self._known: dict[int, str] = {}
        self._when = -refresh_s

    def describe(self, inode: int) -> str | None:
        if inode not in self._known and time.monotonic() - self._when >= self.refresh_s:
            self._known = self._dump()
            self._when = time.monotonic()
        return self._known.get(inode)

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
    names = {}
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
        self.directory = directory
        self.refresh_s = refresh_s
        self._names: dict[int, str] = {}
        self._when = -refresh_s

    def name(self, inode: int) -> str | None:
        if inode not in self._names and time.monotonic() - self._when >= self.refresh_s:
            self._names = netns_names(self.directory)
            self._when = time.monotonic()
        return self._names.get(inode)
