"""What this kernel offers, asked before the program is built: tracefs and the kcmp tracepoints,
headers, 32-bit emulation, the cgroup layout."""

from __future__ import annotations

import functools
import gzip
import os
import platform

from .. import abi
from ..errors import Unavailable

TRACEFS = "/sys/kernel/tracing"
SETUP_HINT = "run `sudo make setup`"


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


@functools.cache  # the compat row and the trampolines both ask; neither file changes
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


def no_compat() -> str | None:
    """Why 32-bit callers cannot be captured here; None where they can."""
    if not abi.is_x86_64():
        return f"32-bit capture is x86_64-only (this is {platform.machine()})"
    return no_ia32()


def no_seccomp() -> str | None:
    """Why the saved registers of a refused call cannot be read here; None where they can."""
    if not abi.is_x86_64():
        return f"saved registers are read on x86_64 only (this is {platform.machine()})"
    return None
