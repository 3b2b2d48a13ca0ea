"""Enrichment against a fake /proc tree: which pid each fd is looked up in."""

import os

import pytest

from kcmp_monitor.enrich import Context, ProcReader, enrich
from kcmp_monitor.events import Args, EpollSlot, Event


@pytest.fixture
def proc(tmp_path):
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "status").write_text("Name:\tmonitor\nNSpid:\t1234\n")

    def task(pid, uid, fds, nspid=None):
        (tmp_path / str(pid) / "fd").mkdir(parents=True)
        (tmp_path / str(pid) / "status").write_text(
            f"Name:\tx\nUid:\t{uid + 1}\t{uid}\t{uid}\t{uid}\nGid:\t0\t0\t0\t0\n"
            f"NSpid:\t{pid}{'' if nspid is None else f'	{nspid}'}\n")
        for fd, target in fds.items():
            os.symlink(target, tmp_path / str(pid) / "fd" / str(fd))

    task(10, 1000, {3: "/home/a", 8: "anon_inode:[eventpoll]"})
    task(20, 0, {3: "/etc/b", 6: "pipe:[7]", 8: "anon_inode:[eventpoll]",
                 9: b"/tmp/\xff\x1b".decode("utf-8", "surrogateescape")})
    task(30, 0, {3: "/in/a/container"}, nspid=1)  # pid 1 of a namespace below the host
    return ProcReader(str(tmp_path))


def _event(type, idx1=3, idx2=3, slot=None, ret=0, tgid=10):
    return Event(ts_ns=0, duration_ns=1, cgroup_id=1, tgid=tgid, tid=tgid, uid=0, gid=0,
                 comm=b"x", ret=ret, compat=False,
                 args=Args(pid1=10, pid2=20, type=type, idx1=idx1, idx2=idx2, slot=slot,
                           slot_fault=False))


def test_file_fds_are_resolved_in_their_own_process(proc):
    assert enrich(_event(0), proc).paths == {"idx1": "/home/a", "idx2": "/etc/b"}


def test_epoll_slot_fds_belong_to_pid2(proc):
    ctx = enrich(_event(7, idx1=3, idx2=0x7FFD0000, slot=EpollSlot(8, 6, 0)), proc)
    assert ctx.paths == {"idx1": "/home/a", "efd": "anon_inode:[eventpoll]", "tfd": "pipe:[7]"}


def test_unresolvable_fds_are_left_out(proc):
    assert enrich(_event(0, idx1=99, idx2=0x1_0000_0003), proc).paths == {"idx2": "/etc/b"}
    assert enrich(_event(7, idx1=3, idx2=1), proc).paths == {"idx1": "/home/a"}


def _looked_up(ctx):
    return ctx.paths, ctx.owners, ctx.same_pidns, ctx.host_pids


def test_types_without_fds_read_nothing(proc):
    assert _looked_up(enrich(_event(1), proc)) == _looked_up(Context())
    assert _looked_up(enrich(_event(42), proc)) == _looked_up(Context())


def test_owners_only_for_permission_failures(proc):
    assert enrich(_event(1, ret=-1), proc).owners == (1000, 0)
    assert enrich(_event(1, ret=-3), proc).owners is None


def test_raw_bytes_of_a_path_survive(proc):
    assert proc.fd_path(20, 9) == b"/tmp/\xff\x1b".decode("utf-8", "surrogateescape")


def test_a_caller_in_another_pid_namespace_gets_no_lookups(proc):
    # Its pid1/pid2 are its own namespace's numbers: /proc here would name other processes.
    ctx = enrich(_event(0, ret=-1, tgid=30), proc)
    assert ctx.paths == {} and ctx.owners is None and ctx.same_pidns is False
    assert enrich(_event(0), proc).same_pidns is True
    gone = enrich(_event(0, tgid=99), proc)  # the caller is gone: unknown
    assert _looked_up(gone) == _looked_up(Context())


def test_missing_process(proc):
    assert proc.fd_path(31, 3) is None and proc.effective_uid(31) is None
    assert proc.fd_path(0, 3) is None and proc.effective_uid(-5) is None


def test_exit_without_entry_has_no_context(proc):
    event = _event(1, ret=-1)
    event = event._replace(args=None)
    assert _looked_up(enrich(event, proc)) == _looked_up(Context())


