"""The kernel side's features, one row each: the guard its C sits behind (bpf/<header>), the
other -D values it takes, the hooks it attaches, the probe that says whether this kernel has it
and the BTF members it reads (fields.MEMBERS). The program's -D flags, the hooks to attach (in
enum kcmp_prog's order), --check's report and the start line's notes all come from here; the
loader gives up rows by name."""

from __future__ import annotations

import os
import platform
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

from .. import abi
from . import trampolines
from .home import Home
from .options import ProgramOptions, priority_pages
from .probes import no_compat, no_seccomp
from .proctable import PROC_TABLE_SIZE


class Build(NamedTuple):
    """What a row's -D values are made of."""
    options: ProgramOptions
    home: Home
    btf: dict[str, list[str]]  # feature -> its BTF_<MEMBER> flags (fields.resolve)


@dataclass(frozen=True)
class Feature:
    name: str
    guard: str | None  # the macro the BPF source tests; None: always built in
    about: str  # what a person reads of it (--check, the start line)
    wanted: Callable[[ProgramOptions], bool]
    values: tuple[str, ...] = ()  # the other macros it defines
    defines: Callable[[Build], list[str]] = lambda _: []
    requires: str | None = None  # a row it reads what another found in
    probe: Callable[[], str | None] | None = None  # why this kernel lacks it; None: it has it
    btf: bool = False  # it reads kernel structs at the offsets fields.MEMBERS[name] resolves
    header: str | None = None  # bpf/<header>: where its C is

    def flags(self, build: Build) -> list[str]:
        """Its guard (unless one of its values is the guard's), values and BTF offsets."""
        values = self.defines(build)
        valued = any(f.startswith(f"-D{self.guard}=") for f in values)
        guard = [] if self.guard is None or valued else [f"-D{self.guard}"]
        return guard + values + build.btf.get(self.name, [])


def _core(b: Build) -> list[str]:
    pages = b.options.ringbuf_pages
    return [f"-DRINGBUF_PAGES={pages}", f"-DPRIORITY_PAGES={priority_pages(pages)}",
            f"-DKCMP_EPOLL_TFD={abi.KcmpType.KCMP_EPOLL_TFD.value}",
            f"-DKCMP_FILE_TYPE={abi.KcmpType.KCMP_FILE.value}",
            f"-DKCMP_TYPE_UNKNOWN_BIT={abi.KCMP_TYPES}", f"-DEPERM_ERRNO={abi.EPERM}"]


def _filters(b: Build) -> list[str]:
    f = b.options.filters
    flags = []
    if f.tgid is not None:
        flags.append(f"-DFILTER_TGID={f.tgid}")
    if f.uid is not None:
        flags.append(f"-DFILTER_UID={f.uid}")
    if f.comm is not None:
        # bpf_get_current_comm() zero-fills all 16 bytes: compare them as two integers.
        lo, hi = struct.unpack("<QQ", f.comm.ljust(16, b"\0"))
        flags += [f"-DFILTER_COMM_LO={lo:#x}ULL", f"-DFILTER_COMM_HI={hi:#x}ULL"]
    if f.types:
        flags.append(f"-DTYPE_MASK={sum(1 << t for t in f.types):#x}")
    if f.errors_only:
        flags.append("-DERRORS_ONLY")
    return flags


def _home(b: Build) -> list[str]:
    h = b.home
    return [f"-DOWN_PIDNS_DEV={h.pidns_dev}ULL", f"-DOWN_PIDNS_INO={h.pid}ULL",
            f"-DOWN_MNTNS_INO={h.mnt}", f"-DOWN_NETNS_INO={h.net}"]


def _sweep(b: Build) -> list[str]:
    assert b.options.sweep is not None
    fds, window_s = b.options.sweep
    return [f"-DSWEEP_FDS={fds}", f"-DSWEEP_WINDOW_NS={round(window_s * 1e9)}ULL"]


def _seccomp(_: Build) -> list[str]:
    machine = platform.machine()
    return [f"-DNR_KCMP={abi.SYSCALL_NR.get(machine, -1)}",
            f"-DSECCOMP_MODE_FILTER_VALUE={abi.SECCOMP_MODE_FILTER}",
            f"-DTHREAD_SIZE_VALUE={abi.THREAD_SIZE.get(machine, 0)}",
            f"-DTS_COMPAT_VALUE={abi.TS_COMPAT}"]


def _policy(b: Build) -> list[str]:
    return [f"-DOWN_TGID={os.getpid()}", f"-DPF_KTHREAD_VALUE={abi.PF_KTHREAD:#x}",
            f"-DSIGKILL_VALUE={abi.SIGKILL}"]


def _counted_or_streamed(o: ProgramOptions) -> bool:
    return o.streams or o.count


