/* KERNEL_TARGETS (features "targets", needs KERNEL_CALLER): the tasks pid1 and pid2 name, found
 * at the call the way kcmp finds them (find_task_by_vpid(): the caller's pid namespace's IDR, a
 * radix tree, to the struct pid, then its PIDTYPE_PID task), and recorded: host pids, parent,
 * credentials, namespaces, name and (KERNEL_CGROUP) cgroup; files.h reads their fds. The tree's
 * shape from BTF: XA_CHUNK_SHIFT, the bits of an index one node resolves, and IDR_LEVELS, the
 * nodes a walk to any pid up to PID_MAX_LIMIT passes. Without it, only the caller's own process
 * or thread is known as a task. */
#ifdef KERNEL_TARGETS
#ifndef KERNEL_CALLER
#error "KERNEL_TARGETS looks pids up in the caller's pid namespace, which KERNEL_CALLER reads"
#endif
#define XA_CHUNK_SIZE (1 << XA_CHUNK_SHIFT)

static __always_inline u8 kread8(u64 addr)
{
	u8 v;
	bpf_probe_read_kernel(&v, sizeof(v), (void *)addr);
	return v;
}

/* A pointer to a node of the tree: tagged 2 in its low bits, and above the small internal
 * entries (retry, zero) that carry the same tag (the kernel's xa_is_node()). */
static __always_inline bool xa_node_entry(u64 entry)
{
	return (entry & 3) == 2 && entry > 4096;
}

/* The task the caller's pid namespace (pidns, at depth level) numbers nr, or 0. */
static __always_inline u64 task_by_vpid(u64 pidns, u32 level, s32 nr)
{
	if (nr <= 0 || !pidns)
		return 0;
	u64 index = (u32)nr - kread32(pidns + BTF_PIDNS_IDR_BASE);
	u64 entry = kread64(pidns + BTF_PIDNS_IDR_HEAD);
	if (!xa_node_entry(entry) && index) /* a tree of one entry holds index 0 alone */
		return 0;
#pragma unroll
	for (int i = 0; i < IDR_LEVELS; i++) {
		if (!xa_node_entry(entry))
			break;
		u64 node = entry - 2;
		u64 offset = index >> (kread8(node + BTF_XA_NODE_SHIFT) & 63);
		if (i == 0 && offset >= XA_CHUNK_SIZE) /* above the tree's highest index */
			return 0;
		entry = kread64(node + BTF_XA_NODE_SLOTS + (offset & (XA_CHUNK_SIZE - 1)) * sizeof(u64));
	}
	/* Empty, a number being allocated, or a tree deeper than the walk: no task. */
	if (!entry || (entry & 3) || pid_nr_at(entry, level, pidns) != (u32)nr)
		return 0;
	u64 first = kread64(entry + BTF_PID_TASKS); /* tasks[PIDTYPE_PID].first */
	return first ? first - BTF_TASK_PID_LINKS : 0;
}

static __always_inline void read_target(struct kcmp_target *t, u64 task)
{
	t->flags = KCMP_TARGET_FOUND;
	if ((kread32(task + BTF_TASK_FLAGS) & PF_EXITING_VALUE) ||
	    kread32(task + BTF_TASK_EXIT_STATE))
		t->flags |= KCMP_TARGET_EXITING;
	t->pid = kread32(task + BTF_TASK_PID);
	t->tgid = kread32(task + BTF_TASK_TGID);
	t->ppid = kread32(kread64(task + BTF_TASK_REAL_PARENT) + BTF_TASK_TGID);
	t->uid = kread32(kread64(task + BTF_TASK_REAL_CRED) + BTF_CRED_UID);
	t->euid = kread32(kread64(task + BTF_TASK_CRED) + BTF_CRED_EUID);
	u32 level;
	u64 upid = own_upid(kread64(task + BTF_TASK_THREAD_PID), &level);
	t->pidns = ns_inum(kread64(upid + BTF_UPID_NS), BTF_PIDNS_INUM);
	u64 nsproxy = kread64(task + BTF_TASK_NSPROXY); /* none once it has exited */
	if (nsproxy) {
		t->mntns = ns_inum(kread64(nsproxy + BTF_NSPROXY_MNT), BTF_MNT_INUM);
		t->netns = ns_inum(kread64(nsproxy + BTF_NSPROXY_NET), BTF_NET_INUM);
	}
	bpf_probe_read_kernel_str(t->comm, sizeof(t->comm), (void *)(task + BTF_TASK_COMM));
	read_cgroup(t->cgroup, task);
}

/* The task a pid names: the calling thread itself without a walk (its number there is the one
 * KERNEL_CALLER read), else the tree's. */
static __always_inline u64 named_task(struct kcmp_task *caller, u64 pidns, u32 level, s32 nr)
{
	if (nr == (s32)caller->ns_tid)
		return bpf_get_current_task();
	return task_by_vpid(pidns, level, nr);
}

/* The tasks a call with known arguments named (0: none), recorded; looked up in the caller's
 * pid namespace, which read_task() read with its depth. */
static __always_inline void find_targets(struct kcmp_record *r, struct caller_ns *ns,
					 u64 *task1, u64 *task2)
{
	struct kcmp_event *e = &r->event;
	u64 pidns = ns->pidns;
	u32 level = r->task.pid_level;
	s32 pid1 = (s32)e->pid1, pid2 = (s32)e->pid2;
	*task1 = named_task(&r->task, pidns, level, pid1);
	if (*task1)
		read_target(&r->targets[0], *task1);
	if (pid2 == pid1) {
		*task2 = *task1;
		r->targets[1] = r->targets[0];
	} else {
		*task2 = named_task(&r->task, pidns, level, pid2);
		if (*task2)
			read_target(&r->targets[1], *task2);
	}
	e->flags |= KCMP_EV_TARGETS;
}
#else
/* The caller's own process or thread, as its pid namespace numbers them (KERNEL_CALLER). */
static __always_inline void find_targets(struct kcmp_record *r, struct caller_ns *ns,
					 u64 *task1, u64 *task2)
{
#ifdef KERNEL_CALLER
	u64 task = bpf_get_current_task();
	s32 pid1 = (s32)r->event.pid1, pid2 = (s32)r->event.pid2;
	s32 pid = (s32)r->task.ns_pid, tid = (s32)r->task.ns_tid;
	*task1 = pid1 == pid || pid1 == tid ? task : 0;
	*task2 = pid2 == pid || pid2 == tid ? task : 0;
#endif
}
#endif
