"""The kernel struct members bpf/kcmp.bpf.c reads, by feature (features.FEATURES' rows with btf),
resolved from the running kernel's BTF into the -D flags (BTF_<NAME>=<offset>) the program reads
them with.

A feature is on only when every member it reads is found with the size expected; otherwise it
is off, and the reason names the member. Sizes are checked because a member that changed type
(a pointer become an array, an int become a long) would be read wrong at the right offset.
"""

from __future__ import annotations

from typing import NamedTuple

from .. import abi
from .btf import Btf, BtfMissing

P = 8  # a pointer, on the 64-bit machines this program runs on

# feature -> {flag name: (struct, member path, size; None: any)}
MEMBERS: dict[str, dict[str, tuple[str, str, int | None]]] = {
    # The caller as the kernel sees it at the call: namespaces, pids, parent, creds, executable.
    "caller": {
        "TASK_NSPROXY": ("task_struct", "nsproxy", P),
        "TASK_THREAD_PID": ("task_struct", "thread_pid", P),
        "TASK_GROUP_LEADER": ("task_struct", "group_leader", P),
        "TASK_REAL_PARENT": ("task_struct", "real_parent", P),
        "TASK_TGID": ("task_struct", "tgid", 4),
        "TASK_PID": ("task_struct", "pid", 4),
        "TASK_REAL_CRED": ("task_struct", "real_cred", P),
        "TASK_CRED": ("task_struct", "cred", P),
        "TASK_MM": ("task_struct", "mm", P),
        "NSPROXY_UTS": ("nsproxy", "uts_ns", P),
        "NSPROXY_IPC": ("nsproxy", "ipc_ns", P),
        "NSPROXY_MNT": ("nsproxy", "mnt_ns", P),
        "NSPROXY_NET": ("nsproxy", "net_ns", P),
        "NSPROXY_CGROUP": ("nsproxy", "cgroup_ns", P),
        "UTS_INUM": ("uts_namespace", "ns.inum", 4),
        "IPC_INUM": ("ipc_namespace", "ns.inum", 4),
        "MNT_INUM": ("mnt_namespace", "ns.inum", 4),
        "NET_INUM": ("net", "ns.inum", 4),
        "CGROUP_INUM": ("cgroup_namespace", "ns.inum", 4),
        "PIDNS_INUM": ("pid_namespace", "ns.inum", 4),
        "USERNS_INUM": ("user_namespace", "ns.inum", 4),
        "PID_LEVEL": ("pid", "level", 4),
        "PID_NUMBERS": ("pid", "numbers", None),  # a flexible array of struct upid
        "UPID_NR": ("upid", "nr", 4),
        "UPID_NS": ("upid", "ns", P),
        "CRED_UID": ("cred", "uid", 4),
        "CRED_GID": ("cred", "gid", 4),
        "CRED_EUID": ("cred", "euid", 4),
        "CRED_EGID": ("cred", "egid", 4),
        "CRED_CAP_EFFECTIVE": ("cred", "cap_effective", 8),
        "CRED_USER_NS": ("cred", "user_ns", P),
        "MM_EXE_FILE": ("mm_struct", "exe_file", P),
        "FILE_INODE": ("file", "f_inode", P),
        "FILE_DENTRY": ("file", "f_path.dentry", P),
        "INODE_INO": ("inode", "i_ino", 8),
        "DENTRY_NAME_LEN": ("dentry", "d_name.len", 4),
        "DENTRY_NAME": ("dentry", "d_name.name", P),
    },
    # The tasks pid1 and pid2 name (needs "caller"): the caller's pid namespace's IDR walked
    # to the struct pid and its task, and what is recorded of that task.
    "targets": {
        "PIDNS_IDR_HEAD": ("pid_namespace", "idr.idr_rt.xa_head", P),
        "PIDNS_IDR_BASE": ("pid_namespace", "idr.idr_base", 4),
        "XA_NODE_SHIFT": ("xa_node", "shift", 1),
        "XA_NODE_SLOTS": ("xa_node", "slots", None),  # XA_CHUNK_SIZE pointers (shape())
        "PID_TASKS": ("pid", "tasks", None),  # hlist_heads by pid type, PIDTYPE_PID first
        "TASK_PID_LINKS": ("task_struct", "pid_links", None),  # hlist_nodes, the same
        "TASK_FLAGS": ("task_struct", "flags", 4),
        "TASK_EXIT_STATE": ("task_struct", "exit_state", 4),
        "TASK_COMM": ("task_struct", "comm", 16),
    },
    # The policy's conditions on the caller (needs "caller"): its executable's device, and
    # whether it is a kernel thread.
    "policy": {
        "TASK_FLAGS": ("task_struct", "flags", 4),
        "INODE_SB": ("inode", "i_sb", P),
        "SB_DEV": ("super_block", "s_dev", 4),
    },
    # The fds named by the call (needs "caller"): the file, its file system, and its path by a
    # walk of dentries and mounts up to the caller's root.
    "files": {
        "TASK_FS": ("task_struct", "fs", P),
        "FS_ROOT_MNT": ("fs_struct", "root.mnt", P),
        "FS_ROOT_DENTRY": ("fs_struct", "root.dentry", P),
        "TASK_FILES": ("task_struct", "files", P),
        "FILES_FDT": ("files_struct", "fdt", P),
        "FDT_MAX_FDS": ("fdtable", "max_fds", 4),
        "FDT_FD": ("fdtable", "fd", P),
        "FILE_MNT": ("file", "f_path.mnt", P),
        "INODE_SB": ("inode", "i_sb", P),
        "SB_DEV": ("super_block", "s_dev", 4),
        "SB_MAGIC": ("super_block", "s_magic", 8),
        "DENTRY_PARENT": ("dentry", "d_parent", P),
        "DENTRY_HASH_PPREV": ("dentry", "d_hash.pprev", P),
        "DENTRY_OP": ("dentry", "d_op", P),
        "DOPS_DNAME": ("dentry_operations", "d_dname", P),
        "VFSMOUNT_ROOT": ("vfsmount", "mnt_root", P),
        "MOUNT_MNT": ("mount", "mnt", None),  # struct vfsmount, embedded
        "MOUNT_PARENT": ("mount", "mnt_parent", P),
        "MOUNT_MOUNTPOINT": ("mount", "mnt_mountpoint", P),
    },
    # The caller's cgroup at the call (needs "caller"): the name of its kernfs node (the leaf
    # of its path, where a container's id is), in the v1 hierarchy of a controller where one
    # is mounted (-DCGROUP_V1_SUBSYS, the controller's id), else in the v2 one.
    "cgroup": {
        "TASK_CGROUPS": ("task_struct", "cgroups", P),
        "CSS_SET_DFL_CGRP": ("css_set", "dfl_cgrp", P),
        "CSS_SET_SUBSYS": ("css_set", "subsys", None),  # an array of pointers, by id
        "CSS_CGROUP": ("cgroup_subsys_state", "cgroup", P),
        "CGROUP_KN": ("cgroup", "kn", P),
        "KERNFS_NAME": ("kernfs_node", "name", P),
    },
    # A call refused before entry (by seccomp): its arguments from the saved user registers at
    # the top of the task's kernel stack, and whether the task runs under a seccomp filter.
    "seccomp": {
        "TASK_STACK": ("task_struct", "stack", P),
        "TASK_SECCOMP_MODE": ("task_struct", "seccomp.mode", 4),
        "TASK_TI_STATUS": ("task_struct", "thread_info.status", 4),  # TS_COMPAT (fentry)
        "PT_REGS_AX": ("pt_regs", "ax", 8),  # a refused call's result (fentry)
        "PT_REGS_DI": ("pt_regs", "di", 8),
        "PT_REGS_SI": ("pt_regs", "si", 8),
        "PT_REGS_DX": ("pt_regs", "dx", 8),
        "PT_REGS_R10": ("pt_regs", "r10", 8),
        "PT_REGS_R8": ("pt_regs", "r8", 8),
        "PT_REGS_ORIG_AX": ("pt_regs", "orig_ax", 8),
    },
}
# Whole-struct sizes a feature needs, as (flag name, struct).
SIZES = {"caller": (("UPID_SIZE", "upid"),), "seccomp": (("PT_REGS_SIZE", "pt_regs"),)}


