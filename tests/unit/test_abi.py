import errno

import pytest

from kcmp_monitor import abi


def test_linux_type_values_match_the_kernel_uapi():
    assert {t.name: t.value for t in abi.KcmpType} == {
        "KCMP_FILE": 0, "KCMP_VM": 1, "KCMP_FILES": 2, "KCMP_FS": 3,
        "KCMP_SIGHAND": 4, "KCMP_IO": 5, "KCMP_SYSVSEM": 6, "KCMP_EPOLL_TFD": 7,
    }
    assert abi.KCMP_TYPES == 8


@pytest.mark.parametrize("value", [8, 9, 42, -1, 100, 2**31 - 1, -(2**31)])
def test_kcmp_types_and_anything_else_is_unknown(value):
    assert abi.type_name(value) is None


def test_idx_usage_by_type():
    assert abi.FD_TYPES == {abi.KcmpType.KCMP_FILE, abi.KcmpType.KCMP_EPOLL_TFD}
    assert abi.IDX_IGNORED_TYPES == {1, 2, 3, 4, 5, 6}


@pytest.mark.parametrize("raw, expected", [
    (0xDEADCA75FACE1057, -87158697),  # strace's own test value
    (0xFFFFFFFFFFFFFFFF, -1),
    (0x7FFFFFFF, 2**31 - 1),
    (0x80000000, -(2**31)),
    (0x1_0000_0005, 5),
    (42, 42),
])
def test_pid_and_type_truncate_to_int32(raw, expected):
    assert abi.as_int32(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    (0xFFFFFFFFFFFFFFFF, 0xFFFFFFFF),
    (0x1_0000_0003, 3),
    (3, 3),
])
def test_fds_truncate_to_uint32(raw, expected):
    assert abi.as_uint32(raw) == expected


def test_syscall_numbers():
    assert abi.SYSCALL_NR["x86_64"] == 312
    assert abi.IA32_NR_KCMP == abi.SYSCALL_NR["i386"] == 349
    assert abi.SYSCALL_NR["aarch64"] == abi.SYSCALL_NR["riscv64"] == 272
    assert abi.SYSCALL_NR["arm"] == 378 and abi.SYSCALL_NR["ppc64le"] == 354
    assert abi.SYSCALL_NR["s390x"] == 343


def test_epoll_slot_is_twelve_bytes():
    assert abi.EPOLL_SLOT.size == 12


@pytest.mark.parametrize("ret, meaning", [
    (0, "same"), (1, "less"), (2, "greater"), (3, "unordered"),
    (-1, "error"), (-4095, "error"), (4, "unknown"), (-4096, "unknown"),
])
def test_result_meanings(ret, meaning):
    assert abi.result_meaning(ret) == meaning


@pytest.mark.parametrize("name, message", [
    ("EPERM", "Operation not permitted"),
    ("ENOENT", "No such file or directory"),
    ("ESRCH", "No such process"),
    ("EINTR", "Interrupted system call"),
    ("EBADF", "Bad file descriptor"),
    ("EFAULT", "Bad address"),
    ("EINVAL", "Invalid argument"),
    ("ENOSYS", "Function not implemented"),
    ("EOPNOTSUPP", "Operation not supported"),
])
def test_every_kcmp_errno_has_its_name_and_glibc_message(name, message):
    value = getattr(errno, name)
    assert abi.errno_name(value) == name
    assert abi.errno_message(value) == message


def test_other_errnos_fall_back_to_the_platform_table():
    assert abi.errno_name(errno.ENOMEM) == "ENOMEM"
    assert abi.errno_name(4000) == "E4000"


@pytest.mark.parametrize("text, value", [
    ("FILE", 0), ("kcmp_vm", 1), ("epoll_tfd", 7), ("Sysvsem", 6), ("3", 3), (" io ", 5),
])
def test_parse_type(text, value):
    assert abi.parse_type(text) == value


@pytest.mark.parametrize("text", ["8", "-1", "files2", "", "KCMP_TYPES"])
def test_parse_type_rejects_unknown(text):
    with pytest.raises(ValueError, match="unknown kcmp type"):
        abi.parse_type(text)


