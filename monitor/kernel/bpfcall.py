"""The bpf(2) system call, for what BCC does not expose: a program's run statistics, and the
fexit program that asks whether BPF trampolines work here."""

from __future__ import annotations

import ctypes
import os
import platform

from .. import abi

_libc = ctypes.CDLL(None, use_errno=True)
_NR = abi.BPF_SYSCALL_NR.get(platform.machine())


def available() -> bool:
    return _NR is not None


def bpf(cmd: int, attr: ctypes.Array) -> int:
    """bpf(cmd, attr): its result, or OSError with the kernel's errno."""
    if _NR is None:
        raise OSError(0, f"bpf(2) is not known on {platform.machine()}")
    result = _libc.syscall(_NR, cmd, attr, len(attr))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(result)
