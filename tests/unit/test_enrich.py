"""Enrichment against a fake /proc tree: who the caller and targets are, which pid each fd is
looked up in, what crossed a boundary and what could not be resolved."""

import os
import shutil

import pytest

from kcmp_monitor.context.enrich import enrich
from kcmp_monitor.context.processes import ProcReader
from kcmp_monitor.context.procfs import ProcFS
from kcmp_monitor.context.types import BOUNDARIES, Caller, Context, Target, crossings
from kcmp_monitor.kernel.events import Args, EpollSlot, Event, KernelFile, KernelTarget

CID = "ab" * 32


def _task(root, pid, uid=0, fds=None, nspid=None, ppid=1, name="x", ns=None, cgroup="",
          state="S (sleeping)"):
    """A process directory; ns: {kind: a file whose inode stands for the namespace}, linked to
    as /proc links to a namespace ("pid:[INODE]")."""
    (root / str(pid) / "fd").mkdir(parents=True)
    (root / str(pid) / "ns").mkdir()
    (root / str(pid) / "status").write_text(
        f"Name:\t{name}\nState:\t{state}\nPPid:\t{ppid}\nUid:\t{uid + 1}\t{uid}\t{uid}\t{uid}\n"
        f"NSpid:\t{pid}{'' if nspid is None else f'	{nspid}'}\n")
    (root / str(pid) / "comm").write_bytes(name.encode() + b"\n")
    (root / str(pid) / "cgroup").write_text(cgroup)
    for fd, target in (fds or {}).items():
        os.symlink(target, root / str(pid) / "fd" / str(fd))
    for kind, path in (ns or {}).items():
        os.symlink(f"{kind}:[{path.stat().st_ino}]", root / str(pid) / "ns" / kind)


def _ns(root, name):
    path = root / f"ns-{name}"
    path.write_text("")
    return path


class Table:
    """The kernel's process table, as the loader hands it over."""

    def __init__(self, known):
        self.known = known
        self.asked = []

    def process(self, pid):
        self.asked.append(pid)
        return self.known.get(pid)


@pytest.fixture
def proc(tmp_path):
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "status").write_text("Name:\tmonitor\nNSpid:\t1234\n")
    _task(tmp_path, 10, 1000, {3: "/home/a", 8: "anon_inode:[eventpoll]"}, name="criu")
    _task(tmp_path, 20, 0, {3: "/etc/b", 6: "pipe:[7]", 8: "anon_inode:[eventpoll]",
                            9: b"/tmp/\xff\x1b".decode("utf-8", "surrogateescape")},
          ppid=10, name="sshd")
    return ProcReader(str(tmp_path), kernel=Table({66: (20, b"short\x1b")}))


def _event(type, idx1=3, idx2=3, slot=None, ret=0, tgid=10, pids=(10, 20), cgroup_id=1, **kw):
    return Event(ts_ns=0, duration_ns=1, cgroup_id=cgroup_id, tgid=tgid, tid=tgid, uid=0, gid=0,
                 comm=b"x", ret=ret, compat=False,
                 args=Args(pid1=pids[0], pid2=pids[1], type=type, idx1=idx1, idx2=idx2,
                           slot=slot, slot_fault=False), **kw)


def test_file_fds_are_resolved_in_their_own_process(proc):
    assert enrich(_event(0), proc).paths == {"idx1": "/home/a", "idx2": "/etc/b"}


def test_own_paths_only_leaves_other_processes_fds_as_numbers(proc):
    proc.others_paths = False
    assert enrich(_event(0), proc).paths == {"idx1": "/home/a"}  # pid2 20 is not the caller
    ctx = enrich(_event(7, idx1=3, idx2=0x7FFD0000, slot=EpollSlot(8, 6, 0)), proc)
    assert ctx.paths == {"idx1": "/home/a"}


def test_epoll_slot_fds_belong_to_pid2(proc):
    ctx = enrich(_event(7, idx1=3, idx2=0x7FFD0000, slot=EpollSlot(8, 6, 0)), proc)
    assert ctx.paths == {"idx1": "/home/a", "efd": "anon_inode:[eventpoll]", "tfd": "pipe:[7]"}


def test_unresolvable_fds_are_left_out(proc):
    assert enrich(_event(0, idx1=99, idx2=0x1_0000_0003), proc).paths == {"idx2": "/etc/b"}
    assert enrich(_event(7, idx1=3, idx2=1), proc).paths == {"idx1": "/home/a"}


def test_raw_bytes_of_a_path_survive(proc):
    assert proc.fd_path(20, 9) == b"/tmp/\xff\x1b".decode("utf-8", "surrogateescape")


