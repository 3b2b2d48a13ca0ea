import io
import json

from kcmp_monitor import schema
from kcmp_monitor.sinks import jsonout
from kcmp_monitor.context.types import Caller, Context, Target
from kcmp_monitor.kernel.events import Args, EpollSlot, Event, KernelFile
from tests.records import json_record

NO_CONTAINER = dict.fromkeys(schema.CONTAINER)


def _event(ret=0, args="default", comm=b"criu", **kw):
    if args == "default":
        args = Args(pid1=-87158697, pid2=7, type=7, idx1=5, idx2=0x7FFD0000,
                    slot=EpollSlot(8, 6, 0), slot_fault=False)
    base = dict(ts_ns=5, duration_ns=None if args is None else 900, cgroup_id=77, tgid=10,
                tid=11, uid=1000, gid=100, comm=comm, ret=ret, compat=False, args=args)
    base.update(kw)
    return Event(**base)


def _record(event, ctx=None, wall=1_700_000_000_000_000_000):
    ctx = ctx if ctx is not None else Context()
    return json.loads(jsonout.dumps(json_record(event, ctx, wall)))


def test_schema_fields_and_types():
    record = _record(_event())
    assert list(record) == list(schema.EVENT)
    assert schema.mistyped(record, tuple(schema.EVENT)) == []
    target = _record(_event(), Context(targets=(None, None)))["targets"][0]
    assert list(target) == list(schema.TARGET)
    assert schema.mistyped(target, tuple(schema.TARGET), schema.TARGET) == []


def test_tracee_fields_and_args():
    record = _record(_event(ret=0), Context(paths={"idx1": "pipe:[1]", "efd": "anon"}))
    assert record["eventName"] == "kcmp" and record["syscall"] == "kcmp"
    assert record["timestamp"] == 1_700_000_000_000_000_000
    assert (record["processId"], record["threadId"], record["userId"]) == (10, 11, 1000)
    assert record["argsNum"] == 5
    assert record["args"] == [
        {"name": "pid1", "type": "pid_t", "value": -87158697},
        {"name": "pid2", "type": "pid_t", "value": 7},
        {"name": "type", "type": "int", "value": 7},
        {"name": "idx1", "type": "unsigned long", "value": 5},
        {"name": "idx2", "type": "unsigned long", "value": 0x7FFD0000},
    ]
    assert record["kcmpType"] == "KCMP_EPOLL_TFD" and record["result"] == "same"
    assert record["epollSlot"] == {"efd": 8, "tfd": 6, "toff": 0}
    assert record["fdPaths"] == {"idx1": "pipe:[1]", "efd": "anon"}
    assert record["durationNs"] == 900 and record["argsKnown"] is True


def test_folded_record_says_how_many_calls_and_when_the_last_was():
    plain = _record(_event())
    assert (plain["repeat"], plain["lastTimestamp"]) == (1, None)
    event = _event()
    record = _record(event._replace(repeat=4096, last_ns=event.ts_ns + 5000))
    assert record["repeat"] == 4096
    assert record["lastTimestamp"] == record["timestamp"] + 5000


def test_permission_failure_record():
    targets = (Target(30, b"a", 1000, 1, None, None, None, None, ""), None)
    record = _record(_event(ret=-1), Context(targets=targets))
    assert record["permissionDenied"] is True
    assert (record["errno"], record["errnoMessage"]) == ("EPERM", "Operation not permitted")
    assert [t["userId"] for t in record["targets"]] == [1000, None]
    assert record["result"] == "error"


