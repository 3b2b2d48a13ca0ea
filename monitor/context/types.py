"""Who made a call and whom it named, beyond the kernel's record: the values the context readers
fill and the sinks read (named tuples: several are made per event)."""

from __future__ import annotations

from typing import NamedTuple, Protocol

from ..policy.types import Enforcement

# The kinds of boundary a call can cross, in the order they are reported.
BOUNDARIES = ("pid", "mnt", "net", "container")


class Caller(NamedTuple):
    """Who made the call, beyond what the kernel's record says (None: not readable)."""

    ns_pid: int | None  # the caller's pid as its own pid namespace numbers it
    ns_tid: int | None
    host_ppid: int | None
    ns_ppid: int | None  # 0 when the parent lies outside the caller's pid namespace
    pidns: int | None  # namespace inodes (need ptrace access to the caller)
    mntns: int | None
    container_id: str | None  # "" for none; None when the cgroup could not be read
    exe: str | None
    netns: int | None = None
    netns_name: str | None = None  # as `ip netns` names it
    depth: int | None = None  # how many pid namespaces deep (entries of NSpid:)
    gone: bool = False  # had exited: what is known came from the event and the process table
    # What only the kernel's record gives (None: the program read no kernel context).
    userns: int | None = None
    utsns: int | None = None
    ipcns: int | None = None
    cgroupns: int | None = None
    euid: int | None = None
    egid: int | None = None
    caps: int | None = None  # effective capabilities, a bit per CAP_*
    exe_name: bytes | None = None  # the executable's file name, and its inode
    exe_inode: int | None = None
    exe_bits: int | None = None  # 32 or 64: its ELF class, read while it lives

    @property
    def from_kernel(self) -> bool:
        """Read from the kernel at the call, rather than from /proc afterwards."""
        return self.caps is not None


class Target(NamedTuple):
    """A process named by pid1 or pid2, as the host sees it (None: not readable)."""

    host_pid: int
    name: bytes | None
    uid: int | None  # effective
    host_ppid: int | None
    pidns: int | None
    mntns: int | None
    netns: int | None
    netns_name: str | None
    container_id: str | None
    gone: bool = False  # had exited by the time the event was read
    # What only the kernel's record of the call gives (None, False: it read no targets).
    real_uid: int | None = None
    exiting: bool = False  # exiting, or a zombie, at the call


class ContainerInfo(NamedTuple):
    """A container as its runtime names it; the pod fields from the kubelet's labels."""

    name: str
    image: str | None
    image_id: str | None
    pod_name: str | None = None
    pod_namespace: str | None = None
    pod_uid: str | None = None


class Containers(Protocol):
    """What names containers (context.runtime.ContainerRuntime): it never waits."""

    def get(self, container_id: str | None) -> ContainerInfo | None: ...


class Context(NamedTuple):
    """What was learnt about an event beyond the kernel's record."""

    # "idx1", "idx2", "efd", "tfd" -> the fd's path as `strace -y` shows it, where resolvable.
    paths: dict[str, str] = {}  # shared by the contexts with no paths, and never mutated
    # Whether the caller was in the monitor's pid namespace (the kernel says, at the call).
    same_pidns: bool | None = None
    # For a caller in another pid namespace: the host pids of pid1 and pid2, where found.
    host_pids: tuple[int | None, ...] | None = None
    caller: Caller | None = None  # set by the enricher; None only where nothing was read
    # pid1's and pid2's processes (each None where not found); None when not looked up.
    targets: tuple[Target | None, Target | None] | None = None
    crossings: tuple[str, ...] = ()  # the BOUNDARIES between the caller and a target
    unresolved: tuple[str, ...] = ()  # "caller", "pid1", "pid2": existed, but not found
    enforcement: Enforcement | None = None  # what the policy made of the call

    @property
    def owners(self) -> tuple[int | None, int | None] | None:
        """The effective uids of pid1's and pid2's processes, where known."""
        if self.targets is None:
            return None
        t1, t2 = self.targets
        return (t1.uid if t1 is not None else None, t2.uid if t2 is not None else None)


def crossings(caller: Caller, targets: tuple[Target | None, ...]) -> tuple[str, ...]:
    """The boundaries between the caller and any target, where both sides are known."""
    found = []
    for kind, field in zip(BOUNDARIES, ("pidns", "mntns", "netns", "container_id")):
        mine = getattr(caller, field)
        if mine is not None and any(
                t is not None and getattr(t, field) is not None and getattr(t, field) != mine
                for t in targets):
            found.append(kind)
    return tuple(found)