def test_bpf_prog_info_offsets_match_the_uapi_header(tmp_path):
    from tests.helpers import c_facts

    facts = c_facts(tmp_path, ["<linux/bpf.h>"], [
        ("cmd", "BPF_OBJ_GET_INFO_BY_FD"),
        ("run_time_ns", "offsetof(struct bpf_prog_info, run_time_ns)"),
        ("run_cnt", "offsetof(struct bpf_prog_info, run_cnt)"),
        ("attr_fd", "offsetof(union bpf_attr, info.bpf_fd)"),
        ("attr_len", "offsetof(union bpf_attr, info.info_len)"),
        ("attr_info", "offsetof(union bpf_attr, info.info)"),
    ])
    assert facts["cmd"] == abi.BPF_OBJ_GET_INFO_BY_FD
    assert facts["run_time_ns"] == abi.BPF_PROG_INFO_RUN_TIME_NS
    assert facts["run_cnt"] == abi.BPF_PROG_INFO_RUN_CNT
    assert abi.BPF_PROG_INFO_SIZE == facts["run_cnt"] + 8
    assert (facts["attr_fd"], facts["attr_len"], facts["attr_info"]) == (0, 4, 8)


def test_the_fexit_probes_attr_matches_the_uapi_header(tmp_path):
    from tests.helpers import c_facts

    facts = c_facts(tmp_path, ["<linux/bpf.h>", "<linux/btf.h>"], [
        ("load", "BPF_PROG_LOAD"), ("open", "BPF_RAW_TRACEPOINT_OPEN"),
        ("tracing", "BPF_PROG_TYPE_TRACING"), ("fexit", "BPF_TRACE_FEXIT"),
        ("func", "BTF_KIND_FUNC"),
        ("attach_type", "offsetof(union bpf_attr, expected_attach_type)"),
        ("btf_id", "offsetof(union bpf_attr, attach_btf_id)"),
        ("prog_fd", "offsetof(union bpf_attr, raw_tracepoint.prog_fd)"),
    ])
    assert (facts["load"], facts["open"]) == (abi.BPF_PROG_LOAD, abi.BPF_RAW_TRACEPOINT_OPEN)
    assert (facts["tracing"], facts["fexit"]) == (abi.BPF_PROG_TYPE_TRACING, abi.BPF_TRACE_FEXIT)
    assert facts["func"] == abi.BTF_KIND_FUNC
    assert facts["attach_type"] == abi.BPF_ATTR_EXPECTED_ATTACH_TYPE
    assert facts["btf_id"] == abi.BPF_ATTR_ATTACH_BTF_ID
    assert facts["prog_fd"] == 8


def test_clone_flags_and_nsfs_ioctl_match_the_uapi_headers(tmp_path):
    from tests.helpers import c_facts

    facts = c_facts(tmp_path, ["<linux/sched.h>", "<linux/nsfs.h>"],
                    [("CLONE_PARENT", "CLONE_PARENT"), ("CLONE_THREAD", "CLONE_THREAD"),
                     ("NS_GET_PARENT", "NS_GET_PARENT")])
    assert facts == {"CLONE_PARENT": abi.CLONE_PARENT, "CLONE_THREAD": abi.CLONE_THREAD,
                     "NS_GET_PARENT": abi.NS_GET_PARENT}


def test_capability_numbers_match_the_uapi_header(tmp_path):
    from tests.helpers import c_facts

    names = ("CAP_DAC_READ_SEARCH", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
             "CAP_SYS_PTRACE", "CAP_SYS_ADMIN", "CAP_PERFMON", "CAP_BPF", "CAP_LAST_CAP")
    facts = c_facts(tmp_path, ["<linux/capability.h>"], [(n, n) for n in names])
    assert facts == {n: getattr(abi, n) for n in names}


def test_only_x86_64_is_x86_64():
    assert abi.is_x86_64("x86_64")
    assert not abi.is_x86_64("aarch64") and not abi.is_x86_64("i686")


def test_file_system_magics_and_seccomp_mode_match_the_uapi_headers(tmp_path):
    from tests.helpers import c_facts

    names = ("PIPEFS_MAGIC", "SOCKFS_MAGIC", "ANON_INODE_FS_MAGIC", "TMPFS_MAGIC",
             "HUGETLBFS_MAGIC", "SECCOMP_MODE_FILTER")
    facts = c_facts(tmp_path, ["<linux/magic.h>", "<linux/seccomp.h>"], [(n, n) for n in names])
    assert facts == {n: getattr(abi, n) for n in names}


@pytest.mark.parametrize("text, inode", [
    ("pid:[4026531836]", 4026531836), ("net:[4026531992]", 4026531992),
    ("pid_for_children:[4026532290]", 4026532290),
    ("4026531836", None), ("pid:[]", None), ("pid:[12x]", None), (":[5]", None),
    ("/proc/5/ns", None),
])
def test_a_namespace_link_gives_its_inode(text, inode):
    assert abi.ns_link_inode(text) == inode