def test_targets_crossings_and_what_was_not_resolved():
    cid = "ab" * 32
    caller = Caller(1, 1, 900, 0, 4026531836, 4026531840, cid, "/bin/x", 4026531833, None, 2,
                    gone=True)
    targets = (Target(5000, b"sh\x1b", 0, 1, 4026531836, 4026531841, 4026531999, "blue", cid,
                      real_uid=1000, exiting=True),
               Target(5001, b"gone", None, 5000, None, None, None, None, None, gone=True))
    record = _record(_event(ret=0), Context(same_pidns=False, host_pids=(5000, 5001),
                                            caller=caller, targets=targets,
                                            crossings=("mnt", "net"), unresolved=()))
    assert record["targets"] == [
        {"pid": -87158697, "hostPid": 5000, "processName": "sh\u001b", "userId": 0,
         "hostParentProcessId": 1, "pidNamespace": 4026531836, "mountNamespace": 4026531841,
         "networkNamespace": {"inode": 4026531999, "name": "blue"}, "containerId": cid,
         "exited": False, "exiting": True, "realUserId": 1000, **NO_CONTAINER},
        {"pid": 7, "hostPid": 5001, "processName": "gone", "userId": None,
         "hostParentProcessId": 5000, "pidNamespace": None, "mountNamespace": None,
         "networkNamespace": None, "containerId": None, "exited": True, "exiting": False,
         "realUserId": None, **NO_CONTAINER}]
    assert record["crossesBoundary"] == ["mnt", "net"] and record["contextUnresolved"] == []
    assert record["callerExited"] is True and record["containerId"] == cid
    assert record["callerPidNamespace"] == "other"
    nothing = _record(_event(ret=-3), Context(unresolved=("caller",)))
    assert nothing["targets"] is None and nothing["contextUnresolved"] == ["caller"]


def test_exit_without_entry():
    record = _record(_event(ret=-1, args=None))
    assert record["args"] == [] and record["argsNum"] == 0 and record["argsKnown"] is False
    assert record["kcmpType"] is None and record["durationNs"] is None
    assert record["permissionDenied"] is True and record["targets"] is None


def test_unknown_type_and_slot_fault():
    args = Args(pid1=1, pid2=1, type=7, idx1=5, idx2=1, slot=None, slot_fault=True)
    assert _record(_event(ret=-14, args=args))["epollSlotFault"] is True
    args = Args(pid1=1, pid2=1, type=42, idx1=0, idx2=0, slot=None, slot_fault=False)
    record = _record(_event(ret=-22, args=args))
    assert record["kcmpType"] is None and record["errno"] == "EINVAL"


def test_output_is_ascii_with_every_control_escaped():
    event = _event(comm=b"\x1b[2J\x7f\x9b\xff")
    line = jsonout.dumps(json_record(
        event, Context(paths={"idx1": "/t/\u202e\x07\udcfe"}), 0))
    raw = line.encode("ascii")
    assert not any(b < 0x20 or b == 0x7F for b in raw)
    record = json.loads(line)
    assert record["processName"] == "\x1b[2J\x7f\\x9b\\xff"
    assert record["fdPaths"]["idx1"] == "/t/\u202e\x07\\xfe"


def test_lost_events_record_in_the_stream():
    out, err = io.StringIO(), io.StringIO()
    sink = jsonout.JsonSink(out, err)
    sink.start(["note"])
    sink.lost(42, 99)
    sink.flush()
    assert json.loads(out.getvalue()) == {"timestamp": 99, "eventName": "events_lost",
                                          "lostEvents": 42, "reason": "ring buffer full",
                                          "lane": "bulk"}
    assert err.getvalue() == "Tracing kcmp()... Ctrl-C to end. [note]\n"


def test_the_readme_documents_every_field_and_no_other():
    import re

    from tests.helpers import ROOT

    readme = (ROOT / "README.md").read_text()
    start = readme.index("## JSON output")
    section = readme[start:readme.index("\n## ", start)]
    documented = {name for row in re.findall(r"^\| (`[^|]+`) \|", section, re.M)
                  for name in re.findall(r"`(\w+)`", row)}
    assert documented == set(_record(_event()))


