"""Whether this kernel lets BPF trampolines (fentry/fexit) attach to the functions the fentry
hooks need: an empty fexit program is loaded for each and attached, then closed. Asked of the
kernel, not guessed: a kernel may have BTF and trampolines and still refuse them (lockdown)."""

from __future__ import annotations

import ctypes
import os
import struct

from .. import abi
from . import bpfcall
from .btf import VMLINUX, Btf, BtfMissing
from .probes import no_ia32

# r0 = 0; exit
_EMPTY = bytes.fromhex("b700000000000000" "9500000000000000")
_LICENSE = b"GPL\0"


# kcmp's access check on each task it is handed (ptrace_may_access() asks the security hooks
# last): a modify-return program may refuse it on any kernel with trampolines, since the
# kernel allows one on every security_ function (and on error-injectable functions only where
# CONFIG_FUNCTION_ERROR_INJECTION is set, which Debian's kernels do not set).
ACCESS_CHECK = ("security_ptrace_access_check",)


def functions() -> tuple[str, ...]:
    """What the fentry hooks attach to: the 64-bit kcmp, the seccomp check that may refuse it
    first, and the 32-bit kcmp where this kernel runs 32-bit code."""
    x64 = ("__x64_sys_kcmp", "__secure_computing")
    return x64 + (("__ia32_sys_kcmp",) if no_ia32() is None else ())


def _attach(btf_id: int) -> None:
    insns = ctypes.create_string_buffer(_EMPTY, len(_EMPTY))
    license = ctypes.create_string_buffer(_LICENSE, len(_LICENSE))
    attr = ctypes.create_string_buffer(abi.BPF_ATTR_SIZE)
    struct.pack_into("<IIQQ", attr, 0, abi.BPF_PROG_TYPE_TRACING, len(_EMPTY) // 8,
                     ctypes.addressof(insns), ctypes.addressof(license))
    struct.pack_into("<I", attr, abi.BPF_ATTR_EXPECTED_ATTACH_TYPE, abi.BPF_TRACE_FEXIT)
    struct.pack_into("<I", attr, abi.BPF_ATTR_ATTACH_BTF_ID, btf_id)
    prog = bpfcall.bpf(abi.BPF_PROG_LOAD, attr)
    try:
        attach = ctypes.create_string_buffer(abi.BPF_ATTR_SIZE)
        struct.pack_into("<QI", attach, 0, 0, prog)
        os.close(bpfcall.bpf(abi.BPF_RAW_TRACEPOINT_OPEN, attach))
    finally:
        os.close(prog)


def refused(names: tuple[str, ...] | None = None, path: str = VMLINUX) -> str | None:
    """Why BPF trampolines cannot be had on these functions here; None where they can."""
    if not abi.is_x86_64() or not bpfcall.available():
        return "the fentry hooks are built for x86_64's syscall functions"
    try:
        with Btf(path) as btf:
            ids = {name: btf.function(name) for name in names or functions()}
    except BtfMissing as exc:
        return f"the kernel's BTF lacks what fentry needs: {exc}"
    for name, btf_id in ids.items():
        try:
            _attach(btf_id)
        except OSError as exc:
            return f"the kernel refused an fexit program on {name} ({exc.strerror})"
    return None
