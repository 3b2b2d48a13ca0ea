"""Dropping capabilities once the programs are attached (capset(2), prctl(2) via libc)."""

from __future__ import annotations

import ctypes
import os
import struct

from .errors import MonitorError

CAP_DAC_READ_SEARCH = 2
CAP_SETPCAP = 8
CAP_SYS_PTRACE = 19
CAP_BPF = 39
CAP_LAST = 40
NAMES = {CAP_DAC_READ_SEARCH: "CAP_DAC_READ_SEARCH", CAP_SYS_PTRACE: "CAP_SYS_PTRACE",
         CAP_BPF: "CAP_BPF"}

_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4


def needed_after_attach(trace: bool, kernel_release: str | None = None) -> set[int]:
    """What the running daemon still uses.

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
    for cap in range(CAP_LAST + 1):
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

