"""The loader of bpf/kcmp.bpf.c (BCC): builds the program from the feature table's rows this
kernel has, attaches it (giving up rows the kernel refuses), and reads its maps."""

from __future__ import annotations

import ctypes
import mmap
import os
import re
import select
import struct
import time
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

from .. import abi
from ..caps import check_privileges
from ..errors import MonitorError, Unavailable
from ..flags import flag
from . import bpfcall, features, fields, ringbuf
from .counters import (
    COMM_STATS,
    DENIED_KEY,
    NS_COUNTERS,
    SLOTS,
    STAT_COUNT,
    Snapshot,
    TypeStats,
    program_cost,
)
from .features import BY_NAME, HOOKS, PROGRAMS, SHED_ORDER, Build, Selected
from .folds import Folds
from .home import home_namespaces
from .options import ProgramOptions, priority_pages
from .policy import PolicyTable
from .probes import SETUP_HINT, TRACEFS, check_kernel, no_compat, v1_controller
from .proctable import ProcessTable

# Package data (bpf/ in the source tree), found the same way installed or editable.
BPF_DIR = Path(str(resources.files("kcmp_monitor.bpf")))
BPF_SOURCE = BPF_DIR / "kcmp.bpf.c"
_INCLUDE = re.compile(r'#include "([\w.]+)"')


def source(path: Path = BPF_SOURCE, seen: set[str] | None = None) -> str:
    """The program's text with the headers of bpf/ it includes inlined, each once, behind
    #line directives that keep BCC's and the verifier's messages at their own file and line:
    BCC rewrites map calls (`map.lookup()`) in its main file alone (BCC 0.26 loads a lookup
    written in an included header as a call that the kernel refuses: "Invalid argument")."""
    seen = set() if seen is None else seen
    lines = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        header = _INCLUDE.fullmatch(line)
        if header is None or not (path.parent / header[1]).is_file():
            lines.append(line)
        elif header[1] not in seen:
            seen.add(header[1])
            lines += [f'#line 1 "{path.parent / header[1]}"',
                      source(path.parent / header[1], seen), f'#line {number + 1} "{path}"']
    return "\n".join(lines)


def selected(options: ProgramOptions) -> tuple[Selected, dict[str, list[str]]]:
    """The feature table's rows the options want and this kernel has, and the BTF flags of
    those that read kernel structs (their members asked of the running kernel's BTF)."""
    wanted = tuple(f.name for f in features.FEATURES if f.btf and f.wanted(options))
    resolved = fields.resolve(options.btf, wanted, cgroup_v1=v1_controller())
    return features.select(options, resolved.off), resolved.flags


def _import_bcc():
    try:
        import bcc
    except ImportError:
        raise Unavailable(f"BCC's Python module is missing (python3-bpfcc); {SETUP_HINT}") from None
    return bcc


class Refused(MonitorError):
    """The kernel refused the program: program, the one BCC named (None where it named none);
    verifier, whether loading (not attaching) failed."""

    def __init__(self, message: str, program: str | None, verifier: bool) -> None:
        super().__init__(message)
        self.program, self.verifier = program, verifier


# The 32-bit rows, and their hooks' programs: a failure naming one costs 32-bit capture alone.
COMPAT = ("compat", "compat_entry")
COMPAT_PROGRAMS = tuple(h.program for h in HOOKS if h.feature in COMPAT)


# The modify-return programs, which BCC 0.26 neither attaches nor detaches: their links are
# kept on the BPF object (closed by close_modify_return()).
MODIFY_RETURN = tuple(h.program for h in HOOKS if h.name.startswith("fmod_ret:"))


def _attach_modify_return(bcc, bpf, on: tuple[str, ...]) -> None:
    hooks = [h for h in features.hooks(on) if h.program in MODIFY_RETURN]
    if hooks:
        bpf.modify_return_fds = {}
    for hook in hooks:
        fn = bpf.load_func(hook.program.encode(), bcc.BPF.TRACING)
        fd = bcc.libbcc.lib.bpf_attach_kfunc(fn.fd)
        if fd < 0:
            raise Exception(f"Failed to attach BPF program {hook.program}: "
                            f"{os.strerror(ctypes.get_errno())}")
        bpf.modify_return_fds[hook.program.encode()] = fd