def test_a_monitor_in_a_container_compares_namespace_inodes(tmp_path):
    (tmp_path / "self" / "ns").mkdir(parents=True)
    (tmp_path / "self" / "status").write_text("NSpid:\t900\t5\n")  # depth 2
    ours, theirs = tmp_path / "ns-a", tmp_path / "ns-b"
    ours.write_text("")
    theirs.write_text("")
    os.link(ours, tmp_path / "self" / "ns" / "pid")
    for pid, ns in ((7, ours), (8, theirs)):
        (tmp_path / str(pid) / "ns").mkdir(parents=True)
        (tmp_path / str(pid) / "status").write_text(f"NSpid:\t{pid}\t2\n")
        os.link(ns, tmp_path / str(pid) / "ns" / "pid")  # the same inode: the same namespace
    proc = ProcReader(str(tmp_path))
    def same(pid):
        return proc.same_pidns(proc.caller(pid, pid, b"x", 0).caller)

    assert same(7) is True and same(8) is False
    assert same(9) is None


def test_pids_of_another_namespace_are_translated_to_host_pids(tmp_path):
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "status").write_text("NSpid:\t1234\n")
    container = tmp_path / "container-pidns"
    container.write_text("")
    for host, inner, fds in ((30, 1, {3: "/srv/a"}), (31, 2, {4: "/srv/b"}),
                             (40, 1, {3: "/elsewhere"})):
        (tmp_path / str(host) / "fd").mkdir(parents=True)
        (tmp_path / str(host) / "ns").mkdir()
        (tmp_path / str(host) / "status").write_text(
            f"Uid:\t{host}\t{host}\t{host}\t{host}\nNSpid:\t{host}\t{inner}\n")
        if host != 40:  # 40 is pid 1 of another container: same depth, other namespace
            os.link(container, tmp_path / str(host) / "ns" / "pid")
        for fd, target in fds.items():
            os.symlink(target, tmp_path / str(host) / "fd" / str(fd))
    proc = ProcReader(str(tmp_path))
    event = Event(ts_ns=0, duration_ns=1, cgroup_id=1, tgid=30, tid=30, uid=0, gid=0,
                  comm=b"x", ret=-1, compat=False,
                  args=Args(pid1=1, pid2=2, type=0, idx1=3, idx2=4, slot=None,
                            slot_fault=False))
    ctx = enrich(event, proc)
    assert ctx.host_pids == (30, 31) and ctx.same_pidns is False
    assert ctx.paths == {"idx1": "/srv/a", "idx2": "/srv/b"}
    assert ctx.owners == (30, 31)
    assert proc.translate(30, proc.caller(30, 30, b"x", 0).caller, (1, 2, 3)) == (30, 31, None)


def test_caller_context_from_proc(tmp_path):
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "status").write_text("NSpid:\t1234\n")
    cid = "ab" * 32
    for pid, status in ((50, "PPid:\t40\nNSpid:\t50\t7\n"), (40, "PPid:\t1\nNSpid:\t40\t1\n"),
                        (1, "PPid:\t0\nNSpid:\t1\n")):
        (tmp_path / str(pid) / "task" / "52").mkdir(parents=True)
        (tmp_path / str(pid) / "status").write_text(status)
    (tmp_path / "50" / "task" / "52" / "status").write_text("NSpid:\t52\t9\n")
    (tmp_path / "50" / "cgroup").write_text(
        f"0::/system.slice/docker-{cid}.scope\n")
    os.symlink("/usr/sbin/criu", tmp_path / "50" / "exe")
    proc = ProcReader(str(tmp_path))
    bare = proc.caller(50, 50, b"criu", 0)
    caller = bare.caller
    assert (caller.ns_pid, caller.ns_tid, caller.host_ppid, caller.ns_ppid) == (7, 7, 40, 1)
    assert caller.container_id == cid and caller.exe == "/usr/sbin/criu"
    assert proc.caller(50, 52, b"criu", 0).caller.ns_tid == 9
    assert proc.caller(40, 40, b"init", 0).caller.ns_ppid == 0  # parent outside the namespace
    assert proc.caller(50, 50, b"criu", 10**9) is bare  # remembered
    assert proc.caller(50, 50, b"sh", 10**9) is not bare  # exec'd: read again
    assert proc.caller(50, 50, b"sh", 10**10).caller == caller  # read again after 5 s
    assert proc.caller(77, 77, b"gone", 0).caller.ns_pid is None