def test_every_call_names_its_targets_with_owner_and_parent(proc):
    ctx = enrich(_event(1), proc)
    assert ctx.paths == {} and ctx.unresolved == () and ctx.same_pidns is True
    t1, t2 = ctx.targets
    assert (t1.host_pid, t1.name, t1.uid, t1.host_ppid, t1.gone) == (10, b"criu", 1000, 1, False)
    assert (t2.host_pid, t2.name, t2.uid, t2.host_ppid) == (20, b"sshd", 0, 10)
    assert t1.container_id == "" and ctx.owners == (1000, 0)


def test_a_target_gone_from_proc_is_known_from_the_kernel_table(proc):
    ctx = enrich(_event(1, pids=(10, 66)), proc)
    assert ctx.targets[1] == Target(66, b"short\x1b", None, 20, None, None, None, None, None,
                                    gone=True)
    assert ctx.unresolved == ()


def test_a_target_reaped_between_its_status_and_its_name_is_taken_from_the_kernel_table(
        proc, tmp_path):
    """Never a name of "?" beside a uid: the two are read together, or both from the table."""
    _task(tmp_path, 66, 0, name="reaped")
    (tmp_path / "66" / "comm").unlink()
    ctx = enrich(_event(1, pids=(10, 66)), proc)
    assert ctx.targets[1] == Target(66, b"short\x1b", None, 20, None, None, None, None, None,
                                    gone=True)


def test_a_target_reaped_while_its_fields_are_read_is_taken_from_the_kernel_table(
        proc, tmp_path, monkeypatch):
    """Its unread container is not told as "unreadable" beside a live process's name."""
    _task(tmp_path, 66, 0, name="reaped")

    def reaped(pid):
        shutil.rmtree(tmp_path / str(pid))

    monkeypatch.setattr(proc.fs, "cgroups", reaped)
    gone = Target(66, b"short\x1b", None, 20, None, None, None, None, None, gone=True)
    assert enrich(_event(1, pids=(10, 66)), proc).targets[1] == gone
    # exited, not yet reaped: its namespaces are unreadable, its status says so
    _task(tmp_path, 67, 0, name="zombie", state="Z (zombie)")
    proc.kernel.known[67] = (20, b"zombie")
    assert enrich(_event(1, pids=(10, 67)), proc).targets[1] == gone._replace(
        host_pid=67, name=b"zombie")


def test_after_esrch_a_gone_target_is_not_named_from_the_kernel_table(proc):
    # The table remembers pid 66, but the call says a pid named nothing: it may be that one.
    assert enrich(_event(1, ret=-3, pids=(10, 66)), proc).targets[1] is None


def test_a_target_found_nowhere_is_unresolved_unless_the_call_said_so(proc):
    assert enrich(_event(1, pids=(10, 77)), proc).unresolved == ("pid2",)
    esrch = enrich(_event(1, ret=-3, pids=(77, 0)), proc)  # neither existed: nothing missing
    assert esrch.targets == (None, None) and esrch.unresolved == ()


def test_targets_are_remembered_briefly_and_misses_more_briefly(proc, tmp_path):
    first = proc.target(10, 0)
    assert proc.target(10, ProcReader.TARGET_TTL_NS - 1) is first
    assert proc.target(10, ProcReader.TARGET_TTL_NS) is not first
    asked = len(proc.kernel.asked)
    assert proc.target(78, 0) is None and proc.target(78, 1) is None
    assert len(proc.kernel.asked) == asked + 1
    _task(tmp_path, 78, name="new")
    assert proc.target(78, ProcReader.MISSING_TTL_NS).name == b"new"


def test_exit_without_entry_has_only_the_caller(proc):
    event = _event(1, ret=-1)._replace(args=None)
    ctx = enrich(event, proc)
    assert ctx.targets is None and ctx.paths == {} and ctx.caller.host_ppid == 1


def test_a_gone_caller_keeps_the_parent_the_kernel_recorded(proc):
    ctx = enrich(_event(1, tgid=55, pids=(10, 20), ppid=10), proc)
    c = ctx.caller
    assert c.gone and (c.ns_pid, c.host_ppid, c.ns_ppid) == (55, 10, 10)
    assert ctx.unresolved == ()
    unknown = enrich(_event(1, tgid=56, pids=(10, 20)), proc)  # not in the table either
    assert unknown.caller.host_ppid is None and unknown.unresolved == ("caller",)


def test_a_gone_caller_keeps_its_container_from_the_cgroup_id(tmp_path):
    class Paths:
        def path(self, cgroup_id):
            return {7: f"/system.slice/docker-{CID}.scope", 1: "/"}.get(cgroup_id)

    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "status").write_text("NSpid:\t1\n")
    proc = ProcReader(str(tmp_path), cgroups=Paths())
    boxed = _event(1, tgid=55, cgroup_id=7, own_pidns=False)
    assert proc.caller(boxed._replace(cgroup_id=7)).caller.container_id == CID
    assert proc.caller(boxed._replace(tgid=56, cgroup_id=1)).caller.container_id == ""
    assert proc.caller(boxed._replace(tgid=57, cgroup_id=9)).caller.container_id is None