class Resolved(NamedTuple):
    flags: dict[str, list[str]]  # feature -> its BTF_<NAME> flags, for those found
    off: dict[str, str]  # feature -> why it cannot be had (what the BTF lacks)


def resolve(path: str | None = None, features: tuple[str, ...] = tuple(MEMBERS),
            cgroup_v1: str | None = None) -> Resolved:
    """The flags of every feature whose members the kernel's BTF has; path: a BTF file other
    than the running kernel's (for tests); cgroup_v1: the controller whose v1 hierarchy the
    "cgroup" feature reads ("pids"), None for the v2 one."""
    try:
        btf = Btf(path) if path else Btf()
    except BtfMissing as exc:
        return Resolved({}, dict.fromkeys(features, str(exc)))
    flags: dict[str, list[str]] = {}
    off: dict[str, str] = {}
    with btf:
        for feature in features:
            try:
                found = [f"-DBTF_{name}={_offset(btf, *where)}"
                         for name, where in MEMBERS[feature].items()]
                found += [f"-DBTF_{name}={btf.size(struct)}"
                          for name, struct in SIZES.get(feature, ())]
                if feature == "targets":
                    found += _tree_shape(btf)
                if feature == "cgroup" and cgroup_v1 is not None:
                    found.append("-DCGROUP_V1_SUBSYS="
                                 f"{btf.enum_value('cgroup_subsys_id', f'{cgroup_v1}_cgrp_id')}")
            except BtfMissing as exc:
                off[feature] = f"the kernel's BTF has no {exc}"
                continue
            flags[feature] = found
    return Resolved(flags, off)


def _tree_shape(btf: Btf) -> list[str]:
    """XA_CHUNK_SHIFT (the index bits a node of the IDR resolves: its slots' count, a power of
    two) and IDR_LEVELS (the nodes a walk to the highest pid passes)."""
    slots = btf.member("xa_node", "slots").size // P
    shift = slots.bit_length() - 1
    if shift <= 0 or slots != 1 << shift:
        raise BtfMissing(f"xa_node.slots of a power of two pointers (it has {slots})")
    levels = -(-(abi.PID_MAX_LIMIT - 1).bit_length() // shift)
    return [f"-DXA_CHUNK_SHIFT={shift}", f"-DIDR_LEVELS={levels}"]


def _offset(btf: Btf, struct: str, path: str, size: int | None) -> int:
    member = btf.member(struct, path)
    if size is not None and member.size != size:
        raise BtfMissing(f"{struct}.{path} of {size} bytes (it has {member.size})")
    return member.offset
