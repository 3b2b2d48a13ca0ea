"""The signatures on made-up calls: each fires exactly once for its behaviour and not for the
known legitimate patterns; the rule file's checks; a recorded stream read back; and a call's
observation the same from the live record as from its JSON line."""

import gzip
import io
import json
import sys

import pytest

from kcmp_monitor.abi import EPERM
from kcmp_monitor.context.types import Caller, ContainerInfo, Context, Target
from kcmp_monitor.detect import offline, rules
from kcmp_monitor.detect.engine import Detector
from kcmp_monitor.detect.observe import from_event, from_record
from kcmp_monitor.detect.signatures import ALL
from kcmp_monitor.detect.types import Observation, Seen
from kcmp_monitor.errors import UsageError
from kcmp_monitor.kernel.events import Args, Event
from kcmp_monitor.sinks.console import format_finding
from kcmp_monitor.sinks.jsonout import dumps
from tests.records import json_record

S = 1_000_000_000
CTR = "c" * 64


def call(t=0.0, pid=100, kind="KCMP_FILE", idx1=3, idx2=3, ret=0, targets=None, uid=1000,
         comm="evil", exe="/tmp/evil", container="", seccomp=False, compat=False, repeat=1,
         swept=False, bits=64, tfd=None):
    if targets is None:
        targets = (Seen(pid, pid, uid, container), Seen(200, 200, uid, container))
    return Observation(int(t * S), pid, pid, comm, exe, uid, uid, container, None, None, kind,
                       idx1, idx2, ret, seccomp, compat, targets, repeat, swept, bits,
                       idx2 if kind == "KCMP_FILE" else tfd)


def detector(**overrides):
    return Detector(rules.parse({"signatures": overrides}, "test"))


def fired(d, calls):
    return [(f.meta.id, f.key) for c in calls for f in d.observe(c)]


def test_every_signature_has_its_metadata_and_a_distinct_id():
    ids = [s.META.id for s in ALL]
    assert ids == [f"KCMP-00{i}" for i in range(1, 7)]
    for s in ALL:
        m = s.META
        assert m.name.startswith("kcmp_") and m.description and m.technique.startswith("T")
        assert 0 <= m.severity <= 3 and m.tactic and m.technique_name
        # One file each, which says what it detects and why.
        assert s.__module__.startswith("kcmp_monitor.detect.signatures.")
        assert sys.modules[s.__module__].__doc__.startswith(f"{m.id}: ")


def test_cross_container_fires_once_per_pair_and_not_within_a_container():
    d = detector()
    other = (Seen(1, 100, 1000, CTR), Seen(1, 300, 1000, ""))  # pid 2 on the host
    calls = [call(i, container=CTR, targets=other) for i in range(50)]
    assert fired(d, calls) == [("KCMP-001", "(100, 300)")]
    same = (Seen(1, 100, 1000, CTR), Seen(2, 101, 1000, CTR))
    assert fired(detector(), [call(container=CTR, targets=same)]) == []
    # The host comparing a container's process is not a container looking out.
    assert fired(detector(), [call(targets=(Seen(1, 1, 1000, ""), Seen(9, 9, 1000, CTR)))]) \
        == []
    # Unknown containers say nothing.
    assert fired(detector(), [call(container=CTR, targets=(Seen(9, None, None, None),) * 2)]) \
        == []


def test_fd_sweep_fires_once_for_many_distinct_fds_of_another_process():
    d = detector()
    sweep = [call(fd * 0.01, idx1=0, idx2=fd) for fd in range(100)]
    assert fired(d, sweep) == [("KCMP-002", "100->200")]
    # Its own fds (systemd's same_fd, Mesa), however many: nothing.
    own = (Seen(100, 100, 1000, ""),) * 2
    assert fired(detector(), [call(idx2=fd, targets=own) for fd in range(100)]) == []
    # The same fd again and again, or a few: nothing; other types: nothing.
    assert fired(detector(), [call(idx2=5) for _ in range(100)]) == []
    assert fired(detector(), [call(kind="KCMP_VM", idx2=fd) for fd in range(100)]) == []
    # Spread wider than the window: no sweep.
    assert fired(detector(), [call(fd * 1.0, idx2=fd) for fd in range(40)]) == []