def test_a_number_of_a_namespace_gone_from_proc_is_the_host_pid_the_kernel_recorded(tmp_path):
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "status").write_text("NSpid:\t1234\n")
    container = _ns(tmp_path, "container")
    _task(tmp_path, 30, 0, nspid=1, ns={"pid": container})

    class Numbers(Table):
        def host_pid(self, pidns, nr):
            return {(container.stat().st_ino, 7): 77}.get((pidns, nr))

    proc = ProcReader(str(tmp_path), kernel=Numbers({77: (30, b"gone")}))
    ctx = enrich(_event(0, tgid=30, pids=(1, 7), own_pidns=False), proc)
    assert ctx.host_pids == (30, 77) and ctx.unresolved == ()
    assert ctx.targets[1] == Target(77, b"gone", None, 30, None, None, None, None, None,
                                    gone=True)
    assert list(proc.fs.numbered()) == [(container.stat().st_ino, 1, 30)]


def test_a_caller_in_an_unreadable_namespace_gets_no_lookups(proc):
    # Its pid1/pid2 are its own namespace's numbers: /proc here would name other processes.
    ctx = enrich(_event(0, ret=-1, tgid=56, own_pidns=False), proc)
    assert ctx.paths == {} and ctx.targets is None and ctx.same_pidns is False
    assert ctx.unresolved == ("caller", "pid1", "pid2")


def test_pids_of_another_namespace_are_translated_to_host_pids(tmp_path):
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "status").write_text("NSpid:\t1234\n")
    container, other = _ns(tmp_path, "container"), _ns(tmp_path, "other")
    for host, inner, fds, ns in ((30, 1, {3: "/srv/a"}, container),
                                 (31, 2, {4: "/srv/b"}, container),
                                 (40, 1, {3: "/elsewhere"}, other)):
        _task(tmp_path, host, host, fds, nspid=inner, ns={"pid": ns})
    for thread in ("31/task/33", "33"):  # a thread of 31, 3 in there (/proc/33 works too)
        (tmp_path / thread).mkdir(parents=True)
        (tmp_path / thread / "status").write_text("NSpid:\t33\t3\n")
    proc = ProcReader(str(tmp_path))
    event = _event(0, idx1=3, idx2=4, ret=-1, tgid=30, pids=(1, 2), own_pidns=False)
    ctx = enrich(event, proc)
    assert ctx.host_pids == (30, 31) and ctx.same_pidns is False
    assert ctx.paths == {"idx1": "/srv/a", "idx2": "/srv/b"}
    assert ctx.owners == (30, 31) and ctx.crossings == ()
    caller = proc.caller(event).caller
    assert proc.pidns.translate(30, 30, caller, (1, 2, 3, 4)) == (30, 31, 33, None)


def test_crossings_compare_caller_and_targets_where_both_are_known():
    def caller(**kw):
        base = dict(ns_pid=1, ns_tid=1, host_ppid=0, ns_ppid=0, pidns=1, mntns=2,
                    container_id="", exe=None, netns=3)
        return Caller(**{**base, **kw})

    def target(**kw):
        base = dict(host_pid=9, name=b"t", uid=0, host_ppid=1, pidns=1, mntns=2, netns=3,
                    netns_name=None, container_id="")
        return Target(**{**base, **kw})

    assert crossings(caller(), (target(), target())) == ()
    assert crossings(caller(), (target(), target(pidns=5, netns=6))) == ("pid", "net")
    assert crossings(caller(), (target(container_id=CID), None)) == ("container",)
    assert crossings(caller(mntns=None), (target(mntns=7), target(pidns=None))) == ()
    assert crossings(caller(), (target(pidns=5, mntns=6, netns=7, container_id=CID),
                                None)) == BOUNDARIES


def test_a_host_caller_comparing_a_container_process_crosses(tmp_path):
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "status").write_text("NSpid:\t1234\n")
    host = {k: _ns(tmp_path, f"host-{k}") for k in ("pid", "mnt", "net")}
    box = {k: _ns(tmp_path, f"box-{k}") for k in ("pid", "mnt", "net")}
    _task(tmp_path, 10, ns=host, cgroup="0::/user.slice\n")
    _task(tmp_path, 20, nspid=1, ns=box,
          cgroup=f"0::/kubepods/besteffort/pod1/cri-containerd-{CID}.scope\n")
    ctx = enrich(_event(1), ProcReader(str(tmp_path)))
    assert ctx.crossings == BOUNDARIES
    assert ctx.targets[1].container_id == CID and ctx.caller.container_id == ""


