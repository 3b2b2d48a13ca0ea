"""The loader of bpf/kcmp.bpf.c (BCC): checks what the kernel offers, compiles and attaches the
program, and reads its maps."""

from __future__ import annotations

import ctypes
import gzip
import mmap
import os
import platform
import re
import select
import struct
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

from .. import abi
from ..caps import check_privileges
from ..errors import MonitorError, NoPermission, NoSuchTarget, Unavailable
from . import fields, ringbuf
from .btf import VMLINUX
from .folds import Folds
from .counters import (
    COMM_STATS,
    DENIED_KEY,
    NS_COUNTERS,
    PROGRAMS,
    SLOTS,
    STAT_COUNT,
    Snapshot,
    TypeStats,
    program_cost,
)
from .proctable import PROC_TABLE_SIZE, ProcessTable

# Package data (bpf/ in the source tree), found the same way installed or editable.
BPF_DIR = Path(str(resources.files("kcmp_monitor.bpf")))
BPF_SOURCE = BPF_DIR / "kcmp.bpf.c"
TRACEFS = "/sys/kernel/tracing"
SETUP_HINT = "run `sudo make setup`"


@dataclass(frozen=True)
class Filters:
    """What the kernel keeps; None or empty means everything."""

    tgid: int | None = None
    uid: int | None = None
    comm: bytes | None = None
    types: frozenset[int] = frozenset()  # values 0..7, and abi.KCMP_TYPES for "unknown"
    errors_only: bool = False


@dataclass(frozen=True)
class ProgramOptions:
    filters: Filters = field(default_factory=Filters)  # for the trace stream only
    ringbuf_pages: int = 1024  # 4 MiB: ~30,000 events, a 150 ms burst at 200,000 calls/s
    compat: bool = True
    compat_entry: bool = False  # 32-bit calls: hook every syscall's entry too (their timing)
    trace: bool = True  # stream the calls that pass the filters
    count: bool = False  # count every call in the kernel (the exporter)
    log_eperm: bool = False  # stream every EPERM (the permission-failure log)
    btf: str = VMLINUX  # the running kernel's BTF, for the struct members the program reads
    fold_ns: int = 0  # fold a thread's identical streamed calls within this window; 0: not
    urgent_only: bool = False  # trace only the priority lane's kinds of call (the event file)
    home: int | str | None = None  # whose namespaces a caller is held to (home_namespaces)
    # count fd sweeps in the kernel: (distinct fds of one other process, window in seconds)
    sweep: tuple[int, float] | None = None

    @property
    def streams(self) -> bool:
        """Records reach user space: they get context, so the process table is kept."""
        return self.trace or self.log_eperm


HOST = "host"  # --namespaces-of host: the kernel's initial namespaces


class Home(NamedTuple):
    """The pid, mount and network namespaces a caller is held to: a caller elsewhere is said
    to be, and counted. The monitor's own, or (in a container sharing the host's pid
    namespace) the host's."""
    pidns_dev: int
    pid: int
    mnt: int
    net: int

    def inodes(self) -> dict[str, int | None]:
        return {"pid": self.pid, "mnt": self.mnt, "net": self.net}


def home_namespaces(of: int | str | None) -> Home:
    """The namespaces of process `of` (None: the monitor's; HOST: kthreadd's, which are the
    kernel's initial ones), from /proc/PID/ns: another process's need ptrace access."""
    pid = _kthreadd() if of == HOST else of
    proc = "/proc/self" if pid is None else f"/proc/{pid}"
    try:
        # Read before stat(2): on 5.10 a link the reader may not follow stats as /proc's.
        pidns, mntns, netns = (abi.ns_link_inode(os.readlink(f"{proc}/ns/{kind}"))
                               for kind in ("pid", "mnt", "net"))
        if pidns is None or mntns is None or netns is None:
            raise MonitorError(f"{proc}/ns: not namespace links")
        return Home(os.stat(f"{proc}/ns/pid").st_dev, pidns, mntns, netns)
    except PermissionError:
        raise NoPermission(f"--namespaces-of {of}: cannot read its namespaces (needs "
                           "CAP_SYS_PTRACE, which a container must be given for it)") from None
    except FileNotFoundError:
        raise NoSuchTarget(f"--namespaces-of {of}: no such process") from None