def test_an_epoll_sweep_counts_the_slots_target_fds_not_the_slots_address():
    """KCMP_EPOLL_TFD's idx2 is the address of the slot; pid2's fd is the slot's tfd."""
    slot = 0x7FFD0000
    sweep = [call(fd * 0.01, kind="KCMP_EPOLL_TFD", idx2=slot, tfd=fd) for fd in range(40)]
    assert fired(detector(), sweep) == [("KCMP-002", "100->200")]
    moved = [call(i * 0.01, kind="KCMP_EPOLL_TFD", idx2=slot + 24 * i, tfd=5)
             for i in range(40)]
    assert fired(detector(), moved) == []
    assert fired(detector(), [call(kind="KCMP_EPOLL_TFD", idx2=slot + i) for i in range(40)]) \
        == []  # no slot read: no fd named


def test_a_sweep_the_kernel_counted_completes_the_finding_at_once():
    """The exporter streams the call that made the kernel's count (it sees no other)."""
    d = detector()
    assert fired(d, [call(idx2=35, swept=True)]) == [("KCMP-002", "100->200")]
    (finding,) = detector().observe(call(idx2=35, swept=True))
    assert "compared 32 (counted in the kernel) distinct fds" in finding.summary
    assert finding.record()["triggeredBy"][-1]["fdSweep"] is True


def test_a_criu_style_dump_is_left_alone_by_the_default_allowlist():
    d = Detector(rules.load())
    tree = [call(i * 0.001, pid=10, comm="criu", exe="/usr/sbin/criu", idx1=fd, idx2=fd,
                 kind=kind, targets=(Seen(p, p, 0, ""), Seen(p + 1, p + 1, 0, "")), uid=0)
            for i, (p, fd, kind) in enumerate(
                (p, fd, kind) for p in range(300, 310) for fd in range(64)
                for kind in ("KCMP_FILE", "KCMP_VM"))]
    assert fired(d, tree) == []


def test_permission_probing_fires_on_many_refusals_or_many_targets():
    d = detector()
    refused = [call(i * 0.1, ret=-EPERM, targets=(Seen(100, 100, 1000, ""), Seen(1, 1, 0, "")))
               for i in range(30)]
    assert fired(d, refused) == [("KCMP-003", "100")]
    wide = [call(i, ret=-EPERM, targets=(Seen(100, 100, 1000, ""), Seen(p, p, 0, "")))
            for i, p in enumerate(range(1, 7))]
    assert fired(detector(), wide) == [("KCMP-003", "100")]
    few = [call(i, ret=-EPERM) for i in range(3)]
    assert fired(detector(), few) == []
    # Refusals by seccomp are KCMP-004's alone.
    assert fired(detector(), [call(ret=-EPERM, seccomp=True, repeat=25)]) == [("KCMP-004", "100")]
    # A folded run of 25 refusals is 25 refusals.
    assert fired(detector(), [call(ret=-EPERM, repeat=25)]) == [("KCMP-003", "100")]


def test_seccomp_compat_and_other_user_fire_once_per_caller():
    assert fired(detector(), [call(i, ret=-EPERM, seccomp=True, container=CTR)
                              for i in range(10)]) == [("KCMP-004", "100")]
    assert fired(detector(), [call(i, compat=True) for i in range(10)]) == [("KCMP-005", "100")]
    # A 32-bit program's own calls: nothing; a program whose class is unknown: reported.
    assert fired(detector(), [call(compat=True, bits=32)]) == []
    (unknown,) = detector().observe(call(compat=True, bits=None))
    assert "a program of unknown class" in unknown.summary
    root = (Seen(100, 100, 0, ""), Seen(1, 1, 0, ""))
    assert fired(detector(), [call(i, uid=1000, targets=root) for i in range(10)]) == [
        ("KCMP-006", "(100, 0)")]
    # Refused, or the same user's: nothing.
    assert fired(detector(), [call(uid=1000, targets=root, ret=-EPERM)]) == []
    assert fired(detector(), [call(uid=1000)]) == []


