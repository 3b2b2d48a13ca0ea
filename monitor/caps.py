"""Capabilities: whether this process may load tracing programs, and dropping every one it no
longer needs once they are attached (capset(2), prctl(2) via libc; numbers from abi)."""

from __future__ import annotations

import ctypes
import logging
import os
import pwd
import struct
import threading

from .abi import (CAP_BPF, CAP_DAC_READ_SEARCH, CAP_LAST_CAP, CAP_PERFMON, CAP_SETGID,
                  CAP_SETPCAP, CAP_SETUID, CAP_SYS_ADMIN, CAP_SYS_PTRACE)
from .errors import MonitorError, NoPermission

log = logging.getLogger(__name__)

NAMES = {CAP_DAC_READ_SEARCH: "CAP_DAC_READ_SEARCH", CAP_SYS_PTRACE: "CAP_SYS_PTRACE",
         CAP_BPF: "CAP_BPF", CAP_PERFMON: "CAP_PERFMON"}

_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_PR_SET_KEEPCAPS = 8
_PR_SET_NO_NEW_PRIVS = 38
UNPRIVILEGED = "nobody"


def effective(status_path: str = "/proc/self/status") -> int:
    """This process's effective capabilities, as a mask (0 where they cannot be read)."""
    try:
        with open(status_path) as status:
            line = next(text for text in status if text.startswith("CapEff:"))
        return int(line.split()[1], 16)
    except (OSError, StopIteration, ValueError, IndexError):
        return 0


def check_privileges(status_path: str = "/proc/self/status") -> None:
    """Raise NoPermission unless this process may load and attach tracing programs."""
    caps = effective(status_path)
    if caps >> CAP_SYS_ADMIN & 1 or (caps >> CAP_BPF & 1 and caps >> CAP_PERFMON & 1):
        return
    missing = [NAMES[cap] for cap in (CAP_BPF, CAP_PERFMON) if not caps >> cap & 1]
    raise NoPermission(
        f"needs root to load BPF programs (missing {' and '.join(missing)}, "
        "or CAP_SYS_ADMIN); run it with sudo")


def needed_after_attach(trace: bool, kernel_release: str | None = None) -> set[int]:
    """What the running monitor still uses.

    - Map reads at scrape time: none since Linux 5.19 (unprivileged_bpf_disabled then guards
      only loading); CAP_BPF before (measured: 5.10 refuses a lookup without it, 6.1 not).
    - fd paths in /proc/<pid>/fd of another user's process (the console and JSON):
      CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH (the directory is mode 0500), both needed.
    - Detaching, polling the ring buffer, /proc/<pid>/status: none.
    """
    release = kernel_release or os.uname().release
    major, minor = (int(x) for x in release.split(".")[:2])
    keep = set() if (major, minor) >= (5, 19) else {CAP_BPF}
    if trace:
        keep |= {CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH}
    return keep


def _capset(libc, caps: set[int]) -> None:
    mask = sum(1 << cap for cap in caps)
    header = struct.pack("<Ii", _LINUX_CAPABILITY_VERSION_3, 0)
    low, high = mask & 0xFFFFFFFF, mask >> 32
    data = struct.pack("<6I", low, low, 0, high, high, 0)  # effective, permitted, inheritable
    if libc.capset(header, data) != 0:
        err = ctypes.get_errno()
        raise MonitorError(f"could not drop capabilities: {os.strerror(err)}")


def drop_all_but(keep: set[int], hold: frozenset[int] | set[int] = frozenset()) -> None:
    """Clear every other capability: bounding set, ambient, effective, permitted, inheritable.
    hold: kept in effect a little longer (not in the bounding set), for a change of user."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in range(CAP_LAST_CAP + 1):
        if cap not in keep and cap != CAP_SETPCAP:
            libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)  # EINVAL for caps this kernel lacks
    libc.prctl(_PR_CAPBSET_DROP, CAP_SETPCAP, 0, 0, 0)
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    _capset(libc, keep | hold)


def unprivileged_user() -> tuple[str, int, int]:
    """The user the attached exporter becomes: nobody (nogroup), or 65534 where none is."""
    try:
        entry = pwd.getpwnam(UNPRIVILEGED)
        return entry.pw_name, entry.pw_uid, entry.pw_gid
    except KeyError:
        return UNPRIVILEGED, 65534, 65534


def _become(uid: int, gid: int, keep: set[int]) -> None:
    """Change user with keep still in effect (a change from root clears the effective set,
    and without PR_SET_KEEPCAPS the permitted one too)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_KEEPCAPS, 1, 0, 0, 0)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    libc.prctl(_PR_SET_KEEPCAPS, 0, 0, 0, 0)
    _capset(libc, keep)


def unreadable_unprivileged(paths: tuple[str, ...]) -> list[str]:
    """Those of paths the unprivileged user could not read (asked of the kernel, as that user,
    in a child: modes, ACLs and security modules all have their say)."""
    _, uid, gid = unprivileged_user()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child only
        try:
            os.close(read)
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            os.write(write, bytes(0 if os.access(p, os.R_OK) else 1 for p in paths))
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        verdicts = f.read()
    os.waitpid(child, 0)
    if len(verdicts) != len(paths):
        return list(paths)
    return [p for p, bad in zip(paths, verdicts) if bad]


def drop_after_attach(trace: bool, stay_root: str | None = None,
                      rereads: tuple[str, ...] = ()) -> set[int]:
    """Keep only what the attached monitor still uses, and say what that is. The exporter
    (no --trace, no --context) also leaves root for an unprivileged user: it reads only its
    maps and world-readable /proc files (stay_root: unless it says why not, e.g. an event
    file, whose rotation makes files as root did; or one of the files it rereads, such as a
    rotated key, is one that user may not read). The console and --context stay root with only
    CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH: other users' /proc/<pid>/fd and namespaces are
    read through them, as root's are. Either way no_new_privs: nothing it runs can gain any."""
    if threading.active_count() > 1:
        # capset(2) and prctl(2) change the calling thread alone: one started before would
        # keep every capability root has (or, changing user, none of those kept).
        raise RuntimeError("capabilities are dropped before any thread is started")
    keep = needed_after_attach(trace)
    # A user change needs CAP_SETUID and CAP_SETGID, which a unit's bounding set may leave out.
    caps = effective()
    can_change = all(caps >> cap & 1 for cap in (CAP_SETUID, CAP_SETGID))
    become = not trace and not stay_root and os.geteuid() == 0 and can_change
    unreadable = unreadable_unprivileged(rereads) if become and rereads else []
    if unreadable:
        become = False
        stay_root = f"it re-reads {unreadable[0]}, which {UNPRIVILEGED} may not read"
    drop_all_but(keep, {CAP_SETUID, CAP_SETGID} if become else set())
    user = None
    if become:
        name, uid, gid = unprivileged_user()
        _become(uid, gid, keep)
        user = f"{name} ({uid}:{gid})"
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if user is None and not trace and os.geteuid() == 0:
        user = f"root: {stay_root or 'no CAP_SETUID and CAP_SETGID to leave it'}"
    log.info("capabilities after attach: %s%s, no_new_privs",
             ", ".join(sorted(NAMES[c] for c in keep)) or "none",
             f"; running as {user}" if user else "")
    return keep