def _kthreadd() -> int:
    """Pid 2 where the monitor sees the host's pid namespace (the kernel's thread starter)."""
    try:
        with open("/proc/2/status") as f:
            status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    except OSError:
        status = {}
    if status.get("Name") != "kthreadd" or status.get("PPid") != "0":
        raise Unavailable("--namespaces-of host: the kernel's threads are not visible here; "
                          "share the host's pid namespace (docker run --pid host, hostPID) "
                          "or name a process of the host")
    return 2


def priority_pages(ringbuf_pages: int) -> int:
    """The priority lane's ring: a quarter of the bulk one's (a power of two too)."""
    return max(1, ringbuf_pages // 4)


# What the kernel-side features are called where a person reads about them.
KERNEL_FEATURES = {"caller": "caller context from the kernel",
                   "files": "the caller's own fds from the kernel",
                   "cgroup": "the caller's cgroup from the kernel",
                   "seccomp": "arguments of calls refused by seccomp"}


def kernel_features(options: ProgramOptions) -> fields.Resolved:
    """The kernel-side features this program can have here, with the flags that turn them on:
    the caller read from the kernel (for streamed records, and its namespaces for the counts),
    its own fds (streamed records), and (x86_64) the registers of calls refused before entry."""
    # The caller's namespaces count calls from elsewhere, too.
    wanted: tuple[str, ...] = ("caller",) if options.streams or options.count else ()
    if options.streams:
        wanted += ("files", "cgroup")
    off = {}
    if abi.is_x86_64():
        wanted += ("seccomp",)
    else:
        off["seccomp"] = f"saved registers are read on x86_64 only (this is {platform.machine()})"
    resolved = fields.resolve(options.btf, wanted, cgroup_v1=v1_controller())
    return resolved._replace(off={**off, **resolved.off})


# Controllers whose v1 hierarchy holds a container's cgroup as its runtime made it (Docker,
# containerd and CRI-O make one in each), the first mounted one read.
V1_CONTROLLERS = ("pids", "memory", "devices", "cpu")


def v1_controller(proc_cgroups: str = "/proc/cgroups") -> str | None:
    """The controller whose v1 hierarchy the kernel side reads a caller's cgroup in; None where
    no v1 hierarchy is mounted (cgroup v2 alone: the unified one is read)."""
    try:
        with open(proc_cgroups) as f:
            rows = [line.split() for line in f if not line.startswith("#")]
    except OSError:
        return None
    mounted = {row[0] for row in rows if len(row) == 4 and row[1] != "0" and row[3] == "1"}
    return next((c for c in V1_CONTROLLERS if c in mounted), None)


def cflags(options: ProgramOptions, compat: bool, kernel: list[str] | None = None,
           home: Home | None = None) -> list[str]:
    """The -D flags that configure the program; the constants come from abi, nowhere else.
    kernel: the flags of the kernel-side features (kernel_features()); home: the namespaces
    of options.home, where already read."""
    f = options.filters
    flags = [
        f"-I{BPF_DIR}",
        f"-DRINGBUF_PAGES={options.ringbuf_pages}",
        f"-DPRIORITY_PAGES={priority_pages(options.ringbuf_pages)}",
        f"-DKCMP_EPOLL_TFD={abi.KcmpType.KCMP_EPOLL_TFD.value}",
        f"-DKCMP_FILE_TYPE={abi.KcmpType.KCMP_FILE.value}",
        f"-DKCMP_TYPE_UNKNOWN_BIT={abi.KCMP_TYPES}",
        f"-DEPERM_ERRNO={abi.EPERM}",
    ]
    for wanted, define in ((options.trace, "STREAM_TRACE"), (options.count, "COUNT"),
                           (options.log_eperm, "STREAM_EPERM")):
        if wanted:
            flags.append(f"-D{define}")
    if options.fold_ns and options.streams:
        flags.append(f"-DFOLD_WINDOW_NS={options.fold_ns}ULL")
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
    if options.urgent_only:
        flags.append("-DTRACE_URGENT")
    if options.sweep is not None:
        fds, window_s = options.sweep
        flags += [f"-DSWEEP_FDS={fds}", f"-DSWEEP_WINDOW_NS={round(window_s * 1e9)}ULL"]
    if options.streams or options.count:
        home = home or home_namespaces(options.home)
        flags += [f"-DOWN_PIDNS_DEV={home.pidns_dev}ULL", f"-DOWN_PIDNS_INO={home.pid}ULL",
                  f"-DOWN_MNTNS_INO={home.mnt}", f"-DOWN_NETNS_INO={home.net}"]
    if options.streams:
        flags += [f"-DPROC_TABLE={PROC_TABLE_SIZE}", f"-DCLONE_THREAD_FLAG={abi.CLONE_THREAD}",
                  f"-DCLONE_PARENT_FLAG={abi.CLONE_PARENT}"]
    if compat:
        flags += ["-DCAPTURE_COMPAT", f"-DIA32_NR_KCMP={abi.IA32_NR_KCMP}",
                  f"-DENOSYS_ERRNO={abi.ENOSYS}"]
        if options.compat_entry:
            flags.append("-DCOMPAT_ENTRY")
    if kernel:
        machine = platform.machine()
        flags += kernel + [f"-DNR_KCMP={abi.SYSCALL_NR.get(machine, -1)}",
                           f"-DSECCOMP_MODE_FILTER_VALUE={abi.SECCOMP_MODE_FILTER}",
                           f"-DTHREAD_SIZE_VALUE={abi.THREAD_SIZE.get(machine, 0)}"]
    return flags


def check_kernel(tracefs: str = TRACEFS, modules: str | None = None) -> None:
    """Raise Unavailable naming the first missing piece: tracefs, kcmp tracepoints, headers."""
    if not os.path.isdir(f"{tracefs}/events"):
        raise Unavailable(
            f"tracefs is not mounted at {tracefs}; {SETUP_HINT} "
            f"(or: mount -t tracefs nodev {tracefs})")
    if not os.path.isdir(f"{tracefs}/events/syscalls/sys_enter_kcmp"):
        raise Unavailable(
            "the kernel has no syscalls:sys_enter_kcmp tracepoint: it needs "
            "CONFIG_FTRACE_SYSCALLS and kcmp (CONFIG_KCMP or CONFIG_CHECKPOINT_RESTORE)")
    modules = modules or f"/lib/modules/{os.uname().release}"
    if not os.path.exists(f"{modules}/build"):
        raise Unavailable(
            f"no kernel headers at {modules}/build, which BCC needs to compile; {SETUP_HINT}")


def _kernel_bool(text: str) -> bool | None:
    """A boolean kernel parameter's value as kstrtobool() reads it."""
    word = text.lower()
    if word[:1] in ("y", "1") or word == "on":
        return True
    if word[:1] in ("n", "0") or word[:3] == "off":
        return False
    return None


def no_ia32(config: str = "/proc/config.gz", cmdline: str = "/proc/cmdline") -> str | None:
    """Why this kernel runs no 32-bit code, so that capturing it is left off; None where it
    may (or where neither file says)."""
    try:
        with gzip.open(config, "rt") as f:
            options = set(f.read().splitlines())
    except OSError:
        options = None
    if options is not None and "CONFIG_IA32_EMULATION=y" not in options:
        return "the kernel has no 32-bit emulation (CONFIG_IA32_EMULATION)"
    try:
        with open(cmdline) as f:
            words = f.read().split(" -- ", 1)[0].split()
    except OSError:
        words = []
    given = [_kernel_bool(w.split("=", 1)[1]) for w in words
             if w.startswith("ia32_emulation=")]
    enabled = given[-1] if given else None
    if enabled is False:
        return "32-bit emulation is off (ia32_emulation=0 on the kernel command line)"
    if enabled is None and options is not None and \
            "CONFIG_IA32_EMULATION_DEFAULT_DISABLED=y" in options:
        return "32-bit emulation is off by default (CONFIG_IA32_EMULATION_DEFAULT_DISABLED)"
    return None


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


# The 32-bit hooks: programs that run only with 32-bit capture.
COMPAT_PROGRAMS = ("raw_tracepoint__sys_enter", "raw_tracepoint__sys_exit")
# Kernel-side features given up one at a time while an older verifier refuses the program,
# the costliest to verify first (files walks up to 16 dentries for each of three fds).
SHED_ORDER = ("files", "cgroup", "seccomp", "caller")


def _load(bcc, options: ProgramOptions, compat: bool, kernel: list[str], home: Home):
    """Compile and attach (BCC attaches every probe it finds) or raise Refused."""
    try:
        return bcc.BPF(src_file=str(BPF_SOURCE), cflags=cflags(options, compat, kernel, home))
    except Exception as exc:  # BCC raises bare Exception for compile and attach failures
        text = str(exc)
        named = re.search(r"Failed to (load|attach) BPF program b?'?([A-Za-z0-9_]+)", text)
        raw_attach = text.startswith("Failed to attach BPF to raw tracepoint")
        if named is not None:
            program, verifier = named[2], named[1] == "load"
        else:
            program, verifier = COMPAT_PROGRAMS[1] if raw_attach else None, False
        raise Refused(f"could not load the BPF program: {exc}", program, verifier) from None


def _shed(refused: Refused, compat: bool, on: list[str]) -> str | None:
    """What to do without after the kernel refused the program: a kernel-side feature (where
    the verifier refused it), "compat" (a 32-bit hook that cannot be had), or None (nothing
    left to give up: the core itself is refused)."""
    if refused.verifier:
        feature = next((f for f in SHED_ORDER if f in on), None)
        if feature is not None:
            return feature
    if compat and refused.program in COMPAT_PROGRAMS:
        return "compat"
    return None


class Loaded(NamedTuple):
    bpf: Any  # bcc.BPF, which ships no type hints
    compat: bool
    compat_error: str | None
    on: tuple[str, ...]  # kernel-side features on
    off: dict[str, str]  # and those off, with why


def load(bcc, options: ProgramOptions, compat: bool, resolved: fields.Resolved,
         home: Home) -> Loaded:
    """The program with every feature the kernel takes. The 64-bit capture is the core: what
    the kernel refuses beside it is given up, one feature at a time, and said."""
    on, flags, off = list(resolved.on), list(resolved.flags), dict(resolved.off)
    compat_error = None
    while True:
        try:
            bpf = _load(bcc, options, compat, flags, home)
            return Loaded(bpf, compat, compat_error, tuple(on), off)
        except Refused as exc:
            shed = _shed(exc, compat, on)
            if shed is None:
                raise
            if shed == "compat":
                compat, compat_error = False, f"32-bit capture failed ({exc})"
                continue
            on.remove(shed)
            flags.remove(f"-DKERNEL_{shed.upper()}")
            off[shed] = f"the kernel refused the program with it ({exc})"


class KcmpProgram:
    """The compiled, attached kcmp program; detached by close() or on leaving a with-block."""

    def __init__(self, options: ProgramOptions, tracefs: str = TRACEFS) -> None:
        check_privileges()
        check_kernel(tracefs)
        self.home = home_namespaces(options.home)
        bcc = _import_bcc()
        self.bcc_version = getattr(bcc, "__version__", "unknown")
        self.compat_error: str | None = None
        self.compat = options.compat and abi.is_x86_64()
        if options.compat and not self.compat:
            self.compat_error = f"32-bit capture is x86_64-only (this is {platform.machine()})"
        elif self.compat and (off := no_ia32()):
            # Nothing could make the call: the hook on every syscall would buy nothing.
            self.compat, self.compat_error = False, off
        loaded = load(bcc, options, self.compat, kernel_features(options), self.home)
        self._bpf, self.kernel_on, self.kernel_off = loaded.bpf, loaded.on, loaded.off
        if self.compat and not loaded.compat:
            self.compat, self.compat_error = False, loaded.compat_error
        self._stats = self._bpf["stats"]
        # The kernel's table of tasks, kept while records are streamed (for their context).
        self._nspids = options.streams and "caller" in self.kernel_on
        self.procs = (ProcessTable(self._bpf["procs"],
                                   self._bpf["nspids"] if self._nspids else None)
                      if options.streams else None)
        self._ringbuf_pages = options.ringbuf_pages
        self._readers: list[ringbuf.RingReader] = []  # the priority lane, then the bulk one
        self._poller: select.epoll | None = None
        self._pending: list[bytes] = []  # records BCC's reader handed over, until read()
        self._count = options.count
        self._compat_wanted = options.compat and abi.is_x86_64()
        self.compat_entry = options.compat_entry
        self._streams = options.streams
        self.folds = (Folds(self._bpf["folds"], self._bpf["fold_swept"], options.fold_ns,
                            "files" in self.kernel_on)
                      if options.fold_ns and options.streams else None)
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

    def attached(self) -> dict[str, bool]:
        """Each tracepoint this program was asked to use, and whether it is attached (the
        raw_syscalls pair only when 32-bit capture was asked for: 0 always means a fault)."""
        bpf = self._bpf
        state = {tp: tp.encode() in bpf.tracepoint_fds
                 for tp in ("syscalls:sys_enter_kcmp", "syscalls:sys_exit_kcmp")}
        if self._streams:
            for tp in ("task:task_newtask", "task:task_rename"):
                state[tp] = tp.encode() in bpf.tracepoint_fds
        if self.folds is not None:
            state["sched:sched_process_exit"] = b"sched:sched_process_exit" in bpf.tracepoint_fds
        if self._nspids:
            state["raw:task_newtask"] = b"task_newtask" in bpf.raw_tracepoint_fds
        if self._compat_wanted:
            for name in ("sys_enter", "sys_exit") if self.compat_entry else ("sys_exit",):
                state[f"raw_syscalls:{name}"] = name.encode() in bpf.raw_tracepoint_fds
        return state

    def snapshot(self) -> Snapshot:
        """Every counter, summed over CPUs (needs options.count)."""
        if not self._count:
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
        nr = abi.BPF_SYSCALL_NR.get(platform.machine())
        if nr is None:
            return {}
        libc = ctypes.CDLL(None, use_errno=True)
        result = {}
        for name, fn in self._bpf.funcs.items():
            info = ctypes.create_string_buffer(abi.BPF_PROG_INFO_SIZE)
            attr = struct.pack("<IIQ", fn.fd, abi.BPF_PROG_INFO_SIZE, ctypes.addressof(info))
            attr_buf = ctypes.create_string_buffer(attr, 128)
            if libc.syscall(nr, abi.BPF_OBJ_GET_INFO_BY_FD, attr_buf, 128) != 0:
                continue
            run_ns, runs = struct.unpack_from("<QQ", info, abi.BPF_PROG_INFO_RUN_TIME_NS)
            label = name.decode() if isinstance(name, bytes) else name
            result[label] = (run_ns, runs)
        return result

    def close(self) -> None:
        for reader in self._readers:
            reader.close()
        if self._poller is not None:
            self._poller.close()
        self._bpf.cleanup()

    def __enter__(self) -> KcmpProgram:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
