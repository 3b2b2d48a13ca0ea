"""The Python mirror of struct kcmp_event against the C header itself, compiled by gcc."""

import struct

import pytest

from kcmp_monitor import abi
from kcmp_monitor.kernel import counters, events, folds, proctable
from kcmp_monitor.kernel.events import (
    Args,
    EpollSlot,
    Event,
    KernelFile,
    KernelTarget,
    KernelTask,
)
from tests.helpers import ROOT, c_facts
from tests.records import encode

HEADER = ROOT / "bpf" / "kcmp.h"


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory):
    """sizeof, each field's offset and the flag values, as the C compiler lays them out."""
    facts = [("sizeof", "sizeof(struct kcmp_event)")]
    facts += [(name, f"offsetof(struct kcmp_event, {name})") for name, _ in events.LAYOUT]
    facts += [(n, n) for n in ("KCMP_EV_ENTRY", "KCMP_EV_COMPAT", "KCMP_EV_SLOT_READ",
                               "KCMP_EV_SLOT_FAULT", "KCMP_EV_TRACE", "KCMP_EV_OWN_PIDNS",
                               "KCMP_STAT_DROPPED",
                               "KCMP_STAT_INFLIGHT", "KCMP_STAT_COMPAT",
                               "KCMP_STAT_DENIED_OVERFLOW", "KCMP_STAT_COMM_OVERFLOW",
                               "KCMP_STAT_COMM_OVERFLOW_DENIED", "KCMP_STAT_COUNT")]
    facts += [(f"task.{name}", f"offsetof(struct kcmp_task, {name})")
              for name, _ in events.TASK_LAYOUT]
    facts += [("task_sizeof", "sizeof(struct kcmp_task)"),
              ("record_sizeof", "sizeof(struct kcmp_record)"),
              ("record_task", "offsetof(struct kcmp_record, task)"),
              ("record_targets", "offsetof(struct kcmp_record, targets)"),
              ("target_sizeof", "sizeof(struct kcmp_target)")]
    facts += [(f"target.{name}", f"offsetof(struct kcmp_target, {name})")
              for name, _ in events.TARGET_LAYOUT]
    facts += [(n, n) for n in ("KCMP_EV_TARGETS", "KCMP_TARGET_FOUND", "KCMP_TARGET_EXITING")]
    facts += [(n, n) for n in ("KCMP_EV_TASK", "KCMP_EV_REGS", "KCMP_EV_SECCOMP",
                               "KCMP_EV_PRIORITY", "KCMP_EV_FOLDED")]
    facts += [("fold_sizeof", "sizeof(struct kcmp_fold)")]
    facts += [(f"fold.{name}", f"offsetof(struct kcmp_fold, {name})")
              for name in ("record", "run_ns", "first_ns", "last_ns", "duration_ns", "repeat",
                           "outside")]
    facts += [(f"file.{name}", f"offsetof(struct kcmp_file, {name})")
              for name, _ in events.FILE_LAYOUT]
    facts += [("file_sizeof", "sizeof(struct kcmp_file)"),
              ("files_record_sizeof", "sizeof(struct kcmp_record_files)"),
              ("files_record_files", "offsetof(struct kcmp_record_files, files)")]
    facts += [(n, n) for n in ("KCMP_FILES", "KCMP_PATH_MAX", "KCMP_FILE_LOOKED", "KCMP_FILE_OPEN",
                               "KCMP_FILE_DNAME", "KCMP_FILE_UNLINKED", "KCMP_FILE_CUT")]
    facts += [("proc_sizeof", "sizeof(struct kcmp_proc)"),
              ("proc_ppid", "offsetof(struct kcmp_proc, ppid)"),
              ("proc_comm", "offsetof(struct kcmp_proc, comm)")]
    return c_facts(tmp_path_factory.mktemp("layout"), [f'"{HEADER}"'], facts)