FEATURES: tuple[Feature, ...] = (
    Feature("core", None, "the kcmp calls' entries and exits", lambda o: True,
            ("RINGBUF_PAGES", "PRIORITY_PAGES", "KCMP_EPOLL_TFD", "KCMP_FILE_TYPE",
             "KCMP_TYPE_UNKNOWN_BIT", "EPERM_ERRNO"), _core),
    Feature("filters", None, "the trace stream's filters", lambda o: True,
            ("FILTER_TGID", "FILTER_UID", "FILTER_COMM_LO", "FILTER_COMM_HI", "TYPE_MASK",
             "ERRORS_ONLY"), _filters),
    Feature("stream", "STREAM_TRACE", "the calls that pass the filters, streamed",
            lambda o: o.trace),
    Feature("urgent", "TRACE_URGENT", "only the priority lane's kinds of call streamed",
            lambda o: o.urgent_only),
    Feature("eperm", "STREAM_EPERM", "every permission failure streamed (the EPERM log)",
            lambda o: o.log_eperm),
    Feature("count", "COUNT", "every call counted in the kernel", lambda o: o.count,
            header="count.h"),
    Feature("home", None, "the namespaces a caller is held to", _counted_or_streamed,
            ("OWN_PIDNS_DEV", "OWN_PIDNS_INO", "OWN_MNTNS_INO", "OWN_NETNS_INO"), _home),
    Feature("proc_table", "PROC_TABLE", "the process table (tasks as forked and renamed)",
            lambda o: o.streams, ("CLONE_THREAD_FLAG", "CLONE_PARENT_FLAG"),
            lambda _: [f"-DPROC_TABLE={PROC_TABLE_SIZE}", f"-DCLONE_THREAD_FLAG={abi.CLONE_THREAD}",
                       f"-DCLONE_PARENT_FLAG={abi.CLONE_PARENT}"], header="proctable.h"),
    Feature("fold", "FOLD_WINDOW_NS", "a thread's identical calls folded",
            lambda o: bool(o.fold_ns) and o.streams, (),
            lambda b: [f"-DFOLD_WINDOW_NS={b.options.fold_ns}ULL"], header="fold.h"),
    Feature("sweep", "SWEEP_FDS", "fd sweeps counted in the kernel",
            lambda o: o.sweep is not None, ("SWEEP_WINDOW_NS",), _sweep, header="sweep.h"),
    Feature("compat", "CAPTURE_COMPAT", "32-bit capture", lambda o: o.compat,
            ("IA32_NR_KCMP", "ENOSYS_ERRNO"),
            lambda _: [f"-DIA32_NR_KCMP={abi.IA32_NR_KCMP}", f"-DENOSYS_ERRNO={abi.ENOSYS}"],
            probe=no_compat, header="compat.h"),
    Feature("compat_entry", "COMPAT_ENTRY", "32-bit calls timed from their entry",
            lambda o: o.compat and o.compat_entry, requires="compat", header="compat.h"),
    Feature("caller", "KERNEL_CALLER", "caller context from the kernel", _counted_or_streamed,
            btf=True, header="task.h"),
    Feature("targets", "KERNEL_TARGETS", "the named processes from the kernel",
            lambda o: o.streams, ("XA_CHUNK_SHIFT", "IDR_LEVELS", "PF_EXITING_VALUE"),
            lambda _: [f"-DPF_EXITING_VALUE={abi.PF_EXITING:#x}"], requires="caller", btf=True,
            header="targets.h"),
    Feature("files", "KERNEL_FILES", "the named fds from the kernel",
            lambda o: o.streams, requires="caller", btf=True, header="files.h"),
    Feature("cgroup", "KERNEL_CGROUP", "the caller's cgroup from the kernel",
            lambda o: o.streams, ("CGROUP_V1_SUBSYS",), requires="caller", btf=True,
            header="cgroup.h"),
    Feature("seccomp", "KERNEL_SECCOMP", "arguments of calls refused by seccomp",
            lambda o: True,
            ("NR_KCMP", "SECCOMP_MODE_FILTER_VALUE", "THREAD_SIZE_VALUE", "TS_COMPAT_VALUE"),
            _seccomp, probe=no_seccomp, btf=True, header="seccomp.h"),
    Feature("policy", "KERNEL_POLICY", "the kcmp policy decided at each call's entry",
            lambda o: o.policy is not None, ("OWN_TGID", "PF_KTHREAD_VALUE", "SIGKILL_VALUE"),
            _policy, requires="caller", btf=True, header="policy.h"),
    Feature("deny_check", "POLICY_DENY_CHECK", "denials at kcmp's access check (trampolines)",
            lambda o: o.denies, requires="policy",
            probe=lambda: trampolines.refused(trampolines.ACCESS_CHECK), header="policy.h"),
    # The seccomp row's saved registers are what the trampolines read the arguments from, and
    # what their seccomp hook needs: without it the tracepoints, which see refused calls.
    Feature("fentry", "HOOK_FENTRY", "BPF trampolines on the kcmp syscall functions",
            lambda o: o.hooks != "tracepoint", requires="seccomp", probe=trampolines.refused,
            header="fentry.h"),
)
BY_NAME = {f.name: f for f in FEATURES}
# The features read from the kernel's structs, in the order the start line and --check say them.
KERNEL_FEATURES = {f.name: f.about for f in FEATURES if f.btf}
# Given up one at a time while an older verifier refuses the program, the costliest to verify
# first (files walks up to 16 dentries for each of three fds; targets, a tree for each pid).
SHED_ORDER = ("files", "targets", "cgroup", "seccomp", "caller")


