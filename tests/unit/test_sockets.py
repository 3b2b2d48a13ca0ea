"""Sockets of another network namespace, from a fake /proc/<pid>/net."""

import os

from kcmp_monitor.context.sockets import SocketResolver, proc_net_sockets

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 501 1
   1: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 502 1
   2: 0100007F:1F90 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 0 1
"""
TCP6 = """\
  sl  local_address                         remote_address                        st inode
   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 0 0 0 0 0 503
"""
UNIX = """\
Num       RefCount Protocol Flags    Type St Inode Path
00000000b2126a95: 00000003 00000000 00000000 0001 03  504
000000007064c65d: 00000002 00000000 00000000 0002 01  505 /run/x.sock
"""


def _process(root, pid, netns):
    (root / str(pid) / "net").mkdir(parents=True)
    (root / str(pid) / "ns").mkdir()
    os.symlink(f"net:[{netns.stat().st_ino}]", root / str(pid) / "ns" / "net")
    for name, text in (("tcp", TCP), ("tcp6", TCP6), ("unix", UNIX)):
        (root / str(pid) / "net" / name).write_text(text)


def test_proc_net_tables_give_endpoints_and_unix_types(tmp_path):
    ns = tmp_path / "ns-box"
    ns.write_text("")
    _process(tmp_path, 7, ns)
    assert proc_net_sockets(str(tmp_path), 7) == {
        501: "TCP:[127.0.0.1:8080]",
        502: "TCP:[127.0.0.1:40000->127.0.0.1:8080]",
        503: "TCPv6:[[::1]:22]",
        504: "UNIX-STREAM:[504]",
        505: "UNIX-DGRAM:[505]",
    }
    assert proc_net_sockets(str(tmp_path), 8) == {}


class Resolver(SocketResolver):
    @staticmethod
    def _dump():
        return {900: "TCP:[10.0.0.1:1]"}  # the monitor's own namespace


def test_another_namespace_is_asked_through_a_process_in_it(tmp_path):
    own, box = tmp_path / "ns-own", tmp_path / "ns-box"
    own.write_text("")
    box.write_text("")
    (tmp_path / "self" / "ns").mkdir(parents=True)
    os.symlink(f"net:[{own.stat().st_ino}]", tmp_path / "self" / "ns" / "net")
    _process(tmp_path, 7, box)
    _process(tmp_path, 8, own)
    sockets = Resolver(refresh_s=0, root=str(tmp_path))
    assert sockets.describe(900) == "TCP:[10.0.0.1:1]"
    assert sockets.describe(502, 7) == "TCP:[127.0.0.1:40000->127.0.0.1:8080]"
    assert sockets.describe(502, 8) is None  # the monitor's namespace: sock_diag's answer
    assert sockets.describe(502) is None
