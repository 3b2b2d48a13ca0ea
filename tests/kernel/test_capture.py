"""The real program on the real kernel: kcmpload makes 23 calls of each case while several
`kcmp-monitor --trace` processes (JSON, console, filtered) and strace watch the same calls."""

import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.helpers import in_guest, monitor_command, skip_or_fail, trampolines

from .conftest import HOSTILE_FILE, REPEAT, Monitor, Workload, strace_calls

pytestmark = pytest.mark.kernel

NOBODY = 65534
GUEST_MONITORS = ("json", "text", "folded")
# The hooks the monitors run on: auto's pick first (under the monitor's own name), then, where
# the kernel has trampolines, the tracepoints asked for (name.tracepoint) by the JSON monitor:
# every record's decoding, seccomp refusals, 32-bit calls, the caller's view, own-fd paths.
# Under TCG each start costs minutes, so there the console and folding run on auto's pick
# alone (on the tracepoints here).
HOOKS = ("fentry", "tracepoint") if trampolines() else ("tracepoint",)
BOTH_HOOKS = ("json",)
# What each case must decode to: (kcmpType, errno name or None).
EXPECTED = {
    "file_same": ("KCMP_FILE", None),
    "file_diff": ("KCMP_FILE", None),
    "vm_same": ("KCMP_VM", None),
    "vm_diff": ("KCMP_VM", None),
    "thread_vm": ("KCMP_VM", None),
    "files_same": ("KCMP_FILES", None),
    "files_diff": ("KCMP_FILES", None),
    "fs_same": ("KCMP_FS", None),
    "fs_diff": ("KCMP_FS", None),
    "sighand_same": ("KCMP_SIGHAND", None),
    "sighand_diff": ("KCMP_SIGHAND", None),
    "io_same": ("KCMP_IO", None),
    "io_diff": ("KCMP_IO", None),
    "sysvsem_same": ("KCMP_SYSVSEM", None),
    "sysvsem_diff": ("KCMP_SYSVSEM", None),
    "epoll_hit": ("KCMP_EPOLL_TFD", None),
    "epoll_diff": ("KCMP_EPOLL_TFD", None),
    "epoll_miss": ("KCMP_EPOLL_TFD", "ENOENT"),
    "epoll_fault": ("KCMP_EPOLL_TFD", "EFAULT"),
    "ebadf": ("KCMP_FILE", "EBADF"),
    "einval_types": (None, "EINVAL"),
    "einval_negative": (None, "EINVAL"),
    "einval_2a": (None, "EINVAL"),
    "esrch": ("KCMP_VM", "ESRCH"),
    "esrch_truncated": ("KCMP_VM", "ESRCH"),
    "compat_vm": ("KCMP_VM", None),
    "compat_file": ("KCMP_FILE", None),
    "hostile_path": ("KCMP_FILE", None),
    "eperm": ("KCMP_VM", "EPERM"),
    "seccomp": ("KCMP_VM", "EPERM"),  # refused before entry: arguments from the registers
    "seccomp_args": ("KCMP_FILE", "EPERM"),  # the same, every argument a value of its own
}
# Calls the workload makes that are not kcmp and must produce no event.
NOT_KCMP = {"nr349_64bit"}  # the i386 kcmp number from 64-bit code: ENOSYS on x86_64
STRACE_DIFFERS = {
    "hostile_path": "strace escapes in octal (\\33), we in hex (\\x1b)",
}


def int32(value):
    return ctypes.c_int32(value & 0xFFFFFFFF).value


def case_key(case):
    # A non-kcmp call, if it were wrongly reported, would be taken for a 32-bit one.
    return (case.caller, case.compat or case.name in NOT_KCMP,
            (int32(case.pid1), int32(case.pid2), int32(case.type), case.idx1, case.idx2))


def monitor(name, hooks):
    return name if hooks == HOOKS[0] else f"{name}.{hooks}"