def test_once_per_window_then_again():
    d = detector(**{"KCMP-005": {"window_s": 10}})
    assert len(fired(d, [call(0, compat=True), call(9, compat=True), call(10, compat=True)])) == 2


def test_signatures_can_be_turned_off_and_allowlisted_each():
    d = detector(**{"KCMP-005": {"enabled": False}})
    assert fired(d, [call(compat=True)]) == []
    d = detector(**{"KCMP-005": {"allow": {"comms": ["evil"]}}})
    assert fired(d, [call(compat=True)]) == []
    d = Detector(rules.parse({"allow": {"images": ["shop/tool"]}}, "test"))
    obs = call(compat=True)._replace(container_image="shop/tool:2")
    assert fired(d, [obs]) == []


@pytest.mark.parametrize("text, error", [
    ("[1, 2]", "the file: expected a mapping"),
    ("bogus: 1", "bogus: unknown key"),
    ("signatures: {KCMP-999: {}}", "signatures.KCMP-999: no such signature"),
    ("signatures: {KCMP-002: {distinct_fds: 0}}", "signatures.KCMP-002.distinct_fds: expected "
                                                  "a positive number"),
    ("signatures: {KCMP-002: {distinct_fds: true}}", "expected a positive number"),
    ("signatures: {KCMP-002: {distinct: 5}}", "signatures.KCMP-002.distinct: unknown parameter"),
    ("signatures: {KCMP-002: {enabled: 1}}", "signatures.KCMP-002.enabled: expected true or"),
    ("allow: {uids: [root]}", "allow.uids: expected a list of numbers"),
    ("allow: {people: []}", "allow.people: unknown key"),
    ("signatures: [KCMP-001]", "signatures: expected a mapping"),
    ("a: [", "not YAML at line"),
])
def test_a_bad_rule_file_is_one_clear_error(tmp_path, text, error):
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(UsageError) as info:
        rules.load(str(path))
    assert error in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith(f"--rules {path}: ")


def test_a_missing_rule_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="No such file"):
        rules.load(str(tmp_path / "none.yaml"))


def _event(ret=0, compat=False, pid1=4242, pid2=1):
    return Event(ts_ns=5, duration_ns=100, cgroup_id=1, tgid=4242, tid=4243, uid=1000,
                 gid=1000, comm=b"ev\x1bil\\", ret=ret, compat=compat,
                 args=Args(pid1=pid1, pid2=pid2, type=0, idx1=3, idx2=7, slot=None,
                           slot_fault=False))


def test_an_observation_is_the_same_live_and_from_its_json_line():
    caller = Caller(4242, 4243, 1, 1, 4026531836, 4026531840, CTR, "/usr/bin/ev\x1bil",
                    euid=1000, exe_bits=64)
    targets = (Target(4242, b"evil", 1000, 1, None, None, None, None, CTR),
               Target(1, b"init", 0, 0, None, None, None, None, ""))
    ctx = Context(caller=caller, targets=targets)

    class Runtime:
        def get(self, cid):
            return ContainerInfo("web", "shop/web:2", None) if cid == CTR else None

    from kcmp_monitor.kernel.events import EpollSlot

    epoll = _event()._replace(args=Args(pid1=4242, pid2=1, type=7, idx1=3, idx2=0x7FFD0000,
                                        slot=EpollSlot(9, 11, 0), slot_fault=False))
    for event in (_event(), _event(ret=-EPERM, compat=True), epoll):
        live = from_event(event, ctx, 1_700_000_000 * S, Runtime())
        recorded = from_record(json.loads(dumps(json_record(event, ctx, 1_700_000_000 * S,
                                                             Runtime()))))
        assert live == recorded
        assert live.container_name == "web" and live.targets[1] == Seen(1, 1, 0, "")
        assert live.exe_bits == 64 and live.target_fd == (11 if event is epoll else 7)


