"""What the program is asked to be: the kernel-side filters and modes, as the run plan gives
them."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..policy.types import Policy
from .btf import VMLINUX

# Where kcmp is caught (features "fentry"): auto takes fentry where the kernel allows it.
HOOK_KINDS = ("auto", "fentry", "tracepoint")


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
    hooks: str = "auto"  # one of HOOK_KINDS
    policy: Policy | None = None  # decided in the kernel at each call's entry
    enforce: bool = False  # its actions carried out (else a dry run: the calls only marked)

    @property
    def streams(self) -> bool:
        """Records reach user space: they get context, so the process table is kept."""
        return self.trace or self.log_eperm or self.policy is not None

    @property
    def denies(self) -> bool:
        """Calls are to be refused at kcmp's access check, where the kernel allows it."""
        return self.enforce and self.policy is not None and self.policy.denies


def priority_pages(ringbuf_pages: int) -> int:
    """The priority lane's ring: a quarter of the bulk one's (a power of two too)."""
    return max(1, ringbuf_pages // 4)
