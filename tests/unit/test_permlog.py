import logging

from kcmp_monitor.context.types import Context, Target
from kcmp_monitor.kernel.events import Args, Event
from kcmp_monitor.sinks.permlog import PermissionLog


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def _denied(args=True):
    return Event(ts_ns=0, duration_ns=1, cgroup_id=1, tgid=7, tid=8, uid=65534, gid=65534,
                 comm=b"evil\x1b[2J", ret=-1, compat=False,
                 args=Args(pid1=7, pid2=1, type=1, idx1=0, idx2=0, slot=None,
                           slot_fault=False) if args else None)


def test_one_structured_line_per_failure(caplog):
    caplog.set_level(logging.INFO, logger="kcmp_monitor")
    evil = Target(7, b"evil\x1b[2J", 65534, 1, None, None, None, None, None)
    init = Target(1, b"init", 0, 0, None, None, None, None, None)
    PermissionLog(clock=Clock()).event(_denied(), Context(targets=(evil, init),
                                                          crossings=("pid", "mnt")))
    assert [r.getMessage() for r in caplog.records] == [
        'msg="kcmp permission denied" kcmp_type=KCMP_VM caller_pid=7 caller_tid=8 '
        "comm=evil\\x1b[2J uid=65534 pid1=7 pid1_uid=65534 pid1_comm=evil\\x1b[2J pid2=1 "
        "pid2_uid=0 pid2_comm=init compat=false crosses=pid,mnt"]
    assert caplog.records[0].levelno == logging.WARNING


def test_unseen_arguments_are_left_out(caplog):
    caplog.set_level(logging.INFO, logger="kcmp_monitor")
    PermissionLog(clock=Clock()).event(_denied(args=False), Context())
    assert caplog.records[0].getMessage() == (
        'msg="kcmp permission denied" kcmp_type=unseen caller_pid=7 caller_tid=8 '
        "comm=evil\\x1b[2J uid=65534 compat=false")


def _logged(caplog, msg='msg="kcmp permission denied" '):
    return sum(r.getMessage().startswith(msg) for r in caplog.records)


def _offer(plog):
    """As the tracer does: admitted first, and only then given its line."""
    if plog.admit():
        plog.event(_denied(), Context())


def test_rate_limit_and_suppressed_report(caplog):
    caplog.set_level(logging.INFO, logger="kcmp_monitor")
    clock = Clock()
    plog = PermissionLog(rate=2, clock=clock)  # bursts of 10
    for _ in range(15):
        _offer(plog)
    assert _logged(caplog) == 10 and plog.suppressed == 5
    clock.now = 0.4  # not yet a whole token
    _offer(plog)
    assert _logged(caplog) == 10 and plog.suppressed == 6
    clock.now = 1.0
    _offer(plog)
    plog.report_suppressed()  # as the tracer does at the end
    messages = [r.getMessage() for r in caplog.records]
    assert messages[10].startswith('msg="kcmp permission denied" ')
    assert messages[11] == (
        'msg="kcmp permission denied lines suppressed (rate limit)" suppressed=6 total=6')
    assert _logged(caplog) == 11 and plog.suppressed == 0 and plog.suppressed_total == 6
    plog.report_suppressed()
    assert len(caplog.records) == 12  # nothing more to report


def test_suppressed_lines_are_said_as_they_happen(caplog):
    caplog.set_level(logging.INFO, logger="kcmp_monitor")
    clock = Clock()
    plog = PermissionLog(rate=1, clock=clock)  # bursts of 5
    for _ in range(8):
        _offer(plog)
    plog.tick()  # not yet: at most every few seconds
    assert len(caplog.records) == 5
    clock.now = 0.5  # no token yet
    _offer(plog)
    clock.now = 5.0
    plog.tick()
    assert caplog.records[-1].getMessage() == (
        'msg="kcmp permission denied lines suppressed (rate limit)" suppressed=4 total=4')


class Runtime:
    def __init__(self, known):
        self.known = known

    def get(self, cid):
        return self.known.get(cid)


def test_containers_are_named_by_their_runtime_else_their_short_id(caplog):
    from kcmp_monitor.context.types import Caller, ContainerInfo

    caplog.set_level(logging.INFO, logger="kcmp_monitor")
    web, db = "a" * 64, "b" * 64
    runtime = Runtime({web: ContainerInfo("web-1", "shop/web:2", None, "web-7f", "shop", "u")})
    caller = Caller(3, 3, 1, 0, None, None, web, None)
    evil = Target(7, b"evil", 65534, 1, None, None, None, None, web)
    other = Target(9, b"db", 0, 1, None, None, None, None, db)
    PermissionLog(clock=Clock(), runtime=runtime).event(
        _denied(), Context(caller=caller, targets=(evil, other)))
    assert caplog.records[0].getMessage().endswith(
        "compat=false container=web-1 container_image=shop/web:2 pod=shop/web-7f "
        "pid1_container=web-1 pid2_container=bbbbbbbbbbbb")


def test_finding_lines_are_rate_limited_and_what_is_dropped_said(caplog):
    from kcmp_monitor.detect.types import Finding, Meta, Observation
    from kcmp_monitor.sinks.permlog import FindingLog

    caplog.set_level(logging.INFO, logger="kcmp_monitor")
    clock = Clock()
    flog = FindingLog(rate=1, clock=clock)  # bursts of 5
    meta = Meta("KCMP-005", "kcmp_compat_call", "d", 2, "T1562", "Impair Defenses", "x")
    obs = Observation(0, 1, 1, "evil\x1b", None, 0, 0, "", None, None, None, None, None, 0,
                      False, True, ())
    for _ in range(8):
        flog.finding(Finding(meta, "evil\x1b (pid 1) made a 32-bit kcmp", (obs,), "1"))
    clock.now = 6.0
    flog.tick()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 6 and _logged(caplog, 'msg="kcmp finding" ') == 5
    assert lines[0] == ('msg="kcmp finding" signature=KCMP-005 name=kcmp_compat_call '
                        'severity=medium technique=T1562 '
                        'summary="evil\\x1b (pid 1) made a 32-bit kcmp"')
    assert lines[-1] == 'msg="kcmp finding lines suppressed (rate limit)" suppressed=3 total=3'
