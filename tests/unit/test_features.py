"""The feature table against the BPF source: every macro the C tests is a row's, each row's
header holds its C behind its guard, and the flags made from the table define each macro once."""

import re

from kcmp_monitor.kernel import features, fields
from kcmp_monitor.kernel.home import Home
from kcmp_monitor.kernel.options import Filters, ProgramOptions
from tests.helpers import ROOT

BPF = ROOT / "bpf"
SOURCES = sorted(BPF.glob("*.[ch]"))
TESTED = re.compile(r"#\s*(?:ifdef|ifndef)\s+(\w+)|defined\((\w+)\)")
INCLUDE_GUARDS = {"KCMP_MONITOR_KCMP_H"}
EVERYTHING = ProgramOptions(filters=Filters(tgid=1, uid=0, comm=b"x", types=frozenset({1}),
                                            errors_only=True),
                            compat_entry=True, count=True, log_eperm=True, fold_ns=1,
                            urgent_only=True, sweep=(2, 1.0))


def _tested(path):
    return {a or b for a, b in TESTED.findall(path.read_text())}


def test_every_macro_the_program_tests_comes_from_the_feature_table():
    from_table = {f.guard for f in features.FEATURES if f.guard} | {
        v for f in features.FEATURES for v in f.values}
    from_btf = {f"BTF_{name}" for members in fields.MEMBERS.values() for name in members}
    tested = set().union(*(_tested(path) for path in SOURCES))
    assert tested - from_table - from_btf - INCLUDE_GUARDS == set()


def test_each_feature_s_header_is_behind_its_guard_and_included():
    included = set().union(*(re.findall(r'#include "(\w+\.h)"', p.read_text()) for p in SOURCES))
    for feature in features.FEATURES:
        if feature.header is None:
            continue
        assert feature.header in included, feature.name
        assert feature.guard in _tested(BPF / feature.header), feature.name
    headers = {p.name for p in BPF.glob("*.h")}
    assert headers <= included | {"kcmp.h"}


def test_the_flags_define_each_macro_once_and_only_the_rows_macros():
    on = [f.name for f in features.FEATURES]
    btf = {name: [f"-DBTF_{m}=0" for m in members] for name, members in fields.MEMBERS.items()}
    flags = features.cflags(on, features.Build(EVERYTHING, Home(1, 2, 3, 4), btf), "/bpf")
    defined = [f[2:].split("=")[0] for f in flags if f.startswith("-D")]
    assert len(defined) == len(set(defined))
    declared = {f.guard for f in features.FEATURES if f.guard} | {
        v for f in features.FEATURES for v in f.values} | {
        m for found in btf.values() for m in (f[2:].split("=")[0] for f in found)}
    assert set(defined) - declared == set()


def test_hooks_follow_their_rows():
    assert [h.name for h in features.hooks(("core",))] == [
        "syscalls:sys_enter_kcmp", "syscalls:sys_exit_kcmp"]
    streamed = {h.name for h in features.hooks(("core", "proc_table", "compat"))}
    assert "raw:task_newtask" not in streamed  # it numbers tasks with the caller's reads
    assert {"task:task_newtask", "raw_syscalls:sys_exit"} <= streamed
    assert features.PROGRAMS == tuple(h.program for h in features.HOOKS)


def test_on_trampolines_no_hook_runs_for_another_syscall():
    on = ("core", "fentry", "proc_table", "compat", "compat_entry", "caller", "seccomp")
    names = [h.name for h in features.hooks(on)]
    assert not [n for n in names if n.startswith(("syscalls:", "raw_syscalls:"))]
    assert [n for n in names if n.startswith(("fentry:", "fexit:"))] == [
        "fentry:__x64_sys_kcmp", "fexit:__x64_sys_kcmp", "fentry:__ia32_sys_kcmp",
        "fexit:__ia32_sys_kcmp", "fexit:__secure_computing"]
    assert features.said(on) == (
        "hooks: fentry (__x64_sys_kcmp, __ia32_sys_kcmp, __secure_computing)")


def test_on_tracepoints_the_hooks_say_what_runs_on_every_syscall_and_why_not_fentry():
    assert features.said(("core", "compat"), "EPERM") == (
        "hooks: tracepoints (+ raw sys_exit for 32-bit); no fentry: EPERM")
    assert features.said(("core", "compat", "compat_entry")) == (
        "hooks: tracepoints (+ raw sys_enter and sys_exit for 32-bit)")
    assert features.said(("core",)) == "hooks: tracepoints"


def test_the_program_enum_holds_a_slot_for_every_hook_in_its_order():
    enum = (BPF / "kcmp.h").read_text().split("enum kcmp_prog {")[1].split("}")[0]
    slots = re.findall(r"^\s*(KCMP_PROG_\w+),", enum, re.M)
    assert len(slots) == len(features.HOOKS) and slots[-1] != "KCMP_PROGS"


def test_a_row_the_kernel_lacks_is_off_with_its_reason_and_so_are_those_needing_it():
    selected = features.select(ProgramOptions(compat_entry=True),
                               btf_off={"caller": "the kernel's BTF has no task_struct.pid"})
    assert selected.off["caller"] == "the kernel's BTF has no task_struct.pid"
    assert selected.off["files"] == selected.off["cgroup"] == "it needs caller, which is off"
    assert "proc_table" in selected.on and "caller" not in selected.on
