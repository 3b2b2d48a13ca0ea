import time

import pytest

from kcmp_monitor.sinks import console
from kcmp_monitor.context.types import Context, Target
from kcmp_monitor.trace import Summary
from kcmp_monitor.kernel.events import Args, EpollSlot, Event


def _args(pid1=1145, pid2=1144, type=0, idx1=3, idx2=3, slot=None, slot_fault=False):
    return Args(pid1=pid1, pid2=pid2, type=type, idx1=idx1, idx2=idx2, slot=slot,
                slot_fault=slot_fault)


def _event(ret=0, args=None, **kw):
    base = dict(ts_ns=0, duration_ns=1234, cgroup_id=1, tgid=4242, tid=4242, uid=0, gid=0,
                comm=b"kcmpload", ret=ret, compat=False, args=args or _args())
    base.update(kw)
    return Event(**base)


# strace's own lines from kcmp-reference.md, rebuilt from the arguments.
@pytest.mark.parametrize("event, ctx, line", [
    (_event(0, _args(1145, 1144, 0, 3, 3)),
     Context(paths={"idx1": "/tmp/kcmp.test", "idx2": "/tmp/kcmp.test"}),
     "kcmp(1145, 1144, KCMP_FILE, 3</tmp/kcmp.test>, 3</tmp/kcmp.test>) = 0"),
    (_event(2, _args(1145, 1144, 1, 0, 0)), Context(),
     "kcmp(1145, 1144, KCMP_VM) = 2"),
    (_event(0, _args(9599, 9599, 7, 6, 0x7FFD1234, slot=EpollSlot(8, 6, 0))),
     Context(paths={"idx1": "pipe:[13101]", "efd": "anon_inode:[eventpoll]",
                    "tfd": "pipe:[13101]"}),
     "kcmp(9599, 9599, KCMP_EPOLL_TFD, 6<pipe:[13101]>, {efd=8<anon_inode:[eventpoll]>, "
     "tfd=6<pipe:[13101]>, toff=0}) = 0"),
    (_event(-22, _args(9599, 9599, 0x2A, 0, 0)), Context(),
     "kcmp(9599, 9599, 0x2a /* KCMP_??? */, 0, 0) = -1 EINVAL (Invalid argument)"),
    (_event(-3, _args(9599, 1073741823, 1, 0, 0)), Context(),
     "kcmp(9599, 1073741823, KCMP_VM) = -1 ESRCH (No such process)"),
])
def test_call_is_printed_as_strace_prints_it(event, ctx, line):
    assert console.format_call(event, ctx) == line


@pytest.mark.parametrize("args, ctx, shown", [
    (_args(type=-1, idx1=0x10, idx2=0), Context(), "0xffffffff /* KCMP_??? */, 0x10, 0"),
    (_args(type=8), Context(), "0x8 /* KCMP_??? */, 0x3, 0x3"),
    (_args(type=7, idx1=5, idx2=1, slot_fault=True), Context(), "KCMP_EPOLL_TFD, 5, 0x1"),
    (_args(type=7, idx1=5, idx2=0, slot_fault=True), Context(), "KCMP_EPOLL_TFD, 5, NULL"),
    (_args(type=0, idx1=0x1_0000_0003, idx2=999), Context(paths={"idx1": "/x"}),
     "KCMP_FILE, 3</x>, 999"),
    # strace prints fds as a C int, and "(deleted)" after the brackets
    (_args(type=0, idx1=0xFFFFFFFF, idx2=0xDEADBEEF), Context(), "KCMP_FILE, -1, -559038737"),
    (_args(type=7, idx1=0x80000000, slot=EpollSlot(0xFFFFFFFE, 3, 0xFFFFFFFF)),
     Context(paths={"tfd": "/memfd:x (deleted)"}),
     "KCMP_EPOLL_TFD, -2147483648, {efd=-2, tfd=3</memfd:x>(deleted), toff=4294967295}"),
    (_args(type=0, idx1=3, idx2=4), Context(paths={"idx1": "/tmp/gone (deleted)",
                                                   "idx2": "/tmp/kept (deleted) too"}),
     "KCMP_FILE, 3</tmp/gone>(deleted), 4</tmp/kept (deleted) too>"),
    (_args(type=5), Context(), "KCMP_IO"),
])
def test_arguments_by_type(args, ctx, shown):
    assert console.format_args(args, ctx) == f"{args.pid1}, {args.pid2}, {shown}"


def test_unknown_arguments_of_an_exit_without_entry():
    event = _event(-1, duration_ns=None)
    event = event._replace(args=None)
    assert console.format_call(event, Context()) == \
        "kcmp(?) = -1 EPERM (Operation not permitted)"