def test_size_matches_the_c_struct(c_layout):
    assert events.RAW_EVENT.size == c_layout["sizeof"] == 144
    assert events.RAW_TASK.size == c_layout["task_sizeof"]
    assert events.RECORD_SIZE == c_layout["record_sizeof"]
    assert c_layout["record_task"] == events.RAW_EVENT.size
    assert c_layout["record_targets"] == events.TARGETS_AT
    assert events.RAW_TARGET.size == c_layout["target_sizeof"]
    assert (events.EV_TARGETS, events.TARGET_FOUND, events.TARGET_EXITING) == tuple(
        c_layout[n] for n in ("KCMP_EV_TARGETS", "KCMP_TARGET_FOUND", "KCMP_TARGET_EXITING"))
    assert events.RAW_FILE.size == c_layout["file_sizeof"]
    assert events.FILES_RECORD_SIZE == c_layout["files_record_sizeof"]
    assert c_layout["files_record_files"] == events.RECORD_SIZE
    assert events.FILES == c_layout["KCMP_FILES"]
    assert events.RAW_FILE.unpack(bytes(events.RAW_FILE.size))[-1] == bytes(
        c_layout["KCMP_PATH_MAX"])
    assert (events.FILE_LOOKED, events.FILE_OPEN, events.FILE_DNAME, events.FILE_UNLINKED,
            events.FILE_CUT) == tuple(c_layout[n] for n in (
                "KCMP_FILE_LOOKED", "KCMP_FILE_OPEN", "KCMP_FILE_DNAME", "KCMP_FILE_UNLINKED",
                "KCMP_FILE_CUT"))


def test_fold_run_matches_the_c_struct(c_layout):
    assert folds.FOLD_SIZE == c_layout["fold_sizeof"]
    offsets = [c_layout[f"fold.{name}"] for name in ("record", "run_ns", "first_ns", "last_ns",
                                                     "duration_ns", "repeat", "outside")]
    assert offsets == [0] + [events.FILES_RECORD_SIZE + o for o in (0, 8, 16, 24, 32, 36)]


def test_process_table_entry_matches_the_c_struct(c_layout):
    assert proctable.PROC_ENTRY.size == c_layout["proc_sizeof"]
    assert (c_layout["proc_ppid"], c_layout["proc_comm"]) == (0, 4)


def test_every_offset_matches_the_c_struct(c_layout):
    offset = 0
    for name, code in events.LAYOUT:
        assert c_layout[name] == offset, name
        offset += struct.calcsize("<" + code)
    for prefix, layout in (("task", events.TASK_LAYOUT), ("target", events.TARGET_LAYOUT),
                           ("file", events.FILE_LAYOUT)):
        offset = 0
        for name, code in layout:
            assert c_layout[f"{prefix}.{name}"] == offset, name
            offset += struct.calcsize("<" + code)


def test_flag_and_stat_values_match_the_header(c_layout):
    assert (events.EV_ENTRY, events.EV_COMPAT, events.EV_SLOT_READ, events.EV_SLOT_FAULT,
            events.EV_TRACE, events.EV_OWN_PIDNS) == (
        c_layout["KCMP_EV_ENTRY"], c_layout["KCMP_EV_COMPAT"], c_layout["KCMP_EV_SLOT_READ"],
        c_layout["KCMP_EV_SLOT_FAULT"], c_layout["KCMP_EV_TRACE"], c_layout["KCMP_EV_OWN_PIDNS"])
    assert (events.EV_TASK, events.EV_REGS, events.EV_SECCOMP, events.EV_PRIORITY,
            events.EV_FOLDED) == (
        c_layout["KCMP_EV_TASK"], c_layout["KCMP_EV_REGS"], c_layout["KCMP_EV_SECCOMP"],
        c_layout["KCMP_EV_PRIORITY"], c_layout["KCMP_EV_FOLDED"])
    assert (counters.STAT_DROPPED, counters.STAT_INFLIGHT, counters.STAT_COMPAT,
            counters.STAT_DENIED_OVERFLOW, counters.STAT_COMM_OVERFLOW,
            counters.STAT_COMM_OVERFLOW_DENIED, counters.STAT_COUNT) == (
        c_layout["KCMP_STAT_DROPPED"], c_layout["KCMP_STAT_INFLIGHT"],
        c_layout["KCMP_STAT_COMPAT"], c_layout["KCMP_STAT_DENIED_OVERFLOW"],
        c_layout["KCMP_STAT_COMM_OVERFLOW"], c_layout["KCMP_STAT_COMM_OVERFLOW_DENIED"],
        c_layout["KCMP_STAT_COUNT"])


def _event(**changes):
    base = dict(ts_ns=123456789, duration_ns=1500, cgroup_id=4242, tgid=100, tid=101,
                uid=1000, gid=1001, comm=b"criu", ret=0, compat=False,
                args=Args(pid1=100, pid2=200, type=0, idx1=3, idx2=4, slot=None,
                          slot_fault=False))
    base.update(changes)
    return Event(**base)


