"""BCC: checks what the kernel offers, compiles bpf/kcmp.bpf.c, attaches it and reads its maps."""

from __future__ import annotations

import ctypes
import os
import platform
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import abi
from .errors import MonitorError, NoPermission, Unavailable

BPF_DIR = Path(__file__).resolve().parent.parent / "bpf"
BPF_SOURCE = BPF_DIR / "kcmp.bpf.c"
TRACEFS = "/sys/kernel/tracing"
SETUP_HINT = "run `sudo make setup`"

CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39


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
    filters: Filters = field(default_factory=Filters)
    ringbuf_pages: int = 256
    compat: bool = True


def compat_supported() -> bool:
    """32-bit callers are caught through x86 pt_regs and the i386 syscall number: x86_64 only."""
    return platform.machine() == "x86_64"


def cflags(options: ProgramOptions, compat: bool) -> list[str]:
    """The -D flags that configure the program; the constants come from abi, nowhere else."""
    f = options.filters
    flags = [
        f"-I{BPF_DIR}",
        f"-DRINGBUF_PAGES={options.ringbuf_pages}",
        f"-DKCMP_EPOLL_TFD={abi.KcmpType.KCMP_EPOLL_TFD.value}",
        f"-DKCMP_TYPE_UNKNOWN_BIT={abi.KCMP_TYPES}",
    ]
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
    if compat:
        flags += ["-DCAPTURE_COMPAT", f"-DIA32_NR_KCMP={abi.IA32_NR_KCMP}",
                  f"-DENOSYS_ERRNO={abi.ENOSYS}"]
    return flags


def check_privileges(status_path: str = "/proc/self/status") -> None:
    """Raise NoPermission unless this process may load and attach tracing programs."""
    try:
        with open(status_path) as status:
            line = next(text for text in status if text.startswith("CapEff:"))
        caps = int(line.split()[1], 16)
    except (OSError, StopIteration, ValueError, IndexError):
        caps = 0
    if caps >> CAP_SYS_ADMIN & 1 or (caps >> CAP_BPF & 1 and caps >> CAP_PERFMON & 1):
        return
    missing = [name for cap, name in ((CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON"))
               if not caps >> cap & 1]
    raise NoPermission(
        f"needs root to load BPF programs (missing {' and '.join(missing)}, "
        "or CAP_SYS_ADMIN); run it with sudo")


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


def _import_bcc():
    try:
        import bcc
    except ImportError:
        raise Unavailable(f"BCC's Python module is missing (python3-bpfcc); {SETUP_HINT}") from None
    return bcc


def _load(bcc, options: ProgramOptions, compat: bool):
    """Compile and attach (BCC attaches every probe it finds) or raise MonitorError."""
    try:
        return bcc.BPF(src_file=str(BPF_SOURCE), cflags=cflags(options, compat))
    except Exception as exc:  # BCC raises bare Exception for compile and attach failures
        raise MonitorError(f"could not load the BPF program: {exc}") from None


class KcmpProgram:
    """The compiled, attached kcmp program; detached by close() or on leaving a with-block."""

    def __init__(self, options: ProgramOptions, tracefs: str = TRACEFS) -> None:
        check_privileges()
        check_kernel(tracefs)
        bcc = _import_bcc()
        self.compat_error: str | None = None
        self.compat = options.compat and compat_supported()
        if options.compat and not self.compat:
            self.compat_error = f"32-bit capture is x86_64-only (this is {platform.machine()})"
        try:
            self._bpf = _load(bcc, options, self.compat)
        except MonitorError as exc:
            if not self.compat:
                raise
            # The 64-bit capture is the core: keep it, and say what was lost.
            self.compat_error = f"32-bit capture failed ({exc})"
            self.compat = False
            self._bpf = _load(bcc, options, False)
        self._stats = self._bpf["stats"]

    def open_events(self, callback: Callable[[bytes], None]) -> None:
        def on_record(_ctx, data, size):
            callback(ctypes.string_at(data, size))

        self._bpf["events"].open_ring_buffer(on_record)

    def poll(self, timeout_ms: int) -> None:
        self._bpf.ring_buffer_poll(timeout_ms)

    def stat(self, index: int) -> int:
        """A counter of the stats map, summed over CPUs."""
        return int(self._stats.sum(self._stats.Key(index)).value)

    def close(self) -> None:
        self._bpf.cleanup()

    def __enter__(self) -> KcmpProgram:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