@pytest.mark.parametrize("ns, shown", [
    (None, "<no entry>"), (870, "0.9us"), (1234, "1.2us"), (999_949, "999.9us"),
    (999_950, "1.000ms"), (1_500_000, "1.500ms"), (999_999_499, "999.999ms"),
    (999_999_500, "1.000s"), (2_000_000_000, "2.000s"),
])
def test_duration(ns, shown):
    assert console.format_duration(ns) == shown


def _wall(h, m, s, us):
    return int(time.mktime((2026, 11, 27, h, m, s, 0, 0, -1))) * 10**9 + us * 1000


def test_full_line_with_context():
    line = console.format_line(
        _event(0, _args(4242, 4243, 0, 3, 3)),
        Context(paths={"idx1": "/tmp/x", "idx2": "/tmp/x"}), _wall(12, 0, 1, 123456))
    assert line == ("12:00:01.123456 kcmpload/4242 uid=0 "
                    "kcmp(4242, 4243, KCMP_FILE, 3</tmp/x>, 3</tmp/x>) = 0 <same> 1.2us")


def test_thread_compat_and_meaning_markers():
    line = console.format_line(_event(1, _args(type=1), tid=4250, compat=True), Context(),
                               _wall(0, 0, 0, 5))
    assert line == ("00:00:00.000005 kcmpload/4242/4250 uid=0 [compat] "
                    "kcmp(1145, 1144, KCMP_VM) = 1 <less> 1.2us")


@pytest.mark.parametrize("repeat, last_ns, tail", [
    (999_999, 2_500_000, " \u00d7999999 until 12:00:01.002500"),
    # A run of two: the first streamed as it came, the second folded alone, no "×1".
    (1, 0, ""),
])
def test_folded_line_says_how_many_calls_until_when(repeat, last_ns, tail):
    event = _event(0, _args(type=1), repeat=repeat, last_ns=last_ns)
    line = console.format_line(event, Context(), _wall(12, 0, 1, 0))
    assert line == ("12:00:01.000000 kcmpload/4242 uid=0 kcmp(1145, 1144, KCMP_VM) = 0 <same> "
                    "1.2us" + tail)


def test_exit_line_says_what_was_folded():
    summary = Summary(events=1_000_000, folded=999_998, lost=2)
    assert console.exit_line(summary) == (
        "kcmp-monitor: 1000000 calls traced (999998 of them folded), 2 lost")


def _target(pid, uid, name=b"sshd", gone=False):
    return Target(pid, name, uid, 1, None, None, None, None, None, gone)


def test_permission_failure_is_marked_with_owners():
    line = console.format_line(_event(-1, _args(type=1), uid=65534),
                               Context(targets=(_target(1145, 65534), _target(1144, 0))),
                               _wall(0, 0, 0, 0))
    assert line.endswith("kcmp(1145, 1144, KCMP_VM) = -1 EPERM (Operation not permitted) "
                         "1.2us  [pid1 sshd/1145 uid=65534, pid2 sshd/1144 uid=0]"
                         "  !! DENIED caller uid=65534, pid1 owner=65534, pid2 owner=0")
    unknown = console.format_line(_event(-1, _args(type=1)),
                                  Context(targets=(_target(1145, None), _target(1144, 0))), 0)
    assert unknown.endswith("pid1 owner=?, pid2 owner=0")


def test_targets_self_exited_and_unknown():
    ctx = Context(targets=(_target(4242, 0), _target(77, 1000, b"\x1b]0;x\x07", gone=True)))
    line = console.format_line(_event(0, _args(4242, 77, type=1)), ctx, 0)
    assert line.endswith("  [pid1 self, pid2 \\x1b]0;x\\x07/77 uid=1000 exited]")
    line = console.format_line(_event(-3, _args(4242, 9, type=1)),
                               Context(targets=(_target(4242, 0), None)), 0)
    assert line.endswith("  [pid1 self, pid2 ?]")


def test_crossing_other_namespace_and_unresolved_are_marked():
    ctx = Context(same_pidns=False, host_pids=(4242, 900), targets=(_target(4242, 0), None),
                  crossings=("pid", "net"), unresolved=("pid2",))
    line = console.format_line(_event(0, _args(1, 2, type=1)), ctx, 0)
    assert line.endswith("  [pid1 self, pid2 ?]  [caller in another pid namespace]"
                         "  [unresolved: pid2]  !! CROSSES pid,net")
    ctx = Context(same_pidns=False, unresolved=("caller", "pid1", "pid2"))
    line = console.format_line(_event(0, _args(1, 2, type=1)), ctx, 0)
    assert line.endswith("  [caller in another pid namespace: pids not looked up]"
                         "  [unresolved: caller,pid1,pid2]")


