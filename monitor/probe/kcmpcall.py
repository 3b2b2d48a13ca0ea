"""kcmp(2) called directly, through syscall(2): no BPF needed, works wherever kcmp does."""

from __future__ import annotations

import ctypes
import platform
from typing import Protocol

from .. import abi


class KcmpError(OSError):
    """kcmp returned -1; .errno says why."""

    errno: int  # always set: raised with one


class KcmpFn(Protocol):
    def __call__(self, pid1: int, pid2: int, kcmp_type: int, idx1: int = 0,
                 idx2: int = 0) -> int: ...


def make_kcmp(machine: str | None = None) -> KcmpFn:
    """A kcmp(pid1, pid2, type, idx1, idx2) for this machine: returns 0, 1, 2 (or 3) and
    raises KcmpError for an error, as the raw syscall reports it."""
    nr = abi.SYSCALL_NR.get(machine or platform.machine())
    if nr is None:
        raise KcmpError(abi.ENOSYS, f"no kcmp syscall number known for {machine}")
    libc = ctypes.CDLL(None, use_errno=True)
    syscall = libc.syscall
    syscall.restype = ctypes.c_long
    args = (ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_ulong,
            ctypes.c_ulong)
    syscall.argtypes = args

    def kcmp(pid1: int, pid2: int, kcmp_type: int, idx1: int = 0, idx2: int = 0) -> int:
        ret = syscall(nr, pid1, pid2, kcmp_type, idx1, idx2)
        if ret < 0:
            err = ctypes.get_errno()
            raise KcmpError(err, abi.errno_message(err))
        return ret

    return kcmp


def epoll_slot(efd: int, tfd: int, toff: int) -> ctypes.Array:
    """struct kcmp_epoll_slot in memory, for KCMP_EPOLL_TFD's idx2 (keep it alive)."""
    return ctypes.create_string_buffer(abi.EPOLL_SLOT.pack(efd, tfd, toff),
                                       abi.EPOLL_SLOT.size)
