/* KERNEL_CALLER (features "caller"): the caller as the kernel sees it at the call, read from
 * its task at the offsets BTF_* the feature table resolved: namespaces, pids in its own pid
 * namespace, parent, credentials, executable (and, with KERNEL_CGROUP, its cgroup). */
#include "cgroup.h"

#ifdef KERNEL_CALLER
/* The deepest pid namespace a task can be in (MAX_PID_NS_LEVEL is 32). */
#define PID_LEVELS 32

static __always_inline u32 ns_inum(u64 ns, u32 inum_offset)
{
	return ns ? kread32(ns + inum_offset) : 0;
}

/* The struct upid of a struct pid at a level: its number there and that namespace. */
static __always_inline u64 upid_at(u64 pid, u32 level)
{
	return pid + BTF_PID_NUMBERS + (u64)level * BTF_UPID_SIZE;
}

/* The upid of a struct pid in the deepest namespace it is in: the task's own (that of
 * task_active_pid_ns, not nsproxy's pid_ns_for_children). */
static __always_inline u64 own_upid(u64 pid, u32 *level)
{
	u32 deepest = kread32(pid + BTF_PID_LEVEL);
	*level = deepest < PID_LEVELS ? deepest : PID_LEVELS - 1;
	return upid_at(pid, *level);
}

/* The number of a struct pid at a level, if the pid reaches that deep into that namespace. */
static __always_inline u32 pid_nr_at(u64 pid, u32 level, u64 ns)
{
	if (!pid || kread32(pid + BTF_PID_LEVEL) < level)
		return 0;
	u64 upid = upid_at(pid, level);
	return kread64(upid + BTF_UPID_NS) == ns ? kread32(upid + BTF_UPID_NR) : 0;
}

static __always_inline void read_task(struct kcmp_task *t, struct caller_ns *ns)
{
	u64 task = bpf_get_current_task();
	u64 nsproxy = ns->nsproxy;
	t->mntns = ns->mntns;
	t->netns = ns->netns;
	if (nsproxy) {
		t->utsns = ns_inum(kread64(nsproxy + BTF_NSPROXY_UTS), BTF_UTS_INUM);
		t->ipcns = ns_inum(kread64(nsproxy + BTF_NSPROXY_IPC), BTF_IPC_INUM);
		t->cgroupns = ns_inum(kread64(nsproxy + BTF_NSPROXY_CGROUP), BTF_CGROUP_INUM);
	}
	u32 level;
	u64 upid = own_upid(kread64(task + BTF_TASK_THREAD_PID), &level);
	u64 pidns = kread64(upid + BTF_UPID_NS);
	ns->pidns = pidns;
	t->pidns = ns_inum(pidns, BTF_PIDNS_INUM);
	t->pid_level = level;
	t->ns_tid = kread32(upid + BTF_UPID_NR);
	u64 leader = kread64(task + BTF_TASK_GROUP_LEADER);
	t->ns_pid = pid_nr_at(kread64(leader + BTF_TASK_THREAD_PID), level, pidns);
	u64 parent = kread64(task + BTF_TASK_REAL_PARENT);
	t->ppid = kread32(parent + BTF_TASK_TGID);
	u64 parent_leader = kread64(parent + BTF_TASK_GROUP_LEADER);
	t->ns_ppid = pid_nr_at(kread64(parent_leader + BTF_TASK_THREAD_PID), level, pidns);

	u64 real = kread64(task + BTF_TASK_REAL_CRED);
	t->uid = kread32(real + BTF_CRED_UID);
	t->gid = kread32(real + BTF_CRED_GID);
	u64 cred = kread64(task + BTF_TASK_CRED);
	t->euid = kread32(cred + BTF_CRED_EUID);
	t->egid = kread32(cred + BTF_CRED_EGID);
	t->cap_effective = kread64(cred + BTF_CRED_CAP_EFFECTIVE);
	t->userns = ns_inum(kread64(cred + BTF_CRED_USER_NS), BTF_USERNS_INUM);

	u64 exe = kread64(kread64(task + BTF_TASK_MM) + BTF_MM_EXE_FILE);
	if (exe) {
		t->exe_ino = kread64(kread64(exe + BTF_FILE_INODE) + BTF_INODE_INO);
		u64 dentry = kread64(exe + BTF_FILE_DENTRY);
		t->exe_name_len = kread32(dentry + BTF_DENTRY_NAME_LEN);
		bpf_probe_read_kernel_str(t->exe_name, sizeof(t->exe_name),
					  (void *)kread64(dentry + BTF_DENTRY_NAME));
	}
	read_cgroup(t->cgroup, task);
}

/* The caller's mount and network namespaces, which the counts and the record share: bits with
 * those of the monitor's it is not in added. */
static __always_inline u32 caller_namespaces(struct caller_ns *ns, u32 bits)
{
	u64 nsproxy = kread64(bpf_get_current_task() + BTF_TASK_NSPROXY);
	ns->nsproxy = nsproxy;
	if (nsproxy) {
		ns->mntns = ns_inum(kread64(nsproxy + BTF_NSPROXY_MNT), BTF_MNT_INUM);
		ns->netns = ns_inum(kread64(nsproxy + BTF_NSPROXY_NET), BTF_NET_INUM);
		if (ns->mntns != OWN_MNTNS_INO)
			bits |= 1 << KCMP_NS_MNT;
		if (ns->netns != OWN_NETNS_INO)
			bits |= 1 << KCMP_NS_NET;
	}
	return bits;
}

static __always_inline void read_caller(struct kcmp_record *r, struct caller_ns *ns)
{
	read_task(&r->task, ns);
	r->event.flags |= KCMP_EV_TASK;
}
#else
static __always_inline u32 caller_namespaces(struct caller_ns *ns, u32 bits)
{
	return bits;
}

static __always_inline void read_caller(struct kcmp_record *r, struct caller_ns *ns)
{
}
#endif