def test_hostile_name_and_path_are_escaped():
    line = console.format_line(
        _event(0, _args(type=0), comm=b"\x1b]0;pwn\x07"),
        Context(paths={"idx1": "/tmp/\x1b[2J", "idx2": "/tmp/\udcff"}), 0)
    assert "\x1b" not in line and "\x07" not in line
    assert " \\x1b]0;pwn\\x07/4242 " in line
    assert "3</tmp/\\x1b[2J>, 3</tmp/\\xff>" in line


def test_start_line_and_notes():
    assert console.start_line([]) == "Tracing kcmp()... Ctrl-C to end."
    assert console.start_line(["a", "b"]) == "Tracing kcmp()... Ctrl-C to end. [a] [b]"
    assert console.start_line(["\x1b[2J"]) == "Tracing kcmp()... Ctrl-C to end. [\\x1b[2J]"


def test_a_process_comparing_itself_gets_no_target_words():
    ctx = Context(targets=(_target(4242, 0), _target(4242, 0)))
    line = console.format_line(_event(0, _args(4242, 4242, type=1)), ctx, 0)
    assert line.endswith("kcmp(4242, 4242, KCMP_VM) = 0 <same> 1.2us")


def test_containers_are_shown_by_short_id():
    from kcmp_monitor.context.types import Caller

    cid = "0123456789ab" + "c" * 52
    caller = Caller(1, 1, 0, 0, None, None, cid, None)
    boxed = Target(77, b"sh", 0, 1, None, None, None, None, cid)
    line = console.format_line(_event(0, _args(4242, 77, type=1)),
                               Context(caller=caller, targets=(_target(4242, 0), boxed)), 0)
    assert " kcmpload/4242 uid=0 ctr=0123456789ab kcmp(4242, 77, KCMP_VM) = 0" in line
    assert line.endswith("  [pid1 self, pid2 sh/77 uid=0 ctr=0123456789ab]")


def test_a_gone_caller_naming_itself_is_self():
    """ESRCH from a caller already gone: its own pid found nowhere is still itself."""
    line = console.format_line(_event(-3, _args(4242, 1073741823, 1, 0, 0)),
                               Context(targets=(None, None)), 0)
    assert line.endswith("  [pid1 self, pid2 ?]")


def test_a_callers_namespaces_are_named_where_they_are_not_the_monitors():
    from kcmp_monitor.context.types import Caller

    caller = Caller(1, 1, 900, 0, 4026532192, 4026531840, "", None, 4026532193)
    own = {"pid": 4026531836, "mnt": 4026531840, "net": 4026531833}
    line = console.format_line(_event(0, _args(type=1)), Context(caller=caller), 0, own)
    assert line.endswith("  [ns pid:4026532192 net:4026532193]")
    assert "[ns" not in console.format_line(_event(0, _args(type=1)), Context(caller=caller), 0)


class Runtime:
    def get(self, cid):
        from kcmp_monitor.context.types import ContainerInfo

        return ContainerInfo("web 1", "shop/web", None) if cid == "ab" * 32 else None


def test_a_container_is_shown_by_the_name_its_runtime_gives_it():
    from kcmp_monitor.context.types import Caller

    caller = Caller(1, 1, 0, 0, None, None, "ab" * 32, None)
    line = console.format_line(_event(0, _args(type=1)), Context(caller=caller), 0,
                               runtime=Runtime())
    assert " uid=0 ctr=web\\x201 kcmp(" in line
    other = Caller(1, 1, 0, 0, None, None, "cd" * 32, None)
    line = console.format_line(_event(0, _args(type=1)), Context(caller=other), 0,
                               runtime=Runtime())
    assert f" ctr={'cd' * 6} " in line  # not known: its short id


def test_a_pid_named_twice_is_named_once():
    target = Target(1144, b"t", 0, 1, None, None, None, None, "")
    ctx = Context(targets=(target, target))
    line = console.format_line(_event(0, _args(1144, 1144, type=1)), ctx, _wall(0, 0, 0, 0))
    assert line.endswith("  [pid1=pid2 t/1144 uid=0]")


@pytest.mark.parametrize("changes, word", [
    (dict(exiting=True), " exiting"), (dict(gone=True), " exited"),
    (dict(gone=True, exiting=True), " exited"), ({}, "")])
def test_a_target_exiting_at_the_call_or_gone_since_says_so(changes, word):
    target = Target(1144, b"t", 0, 1, None, None, None, None, "")._replace(**changes)
    assert console.format_target(target, 4242) == "t/1144 uid=0" + word