def close_modify_return(bpf) -> None:
    fds = getattr(bpf, "modify_return_fds", None)
    while fds:
        os.close(fds.popitem()[1])


def _load(bcc, text: str, on: tuple[str, ...], build: Build):
    """Compile and attach (BCC attaches every probe it finds) or raise Refused."""
    bpf = None
    try:
        bpf = bcc.BPF(text=text, cflags=features.cflags(on, build, str(BPF_DIR)))
        _attach_modify_return(bcc, bpf, on)
        return bpf
    except Exception as exc:  # BCC raises bare Exception for compile and attach failures
        if bpf is not None:
            close_modify_return(bpf)
            bpf.cleanup()
        text = str(exc)
        named = re.search(r"Failed to (load|attach) BPF program b?'?([A-Za-z0-9_]+)", text)
        raw_attach = text.startswith("Failed to attach BPF to raw tracepoint")
        if named is not None:
            program, verifier = named[2], named[1] == "load"
        else:
            program, verifier = COMPAT_PROGRAMS[-1] if raw_attach else None, False
        raise Refused(f"could not load the BPF program: {exc}", program, verifier) from None


# The programs of the fentry hooks: a failure to attach one costs the trampolines (BCC names
# none of them when it fails to attach one).
FENTRY_PROGRAMS = tuple(h.program for h in HOOKS if "fentry" in (h.feature, h.needs))
_FENTRY_ATTACH = re.compile(r"Failed to attach BPF to (entry|exit) kernel func")


def _shed(refused: Refused, on: tuple[str, ...], hooks: str) -> str | None:
    """The row to do without after the kernel refused the program: a kernel-side feature
    (where the verifier refused it), "fentry" (a trampoline that cannot be had, unless asked
    for by name: then the tracepoints are not what was asked), "compat" (a 32-bit hook that
    cannot be had), "deny_check" (the access check's trampoline: denials become kills), or
    None (nothing left to give up: the core itself is refused)."""
    if "deny_check" in on and refused.program in MODIFY_RETURN:
        return "deny_check"
    if "fentry" in on and hooks == "auto" and (
            refused.program in FENTRY_PROGRAMS or _FENTRY_ATTACH.search(str(refused))):
        return "fentry"
    if refused.verifier:
        feature = next((f for f in SHED_ORDER if f in on), None)
        if feature is not None:
            return feature
    if "compat" in on and refused.program in COMPAT_PROGRAMS:
        return "compat"
    return None


class Loaded(NamedTuple):
    bpf: Any  # bcc.BPF, which ships no type hints
    on: tuple[str, ...]  # the rows built in
    off: dict[str, str]  # rows wanted but off, with why


def load(bcc, wanted: Selected, build: Build) -> Loaded:
    """The program with every row the kernel takes. The 64-bit capture is the core: what the
    kernel refuses beside it is given up, one row at a time, and said."""
    on, off = wanted.on, dict(wanted.off)
    text = source()
    while True:
        try:
            return Loaded(_load(bcc, text, on, build), on, off)
        except Refused as exc:
            shed = _shed(exc, on, build.options.hooks)
            if shed is None:
                raise
            if shed == "compat":
                off["compat"] = f"32-bit capture failed ({exc})"
                on = tuple(f for f in on if f not in COMPAT)
                continue
            on = tuple(f for f in on if f != shed)
            off[shed] = f"the kernel refused the program with it ({exc})"
            for row in on:  # what needs the row shed goes with it (fentry: seccomp)
                if BY_NAME[row].requires == shed:
                    on = tuple(f for f in on if f != row)
                    off[row] = f"it needs {shed}, which is off"