def test_findings_are_tracee_shaped_and_terminal_safe():
    (finding,) = detector().observe(call(compat=True, comm="ev\x1b[2Jil"))
    record = json.loads(dumps(finding.record()))
    assert {k: record[k] for k in ("kind", "eventName", "signatureId", "severity",
                                   "severityName")} == {
        "kind": "finding", "eventName": "kcmp_compat_call", "signatureId": "KCMP-005",
        "severity": 2, "severityName": "medium"}
    assert record["mitre"] == {"technique": "T1562", "name": "Impair Defenses",
                               "tactic": "Defense Evasion"}
    assert record["triggeredBy"][0]["compat"] is True
    line = format_finding(finding)
    assert "!! FINDING KCMP-005 kcmp_compat_call (medium, T1562 Impair Defenses): " in line
    assert "\x1b" not in line and "ev\\x1b[2Jil" in line


def _recorded(calls):
    return "".join(json.dumps(_as_record(c)) + "\n" for c in calls).encode()


def _as_record(c: Observation):
    """The fields of a JSON stream record the signatures read."""
    return {"eventName": "kcmp", "timestamp": c.timestamp, "hostProcessId": c.host_pid,
            "hostThreadId": c.host_tid, "processName": c.comm,
            "executable": {"path": c.exe, "name": None, "inode": None,
                           "elfClass": c.exe_bits}, "userId": c.uid,
            "effectiveUserId": c.euid, "containerId": c.container_id, "containerName": None,
            "containerImage": None, "kcmpType": c.kcmp_type,
            "args": [{"name": "idx1", "value": c.idx1}, {"name": "idx2", "value": c.idx2}],
            "epollSlot": None if c.kcmp_type != "KCMP_EPOLL_TFD" or c.target_fd is None
            else {"efd": 9, "tfd": c.target_fd, "toff": 0},
            "returnValue": c.ret, "refusedBySeccomp": c.seccomp, "compat": c.compat,
            "repeat": c.repeat, "fdSweep": c.swept,
            "targets": [{"pid": t.pid, "hostPid": t.host_pid, "userId": t.uid,
                         "containerId": t.container_id} for t in c.targets]}


def test_a_recorded_stream_gzipped_or_not_gives_the_findings_and_counts_bad_lines():
    calls = [call(i * 0.01, idx2=fd) for i, fd in enumerate(range(40))]
    data = _recorded(calls) + b'{"eventName":"events_lost","lostEvents":3}\nnot json\n[1]\n' \
        + b'{"eventName":"kcmp"}\n\n'
    for raw in (data, gzip.compress(data)):
        skipped = offline.Skipped()
        stream = offline.open_events("-", io.BufferedReader(io.BytesIO(raw)))
        found = list(offline.findings(stream, "rec", detector(), skipped))
        assert [f.meta.id for f in found] == ["KCMP-002"]
        assert skipped.count == 3 and skipped.first == "rec:42: not JSON"


def test_a_record_without_the_fields_of_a_call_is_said_to_be_no_event():
    from kcmp_monitor.detect.observe import NotAnEvent

    with pytest.raises(NotAnEvent, match=r"\(hostThreadId, userId missing or wrong\)"):
        from_record({"eventName": "kcmp", "timestamp": 1, "hostProcessId": 2,
                     "hostThreadId": True, "processName": "x", "returnValue": 0, "args": []})


def test_the_detect_command_prints_findings_and_says_what_it_skipped(tmp_path, capsys):
    from kcmp_monitor import cli

    path = tmp_path / "events.json.2.gz"
    path.write_bytes(gzip.compress(_recorded([call(i, compat=True) for i in range(3)])))
    assert cli.main(["detect", str(path)]) == 0
    out, err = capsys.readouterr()
    (line,) = out.splitlines()
    assert json.loads(line)["signatureId"] == "KCMP-005" and err == ""
    assert cli.main(["detect", "--output", "text", str(path)]) == 0
    assert "!! FINDING KCMP-005" in capsys.readouterr().out
    bad = tmp_path / "cut.json"
    bad.write_bytes(_recorded([call(compat=True)]) + b'{"eventName": "kcm')
    assert cli.main(["detect", str(bad)]) == 65
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1  # the findings of the rest are not lost
    assert err == f"kcmp-monitor: error: 1 line skipped, not events (first: {bad}:2: not JSON)\n"
    assert cli.main(["detect", str(tmp_path / "none.json")]) == 66
    assert cli.main(["detect", "--print-rules"]) == 0
    assert "KCMP-002" in capsys.readouterr().out


