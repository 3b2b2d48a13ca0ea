"""Where the running kernel keeps the struct members the program reads, from its BTF.

BCC compiles against whatever headers are installed, which need not be the running kernel's,
and does no CO-RE: a member read at a header's offset could be garbage. So every member the
program reads is looked up by name in /sys/kernel/btf/vmlinux (libbpf's BTF API, through
ctypes: the library BCC itself links) and handed over as a -D flag. A feature whose members
are not all found is off, and says which one was missing: no offset is ever guessed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import NamedTuple

from .. import abi

VMLINUX = "/sys/kernel/btf/vmlinux"

# BTF kinds (<linux/btf.h>) the walk meets.
_STRUCT, _UNION, _ENUM = 4, 5, 6


class BtfMissing(Exception):
    """The kernel's BTF, or a member of it, is not there."""


class _Type(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("info", ctypes.c_uint32),
                ("size_or_type", ctypes.c_uint32)]


class _Enum(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("val", ctypes.c_int32)]


class _Member(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("type", ctypes.c_uint32),
                ("offset", ctypes.c_uint32)]


def _libbpf() -> ctypes.CDLL:
    name = ctypes.util.find_library("bpf") or "libbpf.so.1"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as exc:
        raise BtfMissing(f"libbpf is not installed ({exc})") from None
    lib.btf__parse_raw.restype = ctypes.c_void_p
    lib.btf__parse_raw.argtypes = (ctypes.c_char_p,)
    lib.btf__free.argtypes = (ctypes.c_void_p,)
    lib.btf__find_by_name_kind.restype = ctypes.c_int32
    lib.btf__find_by_name_kind.argtypes = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint32)
    lib.btf__type_by_id.restype = ctypes.POINTER(_Type)
    lib.btf__type_by_id.argtypes = (ctypes.c_void_p, ctypes.c_uint32)
    lib.btf__name_by_offset.restype = ctypes.c_char_p
    lib.btf__name_by_offset.argtypes = (ctypes.c_void_p, ctypes.c_uint32)
    lib.btf__resolve_type.restype = ctypes.c_int32
    lib.btf__resolve_type.argtypes = (ctypes.c_void_p, ctypes.c_uint32)
    lib.btf__resolve_size.restype = ctypes.c_int64
    lib.btf__resolve_size.argtypes = (ctypes.c_void_p, ctypes.c_uint32)
    return lib


class Member(NamedTuple):
    offset: int  # bytes from the start of the outermost struct
    size: int


class Btf:
    """A kernel's BTF, parsed once; closed by close() or on leaving a with-block."""

    def __init__(self, path: str = VMLINUX) -> None:
        self._lib = _libbpf()
        self._btf = self._lib.btf__parse_raw(path.encode())
        if not self._btf:
            err = ctypes.get_errno()
            reason = os.strerror(err) if err else "unreadable"
            raise BtfMissing(f"no kernel BTF at {path}: {reason}")

    def close(self) -> None:
        if self._btf:
            self._lib.btf__free(self._btf)
            self._btf = None

    def __enter__(self) -> Btf:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _struct(self, name: str) -> int:
        for kind in (_STRUCT, _UNION):
            found = self._lib.btf__find_by_name_kind(self._btf, name.encode(), kind)
            if found > 0:
                return found
        raise BtfMissing(f"struct {name}")

    def function(self, name: str) -> int:
        """The BTF id of a kernel function (what an fentry program attaches to)."""
        found = self._lib.btf__find_by_name_kind(self._btf, name.encode(), abi.BTF_KIND_FUNC)
        if found <= 0:
            raise BtfMissing(f"function {name}")
        return int(found)

    def size(self, struct: str) -> int:
        """sizeof(struct name)."""
        return int(self._lib.btf__resolve_size(self._btf, self._struct(struct)))

    def enum_value(self, enum: str, name: str) -> int:
        """The value of enumerator `name` of enum `enum` (a 32-bit one)."""
        lib, btf = self._lib, self._btf
        type_id = lib.btf__find_by_name_kind(btf, enum.encode(), _ENUM)
        if type_id <= 0:
            raise BtfMissing(f"enum {enum}")
        t = lib.btf__type_by_id(btf, type_id).contents
        values = ctypes.cast(ctypes.addressof(t) + ctypes.sizeof(_Type), ctypes.POINTER(_Enum))
        for i in range(t.info & 0xFFFF):
            if lib.btf__name_by_offset(btf, values[i].name_off) == name.encode():
                return int(values[i].val)
        raise BtfMissing(f"{enum}.{name}")

    def member(self, struct: str, path: str) -> Member:
        """The offset and size of struct.path, where path names members of embedded structs
        and unions ("ns.inum", "seccomp.mode"); pointers are not followed."""
        type_id, offset = self._struct(struct), 0
        for name in path.split("."):
            found = self._find(type_id, name.encode())
            if found is None:
                raise BtfMissing(f"{struct}.{path}")
            member_type, bits = found
            offset += bits // 8
            type_id = member_type
        size = self._lib.btf__resolve_size(self._btf, type_id)
        return Member(offset, max(int(size), 0))

    def _find(self, type_id: int, name: bytes) -> tuple[int, int] | None:
        """(type id, bit offset) of a member, looked for in anonymous members too."""
        lib, btf = self._lib, self._btf
        resolved = lib.btf__resolve_type(btf, type_id)
        if resolved < 0:
            return None
        t = lib.btf__type_by_id(btf, resolved).contents
        if (t.info >> 24) & 0x1F not in (_STRUCT, _UNION):
            return None
        members = ctypes.cast(ctypes.addressof(t) + ctypes.sizeof(_Type),
                              ctypes.POINTER(_Member))
        bitfields = bool(t.info >> 31)
        for i in range(t.info & 0xFFFF):
            m = members[i]
            bits = m.offset & 0xFFFFFF if bitfields else m.offset
            if bitfields and m.offset >> 24:
                continue  # a bitfield: not something to read whole
            if m.name_off == 0:  # anonymous struct or union: its members are ours
                inner = self._find(m.type, name)
                if inner is not None:
                    return inner[0], bits + inner[1]
            elif lib.btf__name_by_offset(btf, m.name_off) == name:
                return (m.type, bits) if bits % 8 == 0 else None
        return None
