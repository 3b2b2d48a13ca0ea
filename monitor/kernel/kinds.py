"""Which kind of call a record is, by the rules of bpf/kinds.h: the kernel applies them to the
records it streams, user space to the folded runs it streams itself (tests/unit/test_kinds.py
compiles the C and holds these to it)."""

from __future__ import annotations

from .. import abi
from .events import EV_COMPAT, EV_ENTRY, EV_REGS, EV_SECCOMP

_NAMING_FILES = (abi.KcmpType.KCMP_FILE, abi.KcmpType.KCMP_EPOLL_TFD)
# What urgent_call() takes, and what the priority lane carries besides, as people read it.
URGENT = "permission failures, seccomp refusals, 32-bit calls, calls from other namespaces"
PRIORITY_LANE = f"{URGENT}, counted fd sweeps, each process's first call"


def urgent_call(flags: int, ret: int, outside: int) -> bool:
    """The priority lane's kinds of call: a permission failure, a 32-bit call, a seccomp
    refusal, a caller outside one of the monitor's namespaces (outside: their bits)."""
    return ret == -abi.EPERM or bool(flags & (EV_COMPAT | EV_SECCOMP)) or outside != 0


def names_files(flags: int, kcmp_type: int) -> bool:
    """A call that names fds whose arguments are known (its record has room for them)."""
    return bool(flags & (EV_ENTRY | EV_REGS)) and kcmp_type in _NAMING_FILES