def _policy_had(options: ProgramOptions, loaded: Loaded) -> PolicyTable | None:
    """The policy written into the kernel's table (None: none given); Unavailable where the
    kernel cannot decide it."""
    if options.policy is None:
        return None
    for row in ("policy", "targets") if options.policy.needs_targets else ("policy",):
        if row not in loaded.on:
            raise Unavailable(f"the policy cannot be decided in this kernel: {row} is off "
                              f"({loaded.off.get(row, 'not built')})")
    on = loaded.on
    if options.enforce and options.compat and no_compat() is None and (
            "compat" not in on or "fentry" not in on and "compat_entry" not in on):
        why = loaded.off.get("compat") or loaded.off.get("compat_entry")
        raise Unavailable(f"32-bit calls would escape the policy: their entry is not hooked "
                          f"here ({why})")
    return PolicyTable.write(loaded.bpf, options.policy, options.enforce,
                             "deny_check" in loaded.on, loaded.off.get("deny_check"))


def _fentry_had(options: ProgramOptions, off: dict[str, str]) -> None:
    """Raise Unavailable where the trampolines were asked for by name and are off."""
    if options.hooks == "fentry" and "fentry" in off:
        raise Unavailable(f"{flag('hooks')} fentry cannot be had here: {off['fentry']}; "
                          f"use {flag('hooks')} auto or tracepoint")


