"""Capabilities: whether this process may load tracing programs, and dropping every one it no
longer needs once they are attached (capset(2), prctl(2) via libc; numbers from abi)."""

from __future__ import annotations

import ctypes
import logging
import os
import struct

from .abi import (CAP_BPF, CAP_DAC_READ_SEARCH, CAP_LAST_CAP, CAP_PERFMON, CAP_SETPCAP,
                  CAP_SYS_ADMIN, CAP_SYS_PTRACE)
from .errors import MonitorError, NoPermission

log = logging.getLogger(__name__)

NAMES = {CAP_DAC_READ_SEARCH: "CAP_DAC_READ_SEARCH", CAP_SYS_PTRACE: "CAP_SYS_PTRACE",
         CAP_BPF: "CAP_BPF", CAP_PERFMON: "CAP_PERFMON"}

_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4


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
    missing = [NAMES[cap] for cap in (CAP_BPF, CAP_PERFMON) if not caps >> cap & 1]
    raise NoPermission(
        f"needs root to load BPF programs (missing {' and '.join(missing)}, "
        "or CAP_SYS_ADMIN); run it with sudo")


def needed_after_attach(trace: bool, kernel_release: str | None = None) -> set[int]:
    """What the running monitor still uses.

    - Map reads at scrape time: none since Linux 6.5 (unprivileged_bpf_disabled then guards
      only loading); CAP_BPF before.
    - fd paths in /proc/<pid>/fd of another user's process (the console and JSON):
      CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH (the directory is mode 0500), both needed.
    - Detaching, polling the ring buffer, /proc/<pid>/status: none.
    """
    release = kernel_release or os.uname().release
    major, minor = (int(x) for x in release.split(".")[:2])
    keep = set() if (major, minor) >= (6, 5) else {CAP_BPF}
    if trace:
        keep |= {CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH}
    return keep


def drop_all_but(keep: set[int]) -> None:
    """Clear every other capability: bounding set, ambient, effective, permitted, inheritable."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in range(CAP_LAST_CAP + 1):
        if cap not in keep and cap != CAP_SETPCAP:
            libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)  # EINVAL for caps this kernel lacks
    libc.prctl(_PR_CAPBSET_DROP, CAP_SETPCAP, 0, 0, 0)
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    mask = sum(1 << cap for cap in keep)
    header = struct.pack("<Ii", _LINUX_CAPABILITY_VERSION_3, 0)
    low, high = mask & 0xFFFFFFFF, mask >> 32
    data = struct.pack("<6I", low, low, 0, high, high, 0)  # effective, permitted, inheritable
    if libc.capset(header, data) != 0:
        err = ctypes.get_errno()
        raise MonitorError(f"could not drop capabilities: {os.strerror(err)}")


def drop_after_attach(trace: bool) -> set[int]:
    """Keep only what the attached monitor still uses, and say what that is."""
    keep = needed_after_attach(trace)
    drop_all_but(keep)
    log.info("capabilities after attach: %s",
             ", ".join(sorted(NAMES[c] for c in keep)) or "none")
    return keep