def event_key(record):
    args = tuple(a["value"] for a in record["args"]) or None
    return (record["processId"], record["compat"], args)


@pytest.fixture(scope="module")
def traced(kcmpload, tmp_path_factory):
    work = tmp_path_factory.mktemp("capture")
    wl = Workload.start(kcmpload, work / "files", strace_out=work / "strace.txt")
    json_args = ["--output", "json"]
    comm = ["--comm", "kcmpload"]
    wanted = {
        "json": json_args + comm,
        "text": comm,
        "errors": json_args + comm + ["--errors-only"],
        "types": json_args + comm + ["--type", "FILE,unknown"],
        "uid": json_args + ["--uid", str(NOBODY)],
        "pid": json_args + ["--pid", str(wl.pid)],
        "nocompat": json_args + comm + ["--no-compat"],
        # A case's 23 calls in a row may take longer than the default 1 s window under TCG.
        "folded": json_args + comm + (["--fold-window", "10"] if in_guest() else []),
    }
    if in_guest():  # each start compiles, the slow part under TCG: the unfiltered ones only
        wanted = {name: wanted[name] for name in GUEST_MONITORS}
    wanted |= {monitor(name, hooks): wanted[name] + ["--hooks", hooks]
               for hooks in HOOKS[1:] for name in BOTH_HOOKS}
    monitors = {name: Monitor(args, work, name, fold=name.startswith("folded"))
                for name, args in wanted.items()}
    head = None
    if not in_guest():
        # A reader that leaves after three lines, like `| head -n 3`; sed -u passes each line
        # on at once, so the start line below tells that this monitor is attached.
        head = subprocess.Popen(
            ["bash", "-c", f"'{monitor_command()}' --trace --comm kcmpload | sed -u 3q; "
                           "echo \"monitor exit ${PIPESTATUS[0]}\" >&2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert head.stdout.readline().startswith(b"Tracing kcmp()")
    # They compile at once: under TCG, on one vCPU, each start takes the time of all of them.
    for m in monitors.values():
        m.wait_started(60 * len(monitors))
    start_ns = time.time_ns()
    wl.go()
    expected_total = REPEAT * len(EXPECTED)
    for name, m in monitors.items():
        # A folded monitor's runs: each case's first call, then its rest, the last case's once
        # its window has shut; all read while the workload lives (its /proc is the context).
        m.wait_lines(expected_total if name.startswith(("json", "text")) else
                     2 * len(EXPECTED) if name.startswith("folded") else 1)
    # The filtered monitors get no more than the unfiltered ones; give them the same time.
    monitors["json"].wait_lines(expected_total)
    pipe_path = os.readlink(f"/proc/{wl.pid}/fd/{wl.fds['pipe']}")
    host = _host_view(wl, kcmpload)
    wl.finish()
    codes = {name: m.stop(signal.SIGTERM if name == "pid" else signal.SIGINT)
             for name, m in monitors.items()}
    head_out, head_err = head.communicate(timeout=30) if head else (b"", b"")
    return SimpleNamespace(
        wl=wl, monitors=monitors, codes=codes, start_ns=start_ns, pipe_path=pipe_path,
        head=(head and head.returncode, head_out.decode(), head_err.decode()), host=host,
        records={name: [json.loads(line) for line in m.lines()]
                 for name, m in monitors.items() if m.json},
        strace=strace_calls(work / "strace.txt"))


def _host_view(wl, exe):
    """What /proc says of the workload's callers while they live, to hold the kernel's view
    to: their namespaces, parents and executable."""
    ns = {kind: os.stat(f"/proc/{wl.pid}/ns/{name}").st_ino for kind, name in (
        ("pid", "pid"), ("mount", "mnt"), ("user", "user"), ("uts", "uts"), ("ipc", "ipc"),
        ("cgroup", "cgroup"))}
    ppid = {}
    for pid in {c.caller for c in wl.cases}:
        with open(f"/proc/{pid}/status") as status:
            ppid[pid] = int(next(line for line in status if line.startswith("PPid:")).split()[1])
    return {"ns": ns, "net": os.stat(f"/proc/{wl.pid}/ns/net").st_ino, "ppid": ppid,
            "exe_inode": os.stat(exe).st_ino}


def _cases(traced, names=None):
    return [c for c in traced.wl.cases if names is None or c.name in names]


def _counted(traced, monitor):
    """How many events of each case a monitor printed; an event of no case fails the test."""
    by_key = {case_key(c): c.name for c in traced.wl.cases}
    names = []
    for record in traced.records[monitor]:
        assert record["eventName"] == "kcmp", record
        key = event_key(record)
        assert key in by_key, f"an event the workload did not make: {record}"
        names.append(by_key[key])
    return Counter(names)


@pytest.mark.guest
def test_workload_made_every_case(traced):
    assert sorted(c.name for c in traced.wl.cases) == sorted(set(EXPECTED) | NOT_KCMP)
    assert next(c.ret for c in traced.wl.cases if c.name == "nr349_64bit") == -38


@pytest.mark.guest
@pytest.mark.parametrize("hooks", HOOKS)
def test_json_has_exactly_the_calls_made(traced, hooks):
    assert _counted(traced, monitor("json", hooks)) == {name: REPEAT for name in EXPECTED}


@pytest.mark.guest
@pytest.mark.parametrize("hooks", HOOKS[:1])
def test_folded_stream_has_each_case_as_its_first_call_and_the_rest_counted(traced, hooks):
    """A case's 23 calls come from one thread in a row: a record, then one standing for 22
    with the same decoding (seccomp refusals and 32-bit calls too) and the kernel's view of
    the caller's fds at the first; the first call of a caller takes the priority lane where
    the rest need not."""
    by_key = {case_key(c): c.name for c in traced.wl.cases}
    runs: dict[str, list] = {}
    for record in traced.records[monitor("folded", hooks)]:
        runs.setdefault(by_key[event_key(record)], []).append(record)
    assert set(runs) == set(EXPECTED)
    for name, records in runs.items():
        assert [r["repeat"] for r in records] == [1, REPEAT - 1], name
        first, rest = records
        assert first["timestamp"] < rest["timestamp"] < rest["lastTimestamp"]
        differ = ("timestamp", "durationNs", "repeat", "lastTimestamp", "lane")
        assert {k: v for k, v in rest.items() if k not in differ} == {
            k: v for k, v in first.items() if k not in differ}, name
        if EXPECTED[name][1] == "EPERM" or first["compat"]:
            assert rest["lane"] == "priority", name


def _expected_paths(traced, case):
    d, _fds, pipe = traced.wl.dir, traced.wl.fds, traced.pipe_path
    a, child, hostile = str(d / "a"), str(d / "child"), str(d / HOSTILE_FILE)
    eventpoll = "anon_inode:[eventpoll]"
    return {
        "file_same": {"idx1": a, "idx2": a},
        "compat_file": {"idx1": a, "idx2": a},
        "file_diff": {"idx1": a, "idx2": child},
        "hostile_path": {"idx1": hostile, "idx2": hostile},
        "ebadf": {"idx2": a},
        "epoll_hit": {"idx1": pipe, "efd": eventpoll, "tfd": pipe},
        "epoll_diff": {"idx1": a, "efd": eventpoll, "tfd": pipe},
        "epoll_miss": {"idx1": pipe, "efd": eventpoll, "tfd": a},
        "epoll_fault": {"idx1": pipe},
    }.get(case.name, {})


def _expected_slot(traced, case):
    fds = traced.wl.fds
    if case.name in ("epoll_hit", "epoll_diff"):
        return {"efd": fds["efd"], "tfd": fds["pipe"], "toff": 0}
    if case.name == "epoll_miss":
        return {"efd": fds["efd"], "tfd": fds["a"], "toff": 0}
    return None


@pytest.mark.guest
@pytest.mark.parametrize("hooks", HOOKS)
def test_json_fields_are_decoded_exactly(traced, hooks):
    by_key = {case_key(c): c for c in traced.wl.cases}
    end_ns = time.time_ns()
    for record in traced.records[monitor("json", hooks)]:
        case = by_key[event_key(record)]
        type_name, errno_name = EXPECTED[case.name]
        assert record["processName"] == "kcmpload"
        assert (record["processId"], record["threadId"]) == (case.caller, case.tid)
        assert record["userId"] == record["groupId"] == case.uid
        assert record["syscall"] == "kcmp"
        assert record["returnValue"] == case.ret
        assert record["kcmpType"] == type_name, case.name
        assert record["errno"] == errno_name, case.name
        if errno_name:
            assert case.ret < 0 and record["result"] == "error"
            assert record["errnoMessage"] == os.strerror(-case.ret)
        else:
            assert record["result"] == {0: "same", 1: "less", 2: "greater"}[case.ret]
            assert case.ret == 0 or "diff" in case.name
        assert record["permissionDenied"] == (errno_name == "EPERM")
        assert record["compat"] == case.compat
        assert record["cgroupId"] > 0
        assert traced.start_ns <= record["timestamp"] <= end_ns
        assert record["fdPaths"] == _expected_paths(traced, case), case.name
        assert record["epollSlot"] == _expected_slot(traced, case), case.name
        assert record["epollSlotFault"] == (case.name == "epoll_fault")
        assert record["argsKnown"] is True and record["argsNum"] == 5
        assert [(a["name"], a["type"]) for a in record["args"]] == [
            ("pid1", "pid_t"), ("pid2", "pid_t"), ("type", "int"),
            ("idx1", "unsigned long"), ("idx2", "unsigned long")]
        refused = case.name.startswith("seccomp")
        assert record["refusedBySeccomp"] == refused
        # refused before entry, or 32-bit and seen at exit only: no duration
        if refused or (case.compat and hooks == "tracepoint"):
            assert record["durationNs"] is None
        else:
            assert 0 < record["durationNs"] < 10**9
        _check_caller(record, case, traced.host)
        _check_targets(record, case)


def _check_caller(record, case, host):
    """The caller as the kernel saw it: the host's namespaces, its credentials, its exe."""
    assert record["callerContext"] == "kernel"
    assert {kind: record[f"{kind}Namespace"] for kind in
            ("pid", "mount", "user", "uts", "ipc", "cgroup")} == host["ns"]
    assert record["networkNamespace"] == {"inode": host["net"], "name": None}
    assert record["effectiveUserId"] == record["effectiveGroupId"] == case.uid
    assert record["capabilities"]["sysPtrace"] is (case.uid == 0)
    assert record["executable"]["name"] == "kcmpload"
    assert record["executable"]["inode"] == host["exe_inode"]
    assert record["hostParentProcessId"] == host["ppid"][case.caller]
    assert record["parentProcessId"] == record["hostParentProcessId"]


def _check_targets(record, case):
    """Every target that exists is named, owned and placed; none crosses a boundary here."""
    assert record["crossesBoundary"] == [] and record["contextUnresolved"] == []
    assert record["callerPidNamespace"] == "host" and record["callerExited"] is False
    found = 0
    for target, pid in zip(record["targets"], (int32(case.pid1), int32(case.pid2))):
        assert target["pid"] == pid
        if target["hostPid"] is None:
            continue
        found += 1
        init = Path("/proc/1/comm").read_text().strip()  # seccomp_args names pid 1
        assert target["hostPid"] == pid
        assert target["processName"] == (init if pid == 1 else "kcmpload")
        if target["exited"]:  # thread_vm's thread may end before its event is read: the
            # kernel's process table still knows it, with its name and process's parent
            assert case.name == "thread_vm" and pid == case.tid
            assert target["hostParentProcessId"] == record["hostParentProcessId"]
            continue
        assert target["userId"] == (NOBODY if case.uid == NOBODY and pid == case.caller else 0)
        if pid == 1:  # the VM's init lets no one read its namespaces, root included
            continue
        assert target["containerId"] == ""
        assert target["pidNamespace"] == record["pidNamespace"]
        assert target["networkNamespace"] == record["networkNamespace"]
    assert found == (2 if case.ret != -3 else 1), case.name  # ESRCH: one pid named nothing


@pytest.mark.guest
def test_truncated_pid_decodes_like_strace(traced):
    record = next(r for r in traced.records["json"]
                  if r["args"] and r["args"][0]["value"] == -87158697)
    assert record["errno"] == "ESRCH"


@pytest.mark.guest
@pytest.mark.parametrize("hooks", HOOKS[:1])
def test_console_call_equals_strace(traced, hooks):
    """From `kcmp(` to the return value, every console line is strace's line for that call,
    those refused by seccomp included."""
    text = [line for line in traced.monitors[monitor("text", hooks)].lines()
            if "evil" not in line]
    ours = [re.search(r"kcmp\(.*?\) = (?:-1 E[A-Z]+ \([^)]*\)|\d+)", line).group(0)
            for line in text]
    theirs = [line for line in strace_calls(traced.monitors["text"].out_path.parent / "strace.txt")
              if "evil" not in line]
    assert len(ours) == REPEAT * (len(EXPECTED) - len(STRACE_DIFFERS))
    assert Counter(ours) == Counter(theirs)


@pytest.mark.guest
@pytest.mark.parametrize("hooks", HOOKS[:1])
def test_console_lines_carry_context_and_markers(traced, hooks):
    lines = traced.monitors[monitor("text", hooks)].lines()
    assert len(lines) == REPEAT * len(EXPECTED)
    wl = traced.wl
    eperm = next(c for c in wl.cases if c.name == "eperm")
    denied = [line for line in lines if "!! DENIED" in line]
    assert len(denied) == REPEAT
    assert sum(f"kcmpload/{eperm.caller} uid={NOBODY} " in line and
               f"caller uid={NOBODY}, pid1 owner={NOBODY}, pid2 owner=0" in line
               for line in denied) == REPEAT
    refused = next(c for c in wl.cases if c.name == "seccomp")
    assert sum(line.endswith(") = -1 EPERM (Operation not permitted) <refused by seccomp>"
                             "  !! SECCOMP caller uid=0")
               and f"kcmp({refused.caller}, {refused.caller}, KCMP_VM)" in line
               for line in lines) == REPEAT
    assert sum("KCMP_FILE, 74565, -559038737) = -1 EPERM (Operation not permitted) "
               "<refused by seccomp>  [pid1 self, pid2 " in line
               and line.endswith("!! SECCOMP caller uid=0") for line in lines) == REPEAT
    assert sum("[compat] kcmp(" in line for line in lines) == 2 * REPEAT
    same = sum(name.endswith("same") or name in ("epoll_hit", "compat_vm", "compat_file",
                                                   "hostile_path", "thread_vm")
               for name in EXPECTED)
    # (a 32-bit call seen at exit only, on the tracepoints, shows no duration after it)
    assert sum(bool(re.search(r" <same>( |$)", line)) for line in lines) == same * REPEAT
    timed = [not line.endswith(" <same>") for line in lines if "[compat] kcmp(" in line]
    assert timed == [hooks == "fentry"] * len(timed)
    prefix = re.compile(r"\d\d:\d\d:\d\d\.\d{6} kcmpload/\d+(/\d+)? uid=\d+ ")
    assert all(prefix.match(line) for line in lines)
    thread = next(c for c in wl.cases if c.name == "thread_vm")
    caller = f" kcmpload/{thread.caller}/{thread.tid} uid=0 kcmp("
    assert sum(caller in line for line in lines) == REPEAT


@pytest.mark.guest
@pytest.mark.parametrize("hooks", HOOKS[:1])
def test_console_escapes_hostile_paths(traced, hooks):
    raw = traced.monitors[monitor("text", hooks)].out_path.read_bytes()
    assert b"\x1b" not in raw
    hostile = str(traced.wl.dir / "evil")
    expected = f"{hostile}\\x1b[31mred"
    lines = traced.monitors[monitor("text", hooks)].lines()
    assert sum(f"<{expected}>, " in line for line in lines) == REPEAT


def test_errors_only_filter(traced):
    wanted = {n for n, (_, err) in EXPECTED.items() if err}
    assert _counted(traced, "errors") == {name: REPEAT for name in wanted}


def test_type_filter(traced):
    wanted = {"file_same", "file_diff", "ebadf", "compat_file", "hostile_path",
              "einval_types", "einval_negative", "einval_2a", "seccomp_args"}
    assert _counted(traced, "types") == {name: REPEAT for name in wanted}


def test_uid_filter(traced):
    assert _counted(traced, "uid") == {"eperm": REPEAT}


def test_pid_filter(traced):
    children = {"eperm", "seccomp", "seccomp_args"}
    assert _counted(traced, "pid") == {n: REPEAT for n in EXPECTED if n not in children}


def test_no_compat_sees_no_32_bit_call(traced):
    compat = {"compat_vm", "compat_file"}
    assert _counted(traced, "nocompat") == {n: REPEAT for n in EXPECTED if n not in compat}
    assert "[32-bit: off]" in traced.monitors["nocompat"].stderr()
    assert ("[32-bit: on, untimed: a program on every syscall's exit; --no-compat]"
            in traced.monitors["json"].stderr())


@pytest.mark.guest
def test_each_monitor_says_its_hooks_auto_takes_fentry_where_the_kernel_has_it(traced):
    said = {"fentry": "[hooks: fentry (__x64_sys_kcmp, __ia32_sys_kcmp, __secure_computing)]",
            "tracepoint": "[hooks: tracepoints (+ raw sys_exit for 32-bit)"}
    for hooks in HOOKS:
        for name in GUEST_MONITORS if hooks == HOOKS[0] else BOTH_HOOKS:
            m = traced.monitors[monitor(name, hooks)]  # the console's start line: on stdout
            assert said[hooks] in m.stderr() + m.out_path.read_text(), (name, hooks)


@pytest.mark.guest
def test_monitors_exit_cleanly_on_sigint_and_sigterm(traced):
    assert traced.codes == {name: 0 for name in traced.monitors}
    for _name, m in traced.monitors.items():
        err = m.stderr()
        assert "Traceback" not in err
        assert re.search(r"\d+ calls traced( \(\d+ of them folded\))?, 0 lost", err), err
    assert f"{REPEAT * len(EXPECTED)} calls traced, 0 lost" in traced.monitors["json"].stderr()


def test_head_closes_the_pipe_without_traceback(traced):
    code, out, err = traced.head
    assert code == 0
    assert len(out.splitlines()) == 2  # the start line was read above
    assert "Traceback" not in err and "monitor exit 0" in err


def test_hostile_process_name_is_escaped(kcmpload, tmp_path):
    name = b"k\x1b]0;pwn\x07"  # an OSC sequence that would retitle the terminal
    wl = Workload.start(kcmpload, tmp_path / "files", name=name)
    text = Monitor(["--comm", os.fsdecode(name), "--type", "VM"], tmp_path, "text")
    js = Monitor(["--output", "json", "--comm", os.fsdecode(name), "--type", "VM"], tmp_path,
                 "json")
    text.wait_started()
    js.wait_started()
    wl.go()
    # vm_same, vm_diff, thread_vm, esrch, esrch_truncated, compat_vm, eperm, and seccomp,
    # whose type the saved registers give
    vm_cases = 8
    for m in (text, js):
        m.wait_lines(vm_cases * REPEAT)
    wl.finish()
    assert text.stop() == 0 and js.stop() == 0
    raw = text.out_path.read_bytes()
    assert b"\x1b" not in raw and b"\x07" not in raw
    lines = text.lines()
    assert len(lines) == vm_cases * REPEAT
    assert all(" k\\x1b]0;pwn\\x07/" in line for line in lines)
    records = [json.loads(line) for line in js.lines()]
    assert {r["processName"] for r in records} == {"k\x1b]0;pwn\x07"}
    assert b"\x1b" not in js.out_path.read_bytes()


def test_lost_events_are_counted_exactly(kcmpload, tmp_path):
    """A one-page ring buffer overflows under the workload's burst: every call is either an
    event or counted as lost, in the JSON stream, on the console's stderr and at exit."""
    wl = Workload.start(kcmpload, tmp_path / "files")
    tiny = ["--comm", "kcmpload", "--ringbuf-pages", "1"]
    js = Monitor(["--output", "json"] + tiny, tmp_path, "json")
    text = Monitor(tiny, tmp_path, "text")
    js.wait_started()
    text.wait_started()
    wl.go()
    total = REPEAT * len(EXPECTED)

    def accounted(m):
        if m.json:
            records = [json.loads(line) for line in m.lines()]
            return (sum(r["eventName"] == "kcmp" for r in records),
                    sum(r.get("lostEvents", 0) for r in records))
        lost = sum(int(n) for n in re.findall(r"lost (\d+) events", m.stderr()))
        return len(m.lines()), lost

    for m in (js, text):
        deadline = time.monotonic() + 30
        while sum(accounted(m)) < total and time.monotonic() < deadline:
            time.sleep(0.05)
    wl.finish()
    assert js.stop() == 0 and text.stop() == 0
    for m in (js, text):
        delivered, lost = accounted(m)
        assert lost > 0, "the burst did not overflow a one-page ring buffer"
        assert delivered + lost == total
        assert f"{delivered} calls traced, {lost} lost" in m.stderr()


def test_pids_of_a_caller_in_another_pid_namespace_are_translated(kcmpload, tmp_path):
    """Inside `unshare --pid`, the workload is pid 1 and its pid1/pid2 are that namespace's
    numbers; looked up as they are in the host's /proc they would name other processes (host
    pid 1, a kernel thread). The monitor translates them to host pids first, and resolves fd
    paths, names and owners against those."""
    if not shutil.which("unshare"):
        skip_or_fail("needs unshare (util-linux)")
    wl = Workload.start(kcmpload, tmp_path / "files",
                        prefix=("unshare", "--pid", "--fork", "--mount-proc"))
    assert wl.pid == 1
    js = Monitor(["--output", "json", "--comm", "kcmpload"], tmp_path, "json")
    text = Monitor(["--comm", "kcmpload"], tmp_path, "text")
    js.wait_started()
    text.wait_started()
    wl.go()
    for m in (js, text):
        m.wait_lines(REPEAT * len(EXPECTED))
    wl.finish()
    assert js.stop() == 0 and text.stop() == 0
    records = [json.loads(line) for line in js.lines()]
    assert len(records) == REPEAT * len(EXPECTED)
    called = [r for r in records if r["argsKnown"]]
    # thread_vm compares the process with its thread, which may be gone by the time the
    # event is read; its namespace tid then maps to nothing: said, not guessed.
    bad = [r for r in records if r["callerPidNamespace"] != "other" or r["crossesBoundary"]
           or r["contextUnresolved"] != ([] if r["threadId"] is not None else ["pid2"])]
    assert [(r["threadId"], r["args"], r["contextUnresolved"], r["targets"]) for r in bad] == []
    same_file = [r for r in called if [a["value"] for a in r["args"]][:3] == [1, 1, 0]
                 and r["returnValue"] == 0 and not r["compat"]]
    host = same_file[0]["hostProcessId"]  # the workload, as the host sees it
    assert host != 1
    main = [r for r in records if r["hostProcessId"] == host]
    assert all(r["processId"] == 1 for r in main)  # as its namespace numbers it
    threads = {r["threadId"] for r in main} - {1}
    # thread_vm's thread, numbered by the namespace, or null once it had gone
    assert len(threads) == 1 and all(t is None or 1 < t < 100 for t in threads)
    assert all(r["parentProcessId"] == 0 and r["hostParentProcessId"] == wl.proc.pid
               for r in main)  # its parent, unshare, lies outside the namespace
    assert len({r["pidNamespace"] for r in records}) == 1
    assert all(r["containerId"] == "" and r["executable"]["path"].endswith("/kcmpload")
               for r in records if r["executable"])
    a = str(wl.dir / "a")
    assert {r["fdPaths"].get("idx1") for r in same_file} >= {a}
    assert all([t["hostPid"] for t in r["targets"]] == [host, host] for r in same_file)
    eperm = [r for r in called if r["permissionDenied"] and not r["refusedBySeccomp"]]
    assert len(eperm) == REPEAT
    assert all([(t["hostPid"], t["userId"]) for t in r["targets"]]
               == [(r["hostProcessId"], NOBODY), (host, 0)]
               and r["parentProcessId"] == 1 and r["hostParentProcessId"] == host
               for r in eperm)
    # A process comparing itself: no target words, only where its pids were numbered, and
    # which of its namespaces are not the monitor's (unshare --pid --mount-proc: pid, mnt).
    ns = f"pid:{same_file[0]['pidNamespace']} mnt:{same_file[0]['mountNamespace']}"
    marked = [line for line in text.lines() if re.search(
        r"kcmp\(1, 1, KCMP_FILE, .*\) = 0 <same> \S+  \[caller in another pid namespace\]"
        rf"  \[ns {ns}\]$", line)]
    assert len(marked) >= len(same_file)


def test_without_btf_the_caller_comes_from_proc(kcmpload, tmp_path):
    """A kernel whose BTF cannot be read: the monitor says what it lacks, and decodes every
    call with /proc context as before; a seccomp refusal then has no arguments."""
    missing = tmp_path / "no-btf"
    wl = Workload.start(kcmpload, tmp_path / "files")
    js = Monitor(["--output", "json", "--comm", "kcmpload", "--btf", str(missing)], tmp_path,
                 "json")
    js.wait_started()
    wl.go()
    js.wait_lines(REPEAT * len(EXPECTED))
    wl.finish()
    assert js.stop() == 0
    reason = f"no kernel BTF at {missing}: No such file or directory"
    assert f"[no caller context from the kernel: {reason}]" in js.stderr()
    assert f"[no arguments of calls refused by seccomp: {reason}]" in js.stderr()
    records = [json.loads(line) for line in js.lines()]
    assert len(records) == REPEAT * len(EXPECTED)
    assert {r["callerContext"] for r in records} == {"proc"}
    assert all(r["capabilities"] is None and r["userNamespace"] is None for r in records)
    assert all(r["executable"]["path"].endswith("/kcmpload") for r in records)
    refused = [r for r in records if r["permissionDenied"] and r["userId"] == 0]
    assert len(refused) == 2 * REPEAT  # seccomp and seccomp_args
    assert all(not r["argsKnown"] and not r["refusedBySeccomp"] for r in refused)


def test_compat_timing_hooks_the_entry_too(kcmpload, tmp_path):
    wl = Workload.start(kcmpload, tmp_path / "files")
    js = Monitor(["--output", "json", "--comm", "kcmpload", "--compat-timing"], tmp_path, "json")
    js.wait_started()
    wl.go()
    js.wait_lines(REPEAT * len(EXPECTED))
    wl.finish()
    assert js.stop() == 0
    assert "[32-bit: on, timed: two programs on every syscall; --no-compat]" in js.stderr()
    compat = [json.loads(line) for line in js.lines() if '"compat":true' in line]
    assert len(compat) == 2 * REPEAT
    assert all(0 < r["durationNs"] < 10**9 and r["argsKnown"] for r in compat)