def test_caller_context_from_proc(tmp_path):
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "status").write_text("NSpid:\t1234\n")
    for pid, ppid, nspid in ((50, 40, 7), (40, 1, 1), (1, 0, None)):
        _task(tmp_path, pid, ppid=ppid, nspid=nspid,
              cgroup=f"0::/system.slice/docker-{CID}.scope\n" if pid == 50 else "")
    (tmp_path / "50" / "task" / "52").mkdir(parents=True)
    (tmp_path / "50" / "task" / "52" / "status").write_text("NSpid:\t52\t9\n")
    os.symlink("/usr/sbin/criu", tmp_path / "50" / "exe")
    proc = ProcReader(str(tmp_path))

    def caller(pid, tid, comm, ts):
        return proc.caller(Event(ts, 1, 1, pid, tid, 0, 0, comm, 0, False, None,
                                 own_pidns=False))

    bare = caller(50, 50, b"criu", 0)
    c = bare.caller
    assert (c.ns_pid, c.ns_tid, c.host_ppid, c.ns_ppid, c.gone) == (7, 7, 40, 1, False)
    assert c.container_id == CID and c.exe == "/usr/sbin/criu"
    assert caller(50, 52, b"criu", 0).caller.ns_tid == 9
    assert caller(40, 40, b"init", 0).caller.ns_ppid == 0  # parent outside the namespace
    assert caller(50, 50, b"criu", 10**9) is bare  # remembered
    assert caller(50, 50, b"sh", 10**9) is not bare  # exec'd: read again
    assert caller(50, 50, b"sh", 10**10).caller == c  # read again after 5 s
    assert caller(77, 77, b"gone", 0).caller.gone


def test_existing_processes_for_the_kernel_table(tmp_path):
    for pid, stat in ((1, b"1 (init) S 0 1 1"), (42, b"42 (a) (b\x1b) R 7 42 42"),
                      (43, b"43 (torn")):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_bytes(stat)
    (tmp_path / "self").mkdir()
    rows = sorted(ProcFS(str(tmp_path)).existing())
    assert rows == [(1, 0, b"init"), (42, 7, b"a) (b\x1b")]


def test_owners_need_targets():
    assert Context().owners is None


def test_a_name_ending_in_a_newline_keeps_it(tmp_path):
    from kcmp_monitor.context.procfs import ProcFS

    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "comm").write_bytes(b"evil\n\n")  # the name's newline, then the kernel's
    assert ProcFS(str(tmp_path)).comm(42) == b"evil\n"


def _recorded(pid, **changes):
    base = dict(pid=pid, tgid=pid, ppid=1, uid=1000, euid=0, pidns=11, mntns=12, netns=13,
                exiting=False, comm=b"k", cgroup=b"")
    base.update(changes)
    return KernelTarget(**base)


def _file(path):
    return KernelFile(True, 42, 8 << 20 | 1, 0xEF53, path, False, False, False)


def test_targets_and_fds_the_kernel_recorded_need_no_proc(proc):
    """pid2 (77) gone from /proc by the time the event is read: its fd's path, name, owners
    and container as the kernel had them at the call."""
    gone = _recorded(77, comm=b"gone-now", exiting=True, cgroup=f"docker-{CID}.scope".encode())
    event = _event(0, pids=(10, 77), targets=(_recorded(10, comm=b"criu"), gone),
                   files=(None, _file(b"/srv/x"), None))
    ctx = enrich(event, proc)
    assert ctx.targets[1] == Target(77, b"gone-now", 0, 1, 11, 12, 13, None, CID, gone=True,
                                    real_uid=1000, exiting=True)
    assert ctx.paths == {"idx1": "/home/a", "idx2": "/srv/x"}
    assert ctx.unresolved == () and ctx.owners == (0, 0)
    proc.others_paths = False
    assert enrich(event._replace(ts_ns=1), proc).paths == {"idx1": "/home/a"}


def test_a_caller_in_another_namespace_needs_no_translation_where_the_kernel_found_them(proc):
    event = _event(1, pids=(1, 2), own_pidns=False,
                   targets=(_recorded(10), _recorded(20, comm=b"sshd")))
    ctx = enrich(event, proc)
    assert ctx.host_pids == (10, 20) and [t.host_pid for t in ctx.targets] == [10, 20]


def test_a_task_the_kernel_did_not_find_is_looked_for_in_proc_unless_the_call_said_esrch(proc):
    """Gone between the call and its record (the call succeeded): /proc and the process
    table, as without the kernel's lookup; after ESRCH, no target."""
    event = _event(1, pids=(10, 20), targets=(_recorded(10), None))
    assert enrich(event, proc).targets[1].name == b"sshd"
    failed = enrich(_event(1, pids=(10, 99), ret=-3, targets=(_recorded(10), None)), proc)
    assert failed.targets[1] is None and failed.unresolved == ()