@pytest.mark.parametrize("event", [
    _event(),
    _event(ret=-1, compat=True),
    _event(args=Args(pid1=-87158697, pid2=1, type=7, idx1=5, idx2=0x7FFD0000,
                     slot=EpollSlot(8, 6, 0), slot_fault=False)),
    _event(args=Args(pid1=1, pid2=1, type=7, idx1=5, idx2=1, slot=None, slot_fault=True)),
    _event(args=None, duration_ns=None, ret=-1, comm=b"\x1b[31m"),
    _event(comm=b"fifteen-bytes!!"),
    _event(ret=-1, traced=False),
    _event(ppid=4321, own_pidns=False),
    # refused by seccomp: the arguments from the registers, no duration
    _event(duration_ns=None, ret=-1, seccomp=True),
    _event(ret=-1, priority=True),
    # the tasks named, as the kernel found them: pid2 named none
    _event(targets=(KernelTarget(200, 199, 1, 0, 1000, 11, 12, 13, True, b"t", b"x.scope"),
                    None)),
    # folded: 999 calls like the last, their mean duration
    _event(repeat=999, last_ns=223456789),
    _event(task=KernelTask(4026531836, 4026531840, 4026531833, 4026531837, 4026531838,
                           4026531839, 4026531835, 1, 7, 8, 0, 2, 0, 0, 1000, 1000, 1 << 19,
                           4242, b"a" * 63, True)),
])
def test_byte_round_trip(event):
    raw = encode(event)
    assert len(raw) == events.RECORD_SIZE
    assert events.decode(raw) == event
    assert encode(events.decode(raw)) == raw


def _call(raw):
    """The call's part of a record, as values."""
    return list(events.RAW_EVENT.unpack_from(raw))


def _record(values):
    return events.RAW_EVENT.pack(*values) + bytes(events.RAW_TASK.size)


def test_decode_truncates_like_the_kernel():
    values = _call(encode(_event()))
    names = [name for name, _ in events.LAYOUT]
    values[names.index("pid1")] = 0xDEADCA75FACE1057
    values[names.index("type")] = 0xFFFFFFFF00000001
    values[names.index("idx1")] = 0x1_0000_0003
    event = events.decode(_record(values))
    assert event.args.pid1 == -87158697
    assert event.args.type == 1
    assert event.args.fd1 == 3 and event.args.idx1 == 0x1_0000_0003


def test_decode_without_entry_has_no_arguments_or_duration():
    values = _call(encode(_event()))
    names = [name for name, _ in events.LAYOUT]
    values[names.index("flags")] = 0
    event = events.decode(_record(values))
    assert event.args is None and event.duration_ns is None
    assert event.task is None and not event.seccomp
    values[names.index("flags")] = events.EV_REGS | events.EV_SECCOMP
    event = events.decode(_record(values))
    assert event.args == _event().args and event.duration_ns is None and event.seccomp


def test_kernel_task_of_a_record():
    task = KernelTask(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 3, 12, 13, 14, 15,
                      (1 << 19) | 1, 99, b"sleep", False)
    assert events.decode(encode(_event(task=task))).task == task
    assert abi.may_ptrace(task.cap_effective) and not abi.may_ptrace(1)


def test_event_meaning_and_permission_failure():
    assert _event(ret=0).meaning == "same"
    assert _event(ret=2).meaning == "greater"
    denied = _event(ret=-1)
    assert denied.permission_denied and denied.errno == 1 and denied.meaning == "error"
    assert not _event(ret=-3).permission_denied
    assert _event(ret=1).errno is None


def _file(name, magic=0xEF53, pseudo=False, deleted=False, cut=False, open_=True, inode=77):
    return KernelFile(open_, inode, (8 << 20) | 1, magic, name, pseudo, deleted, cut)


@pytest.mark.parametrize("file, path", [
    (_file(b"/etc/hostname"), "/etc/hostname"),
    (_file(b"/tmp/gone", deleted=True), "/tmp/gone (deleted)"),
    (_file(b"pipe:", 0x50495045, pseudo=True), "pipe:[77]"),
    (_file(b"", 0x534F434B, pseudo=True), "socket:[77]"),
    (_file(b"[eventpoll]", 0x09041934, pseudo=True), "anon_inode:[eventpoll]"),
    (_file(b"memfd:x", 0x01021994, pseudo=True), "/memfd:x (deleted)"),
    (_file(b"net", 0x6E736673, pseudo=True), None),  # nsfs: a name not composed here
    (_file(b"/lib/deep/file", cut=True), ".../lib/deep/file"),
    (_file(b"", open_=False), None),
])
def test_a_kernel_file_shows_as_proc_fd_would(file, path):
    assert file.path() == path
    assert file.device == "8:1"


def test_files_round_trip():
    files = (_file(b"/etc/hostname"), None, _file(b"x" * 255, cut=True))
    raw = encode(_event(files=files))
    assert len(raw) == events.FILES_RECORD_SIZE
    assert events.decode(raw).files == files
