"""The BTF resolver against the running kernel's BTF (checked by bpftool, a second reader) and
against small BTF files written with libbpf, one member short or of the wrong size."""

import ctypes
import os
import re
import shutil
import subprocess

import pytest

from kcmp_monitor.kernel import fields
from kcmp_monitor.kernel.btf import VMLINUX, Btf, BtfMissing
from tests.helpers import skip_or_fail


@pytest.fixture(scope="module")
def bpftool_members():
    """(struct, member) -> byte offset of every direct member, as bpftool reads the BTF."""
    if not os.path.exists(VMLINUX):
        skip_or_fail(f"the kernel has no BTF at {VMLINUX}")
    if not shutil.which("bpftool"):
        skip_or_fail("needs bpftool (run `sudo make setup`)")
    raw = subprocess.run(["bpftool", "btf", "dump", "file", VMLINUX, "format", "raw"],
                         check=True, capture_output=True, text=True).stdout
    found, struct = {}, None
    for line in raw.splitlines():
        head = re.match(r"\[\d+\] (STRUCT|UNION) '(\w+)'", line)
        if head:
            struct = head.group(2)
            continue
        if line.startswith("["):
            struct = None
            continue
        member = re.match(r"\s+'(\w+)' type_id=\d+ bits_offset=(\d+)", line)
        if struct and member and (struct, member.group(1)) not in found:
            found[(struct, member.group(1))] = int(member.group(2)) // 8
    return found


def test_every_member_the_program_reads_is_found_on_this_kernel(bpftool_members):
    resolved = fields.resolve()
    assert tuple(resolved.flags) == tuple(fields.MEMBERS) and resolved.off == {}
    flags = dict(f[2:].split("=") for found in resolved.flags.values() for f in found)
    with Btf() as btf:
        for feature in fields.MEMBERS.values():
            for name, (struct, path, size) in feature.items():
                member = btf.member(struct, path)
                assert flags[f"BTF_{name}"] == str(member.offset)
                assert size is None or member.size == size, (struct, path)
                if "." not in path and (struct, path) in bpftool_members:
                    assert bpftool_members[(struct, path)] == member.offset, (struct, path)
        assert btf.size("pt_regs") == 21 * 8 and btf.size("upid") == 16


def test_members_of_anonymous_and_embedded_structs(bpftool_members):
    with Btf() as btf:
        ns = btf.member("net", "ns")
        assert btf.member("net", "ns.inum").offset == ns.offset + btf.member("ns_common",
                                                                              "inum").offset
        # dentry.d_name is a const struct qstr in an anonymous union after d_parent, and qstr
        # keeps len in an anonymous struct inside an anonymous union.
        d_name = bpftool_members[("dentry", "d_parent")] + 8
        assert btf.member("dentry", "d_name").offset == d_name
        assert btf.member("qstr", "len") == (4, 4)
        assert btf.member("dentry", "d_name.len") == (d_name + 4, 4)
        with pytest.raises(BtfMissing, match="task_struct.no_such_member"):
            btf.member("task_struct", "no_such_member")
        with pytest.raises(BtfMissing, match="struct no_such_struct"):
            btf.member("no_such_struct", "x")


def _write_btf(path, members):
    """A BTF file with one struct task_struct of these (name, size in bytes) members."""
    lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
    lib.btf__new_empty.restype = ctypes.c_void_p
    lib.btf__add_int.argtypes = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int)
    lib.btf__add_struct.argtypes = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint32)
    lib.btf__add_field.argtypes = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                                   ctypes.c_uint32, ctypes.c_uint32)
    lib.btf__raw_data.restype = ctypes.c_void_p
    lib.btf__raw_data.argtypes = (ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32))
    lib.btf__free.argtypes = (ctypes.c_void_p,)
    btf = lib.btf__new_empty()
    ints = {size: lib.btf__add_int(btf, f"u{size * 8}".encode(), size, 0) for size in (4, 8)}
    total = sum(size for _, size in members)
    lib.btf__add_struct(btf, b"task_struct", total)
    offset = 0
    for name, size in members:
        assert lib.btf__add_field(btf, name.encode(), ints[size], offset * 8, 0) == 0
        offset += size
    length = ctypes.c_uint32()
    data = lib.btf__raw_data(btf, ctypes.byref(length))
    path.write_bytes(ctypes.string_at(data, length.value))
    lib.btf__free(btf)


def test_a_member_missing_turns_its_feature_off_and_says_which(tmp_path):
    path = tmp_path / "vmlinux"
    _write_btf(path, [("stack", 8), ("tgid", 4), ("pad", 4)])
    resolved = fields.resolve(str(path))
    assert resolved.flags == {}
    assert resolved.off["caller"] == "the kernel's BTF has no task_struct.nsproxy"
    assert resolved.off["seccomp"] == "the kernel's BTF has no task_struct.seccomp.mode"


def test_a_member_of_another_size_is_refused(tmp_path):
    path = tmp_path / "vmlinux"
    _write_btf(path, [("nsproxy", 8), ("thread_pid", 8), ("group_leader", 8),
                      ("real_parent", 8), ("tgid", 8)])
    reason = fields.resolve(str(path), ("caller",)).off["caller"]
    assert reason == "the kernel's BTF has no task_struct.tgid of 4 bytes (it has 8)"


def test_no_btf_at_all(tmp_path):
    resolved = fields.resolve(str(tmp_path / "missing"))
    assert resolved.flags == {}
    assert resolved.off == dict.fromkeys(fields.MEMBERS, f"no kernel BTF at {tmp_path}/missing: "
                                         "No such file or directory")