class KcmpProgram:
    """The compiled, attached kcmp program; detached by close() or on leaving a with-block."""

    def __init__(self, options: ProgramOptions, tracefs: str = TRACEFS) -> None:
        check_privileges()
        check_kernel(tracefs)
        self.home = home_namespaces(options.home)
        bcc = _import_bcc()
        self.bcc_version = getattr(bcc, "__version__", "unknown")
        wanted, btf = selected(options)
        _fentry_had(options, wanted.off)
        loaded = load(bcc, wanted, Build(options, self.home, btf))
        try:
            _fentry_had(options, loaded.off)
            self.policy = _policy_had(options, loaded)
        except Unavailable:
            close_modify_return(loaded.bpf)
            loaded.bpf.cleanup()
            raise
        self._bpf, self.on = loaded.bpf, loaded.on
        self.compat, self.compat_entry = "compat" in self.on, "compat_entry" in self.on
        self.compat_error = loaded.off.get("compat")
        self.fentry, self.fentry_error = "fentry" in self.on, loaded.off.get("fentry")
        self.kernel_on = tuple(f for f in self.on if BY_NAME[f].btf)
        self.kernel_off = {f: why for f, why in loaded.off.items() if BY_NAME[f].btf}
        self._stats = self._bpf["stats"]
        # The kernel's table of tasks, kept while records are streamed (for their context).
        self.procs = (ProcessTable(self._bpf["procs"],
                                   self._bpf["nspids"] if "caller" in self.on else None)
                      if "proc_table" in self.on else None)
        self._ringbuf_pages = options.ringbuf_pages
        self._readers: list[ringbuf.RingReader] = []  # the priority lane, then the bulk one
        self._poller: select.epoll | None = None
        self._pending: list[bytes] = []  # records BCC's reader handed over, until read()
        self.folds = (Folds(self._bpf["folds"], self._bpf["fold_swept"], options.fold_ns,
                            "files" in self.on)
                      if "fold" in self.on else None)
        self._swept_ns = 0

    def open_events(self) -> None:
        """Start reading the ring buffers; read() then returns what arrived, the priority
        lane's records first."""
        tables = [self._bpf["priority"], self._bpf["events"]]
        if abi.is_x86_64():  # our reader relies on its memory ordering
            self._poller = select.epoll()
            for table, pages in zip(tables, (priority_pages(self._ringbuf_pages),
                                             self._ringbuf_pages)):
                self._readers.append(ringbuf.RingReader(table.map_fd, pages * mmap.PAGESIZE))
                self._poller.register(table.map_fd, select.EPOLLIN)
            return

        def on_record(_ctx, data, size):
            self._pending.append(ctypes.string_at(data, size))

        for table in tables:
            table.open_ring_buffer(on_record)

    def read(self, timeout_ms: int, final: bool = False) -> list[bytes]:
        """The records available, after waiting up to timeout_ms for the first; then those of
        folded runs whose window shut while their thread was quiet (final: of every run, as
        the monitor stops)."""
        if self._poller is not None:
            ringbuf.wait(self._readers, self._poller, timeout_ms)
            records = [record for reader in self._readers for record in reader.read()]
        else:
            self._bpf.ring_buffer_poll(timeout_ms)
            records, self._pending = self._pending, []
        folds = self.folds
        if folds is None:
            return records
        records = folds.unswept(records)
        now = time.monotonic_ns()
        # Sweeping reads the whole map: twice a window is often enough.
        if final or now - self._swept_ns >= folds.window_ns // 2:
            self._swept_ns = now
            records += folds.sweep(now, final)
        return records

    def stat(self, index: int) -> int:
        """A counter of the stats map, summed over CPUs."""
        return int(self._stats.sum(self._stats.Key(index)).value)

    def hooks(self) -> str:
        """Where kcmp is caught (and why not on trampolines, where they were wanted)."""
        return features.said(self.on, self.fentry_error)

    def attached(self) -> dict[str, bool]:
        """Each hook of the rows built in, and whether it is attached."""
        return {hook.name: hook.attached(self._bpf) for hook in features.hooks(self.on)}

    def snapshot(self) -> Snapshot:
        """Every counter, summed over CPUs (needs options.count)."""
        if "count" not in self.on:
            raise MonitorError("the program was loaded without counters")
        types = self._bpf["type_stats"]
        denied: dict[tuple[int, int], int] = {}
        for key, per_cpu in self._bpf["denied"].items():
            denied[DENIED_KEY.unpack(bytes(key))] = sum(per_cpu)
        comms: dict[bytes, tuple[int, int]] = {}
        for key, per_cpu in self._bpf["comms"].items():
            rows = [COMM_STATS.unpack(bytes(v)) for v in per_cpu]
            comms[bytes(key).split(b"\0", 1)[0]] = (sum(r[0] for r in rows),
                                                     sum(r[1] for r in rows))
        namespaced = None
        if "caller" in self.kernel_on:
            table = self._bpf["namespaced"]
            namespaced = [int(table.sum(table.Key(i)).value) for i in range(NS_COUNTERS)]
        return Snapshot(
            types=[TypeStats.from_cpus(bytes(v) for v in types[types.Key(slot)])
                   for slot in range(SLOTS)],
            denied=denied, comms=comms, stats=[self.stat(i) for i in range(STAT_COUNT)],
            namespaced=namespaced)

    def program_costs(self) -> dict[str, tuple[int, float]]:
        """Per attached program: (runs, their estimated time in ns), as the programs count and
        sample themselves."""
        table = self._bpf["prog_stats"]
        loaded = {name.decode() if isinstance(name, bytes) else name for name in self._bpf.funcs}
        return {name: program_cost(bytes(v) for v in table[table.Key(i)])
                for i, name in enumerate(PROGRAMS) if name in loaded}

    def run_stats(self) -> dict[str, tuple[int, int]]:
        """Per program: (run time in ns, run count), as the kernel keeps them while
        kernel.bpf_stats_enabled is 1; empty where the bpf(2) call is not known here."""
        if not bpfcall.available():
            return {}
        result = {}
        for name, fn in self._bpf.funcs.items():
            info = ctypes.create_string_buffer(abi.BPF_PROG_INFO_SIZE)
            attr = ctypes.create_string_buffer(abi.BPF_ATTR_SIZE)
            struct.pack_into("<IIQ", attr, 0, fn.fd, abi.BPF_PROG_INFO_SIZE,
                             ctypes.addressof(info))
            try:
                bpfcall.bpf(abi.BPF_OBJ_GET_INFO_BY_FD, attr)
            except OSError:
                continue
            run_ns, runs = struct.unpack_from("<QQ", info, abi.BPF_PROG_INFO_RUN_TIME_NS)
            label = name.decode() if isinstance(name, bytes) else name
            result[label] = (run_ns, runs)
        return result

    def close(self) -> None:
        close_modify_return(self._bpf)
        for reader in self._readers:
            reader.close()
        if self._poller is not None:
            self._poller.close()
        self._bpf.cleanup()

    def __enter__(self) -> KcmpProgram:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