def test_state_is_bounded_and_what_is_let_go_is_counted(monkeypatch):
    from kcmp_monitor.detect import signature

    monkeypatch.setattr(signature, "MAX_KEYS", 8)
    d = detector()
    for pid in range(20):  # 20 callers, one refusal each: KCMP-003 follows at most 8
        d.observe(call(pid=1000 + pid, ret=-EPERM))
    probe = next(s for s in d.signatures if s.META.id == "KCMP-003")
    assert len(probe.state) == 8 and d.evicted["KCMP-003"] == 12


def test_a_quiet_call_is_one_no_signature_looks_at():
    """quiet() spares calls the observation; every call it passes over must be one that no
    signature would have reported or kept state for."""
    import random

    from kcmp_monitor.detect.observe import quiet

    rng = random.Random(7)
    d = Detector(rules.parse({"signatures": {"KCMP-002": {"distinct_fds": 2},
                                             "KCMP-003": {"refusals": 1}}}, "test"))
    passed = 0
    for i in range(5000):
        tgid = rng.choice((100, 200))
        pid2 = rng.choice((tgid, 300, None))
        uid = rng.choice((0, 1000))
        caller = Caller(tgid, tgid, 1, 1, None, None, rng.choice(("", CTR, None)), None,
                        euid=uid)
        t2 = None if pid2 is None else Target(pid2, b"x", uid if pid2 == tgid else 0, 1,
                                              None, None, None, None, rng.choice(("", CTR)))
        event = _event(ret=rng.choice((0, 1, -EPERM, -9)), compat=rng.random() < 0.1,
                       pid1=tgid, pid2=pid2 or 4)._replace(tgid=tgid, uid=uid,
                                                           seccomp=rng.random() < 0.1)
        event = event._replace(args=event.args._replace(type=rng.choice((0, 7, 1)),
                                                        idx2=rng.randrange(64)))
        ctx = Context(caller=caller, targets=(Target(tgid, b"x", uid, 1, None, None, None,
                                                     None, ""), t2))
        if quiet(event, ctx):
            passed += 1
            assert d.observe(from_event(event, ctx, i * S)) == []
    assert passed > 500
    assert all(len(s.state) == 0 for s in d.signatures)


def test_the_elf_class_is_read_from_the_executable(tmp_path):
    from kcmp_monitor.context.procfs import ProcFS

    proc = tmp_path / "proc"
    for pid, head in ((1, b"\x7fELF\x01"), (2, b"\x7fELF\x02"), (3, b"#!/bin/sh\n")):
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "exe").write_bytes(head + b"\0" * 11)
    fs = ProcFS(str(proc))
    assert [fs.exe_bits(pid) for pid in (1, 2, 3, 4)] == [32, 64, None, None]
    assert ProcFS().exe_bits("self") == 64


def test_the_exporters_detection_counts_the_sweep_in_the_kernel_as_the_rules_say():
    from kcmp_monitor import parsers, plan
    from kcmp_monitor.wiring import kernel_options

    def options(argv, conf=None):
        the_plan = plan.from_flags(vars(parsers.build_parser().parse_args(argv)))
        return kernel_options(the_plan, Detector(rules.parse({"signatures": conf or {}}, "test")))

    detect = options(["--detect"], {"KCMP-002": {"distinct_fds": 40, "window_s": 5}})
    assert (detect.sweep, detect.trace, detect.urgent_only) == ((40, 5), True, True)
    assert options(["--detect"], {"KCMP-002": {"enabled": False}}).sweep is None
    assert options(["--trace"]).sweep is None  # every traced call reaches the signature