class Hook(NamedTuple):
    name: str  # as --check says it
    program: str  # BCC's name of its function (and the kernel's run-time statistics')
    feature: str  # the row that attaches it
    needs: str | None = None  # a second row it needs on
    without: str | None = None  # a row in whose place it is not attached

    def attached(self, bpf: Any) -> bool:
        kind, event = self.name.split(":")
        if kind in ("raw", "raw_syscalls"):  # BCC keys a raw tracepoint by its event alone
            return event.encode() in bpf.raw_tracepoint_fds
        if kind == "fentry":
            return self.program.encode() in bpf.kfunc_entry_fds
        if kind == "fexit":
            return self.program.encode() in bpf.kfunc_exit_fds
        if kind == "fmod_ret":  # attached by the loader (BCC 0.26 attaches none)
            return self.program.encode() in getattr(bpf, "modify_return_fds", {})
        return self.name.encode() in bpf.tracepoint_fds


# In enum kcmp_prog's order (bpf/kcmp.h): a program's run counts are kept at its index.
HOOKS = (
    Hook("syscalls:sys_enter_kcmp", "tracepoint__syscalls__sys_enter_kcmp", "core",
         without="fentry"),
    Hook("syscalls:sys_exit_kcmp", "tracepoint__syscalls__sys_exit_kcmp", "core",
         without="fentry"),
    Hook("task:task_newtask", "tracepoint__task__task_newtask", "proc_table"),
    Hook("task:task_rename", "tracepoint__task__task_rename", "proc_table"),
    Hook("sched:sched_process_exit", "tracepoint__sched__sched_process_exit", "fold"),
    Hook("raw:task_newtask", "raw_tracepoint__task_newtask", "proc_table", "caller"),
    Hook("raw_syscalls:sys_enter", "raw_tracepoint__sys_enter", "compat_entry",
         without="fentry"),
    Hook("raw_syscalls:sys_exit", "raw_tracepoint__sys_exit", "compat", without="fentry"),
    Hook("fentry:__x64_sys_kcmp", "kfunc____x64_sys_kcmp", "fentry"),
    Hook("fexit:__x64_sys_kcmp", "kretfunc____x64_sys_kcmp", "fentry"),
    Hook("fentry:__ia32_sys_kcmp", "kfunc____ia32_sys_kcmp", "compat", "fentry"),
    Hook("fexit:__ia32_sys_kcmp", "kretfunc____ia32_sys_kcmp", "compat", "fentry"),
    Hook("fexit:__secure_computing", "kretfunc____secure_computing", "fentry"),
    Hook(f"fmod_ret:{trampolines.ACCESS_CHECK[0]}",
         f"kmod_ret__{trampolines.ACCESS_CHECK[0]}", "deny_check"),
)
PROGRAMS = tuple(hook.program for hook in HOOKS)


class Selected(NamedTuple):
    on: tuple[str, ...]  # the rows built in, in the table's order
    off: dict[str, str]  # rows wanted but off here, with why


def select(options: ProgramOptions, btf_off: dict[str, str] | None = None) -> Selected:
    """The rows the options want that this kernel has: each probe asked, a row whose BTF
    members are missing (btf_off) or whose required row is off left out with the reason."""
    on: list[str] = []
    off: dict[str, str] = {}
    for feature in FEATURES:
        if not feature.wanted(options):
            continue
        reason = feature.probe() if feature.probe is not None else None
        if reason is None and feature.requires is not None and feature.requires not in on:
            reason = f"it needs {feature.requires}, which is off"
        if reason is None and btf_off:
            reason = btf_off.get(feature.name)
        if reason is None:
            on.append(feature.name)
        else:
            off[feature.name] = reason
    return Selected(tuple(on), off)


def cflags(on: Iterable[str], build: Build, include: str) -> list[str]:
    """The -D flags of the rows on (and -I for the program's headers)."""
    flags = [f"-I{include}"]
    for name in on:
        flags += BY_NAME[name].flags(build)
    return list(dict.fromkeys(flags))  # members two rows read, defined once


def hooks(on: Iterable[str]) -> tuple[Hook, ...]:
    """The hooks the rows on attach."""
    built = set(on)
    return tuple(h for h in HOOKS if h.feature in built and (h.needs is None or h.needs in built)
                 and h.without not in built)


def said(on: Iterable[str], fentry_off: str | None = None) -> str:
    """Where the rows on catch kcmp, as the start line and --check say it; why not on
    trampolines where they were wanted."""
    attached = hooks(on)
    functions = dict.fromkeys(h.name.split(":")[1] for h in attached
                              if h.name.startswith(("fentry:", "fexit:")))
    if functions:
        return f"hooks: fentry ({', '.join(functions)})"
    raw = [h.name.split(":")[1] for h in attached if h.name.startswith("raw_syscalls:")]
    line = "hooks: tracepoints" + (f" (+ raw {' and '.join(raw)} for 32-bit)" if raw else "")
    return line + (f"; no fentry: {fentry_off}" if fentry_off else "")