def test_caller_from_the_kernel():
    caller = Caller(3, 3, 900, 1, 4026532000, 4026532001, "", None, 4026532002, None, 2,
                    gone=True, userns=4026531837, utsns=4026532003, ipcns=4026532004,
                    cgroupns=4026531835, euid=0, egid=0, caps=(1 << 19) | (1 << 21),
                    exe_name=b"short\x1blived", exe_inode=4242)
    record = _record(_event(ret=0), Context(caller=caller))
    assert record["callerContext"] == "kernel" and record["callerExited"] is True
    assert (record["pidNamespace"], record["mountNamespace"], record["userNamespace"],
            record["utsNamespace"], record["ipcNamespace"], record["cgroupNamespace"]) == (
        4026532000, 4026532001, 4026531837, 4026532003, 4026532004, 4026531835)
    assert record["networkNamespace"] == {"inode": 4026532002, "name": None}
    assert (record["effectiveUserId"], record["effectiveGroupId"]) == (0, 0)
    assert record["capabilities"] == {"effective": "0x280000", "sysPtrace": True}
    assert record["executable"] == {"path": None, "name": "short\u001blived", "inode": 4242,
                                    "elfClass": None}
    plain = _record(_event(ret=0), Context(caller=caller._replace(caps=None, exe_name=None,
                                                                  exe_inode=None,
                                                                  exe="/bin/x")))
    assert plain["callerContext"] == "proc" and plain["capabilities"] is None
    assert plain["executable"] == {"path": "/bin/x", "name": None, "inode": None,
                                   "elfClass": None}


def test_refused_by_seccomp_with_the_arguments_from_the_registers():
    record = _record(_event(ret=-1, duration_ns=None, seccomp=True))
    assert record["refusedBySeccomp"] is True and record["argsKnown"] is True
    assert record["argsNum"] == 5 and record["durationNs"] is None
    assert _record(_event(ret=-1))["refusedBySeccomp"] is False


def test_own_fds_as_the_kernel_saw_them():
    pipe = KernelFile(True, 85900, 12, 0x50495045, b"pipe:", True, False, False)
    shut = KernelFile(False, 0, 0, 0, b"", False, False, False)
    args = Args(pid1=10, pid2=10, type=0, idx1=4, idx2=9, slot=None, slot_fault=False)
    record = _record(_event(args=args, files=(pipe, shut, None)))
    assert record["fdFiles"] == {
        "idx1": {"open": True, "inode": 85900, "device": "0:12", "fsMagic": "0x50495045",
                 "pathCut": False},
        "idx2": {"open": False, "inode": 0, "device": "0:0", "fsMagic": "0x0", "pathCut": False}}
    assert _record(_event())["fdFiles"] == {}


def test_names_that_differ_stay_different_in_json():
    names = [b"\\xff", b"\xff", b"c\x9b", b"c\xc2\x9b", b"a\\b", b"a\\\\b", b"other"]
    shown = [_record(_event(comm=name))["processName"] for name in names]
    assert len(set(shown)) == len(names), shown
    assert shown[:2] == ["\\\\xff", "\\xff"]  # the text \xff, and the byte 0xff


class Runtime:
    def __init__(self, known):
        self.known = known

    def get(self, cid):
        return self.known.get(cid)


def test_containers_are_named_for_the_caller_and_each_target():
    from kcmp_monitor.context.types import ContainerInfo

    web, db = "ab" * 32, "cd" * 32
    runtime = Runtime({web: ContainerInfo("web-1", "shop/web:2", "sha256:" + "1" * 64, "web-7f",
                                          "shop", "0b9e"),
                       db: ContainerInfo("db", "postgres:16", None)})
    caller = Caller(3, 3, 900, 1, 4026532000, 4026532001, web, None)
    targets = (Target(30, b"a", 0, 1, None, None, None, None, web), Target(40, b"b", 0, 1, None,
                                                                           None, None, None, db))
    event = _event(ret=0)
    record = json.loads(jsonout.event_line(event, Context(caller=caller, targets=targets),
                                           1, runtime))
    assert (record["containerName"], record["containerImage"], record["podName"],
            record["podNamespace"], record["podUID"]) == ("web-1", "shop/web:2", "web-7f", "shop",
                                                          "0b9e")
    assert [(t["containerName"], t["containerImage"], t["podName"]) for t in record["targets"]] \
        == [("web-1", "shop/web:2", "web-7f"), ("db", "postgres:16", None)]


def test_epoll_slot_fds_are_c_ints_as_strace_prints_them_and_toff_unsigned():
    args = Args(pid1=1, pid2=1, type=7, idx1=5, idx2=0x7FFD0000,
                slot=EpollSlot(0xDEADBEEF, 0xFFFFFFFF, 0xFFFFFFFF), slot_fault=False)
    assert _record(_event(ret=-9, args=args))["epollSlot"] == {
        "efd": -559038737, "tfd": -1, "toff": 4294967295}
