/* PROC_TABLE (features "proc_table", whenever records are streamed): a table of this many
 * tasks, their parent and name as forked and renamed, so that a caller or target gone by the
 * time its record is read is still known; streamed records carry the caller's parent. With
 * KERNEL_CALLER, also each task's number in its own pid namespace. Needs CLONE_THREAD_FLAG
 * and CLONE_PARENT_FLAG. */
#ifdef PROC_TABLE
/* LRU: bounded, and a process gone long ago gives way to the living. Entries are kept after
 * exit on purpose: that is when user space needs them. */
BPF_TABLE("lru_hash", u32, struct kcmp_proc, procs, PROC_TABLE);

/* A new task: a process's parent is its creator, or with CLONE_PARENT the creator's parent;
 * a thread gets its process's parent (a kcmp target may be a thread). task_newtask is
 * the fork tracepoint that carries the clone flags. */
static __always_inline void new_task(u32 pid, u64 flags, char *comm)
{
	u32 creator = bpf_get_current_pid_tgid() >> 32;
	struct kcmp_proc p = {.ppid = creator};
	if (flags & (CLONE_THREAD_FLAG | CLONE_PARENT_FLAG)) {
		struct kcmp_proc *c = procs.lookup(&creator);
		p.ppid = c ? c->ppid : 0;
	}
	bpf_probe_read_kernel(p.comm, sizeof(p.comm), comm);
	procs.update(&pid, &p);
}

TRACEPOINT_PROBE(task, task_newtask)
{
	SAMPLED(KCMP_PROG_NEWTASK, new_task(args->pid, args->clone_flags, args->comm));
	return 0;
}

#ifdef KERNEL_CALLER
BPF_TABLE("lru_hash", struct kcmp_nspid, u32, nspids, PROC_TABLE);

/* A new task's number in its own pid namespace (the raw tracepoint hands over the task). */
static __always_inline void number_task(u64 task)
{
	u32 level;
	u64 upid = own_upid(kread64(task + BTF_TASK_THREAD_PID), &level);
	struct kcmp_nspid key = {.pidns = ns_inum(kread64(upid + BTF_UPID_NS), BTF_PIDNS_INUM),
				 .nr = kread32(upid + BTF_UPID_NR)};
	u32 host = kread32(task + BTF_TASK_PID);
	nspids.update(&key, &host);
}

RAW_TRACEPOINT_PROBE(task_newtask)
{
	SAMPLED(KCMP_PROG_NEWTASK_RAW, number_task(ctx->args[0]));
	return 0;
}
#endif

/* exec and prctl(PR_SET_NAME) both rename: keep the name a gone process last had. */
static __always_inline void rename_task(u32 pid, char *comm)
{
	struct kcmp_proc *p = procs.lookup(&pid);
	if (p)
		bpf_probe_read_kernel(p->comm, sizeof(p->comm), comm);
}

TRACEPOINT_PROBE(task, task_rename)
{
	SAMPLED(KCMP_PROG_RENAME, rename_task(args->pid, args->newcomm));
	return 0;
}

/* The caller's parent as the table knows it, and whether it is in the monitor's pid
 * namespace (tgid by address: the caller's own variable, as a copy would cost the program a
 * stack slot and a store). */
static __always_inline void stamp_parent(struct kcmp_event *e, u32 *tgid, u32 bits)
{
	struct kcmp_proc *proc = procs.lookup(tgid);
	e->ppid = proc ? proc->ppid : 0;
	if (!(bits & (1 << KCMP_NS_PID)))
		e->flags |= KCMP_EV_OWN_PIDNS;
}
#else
static __always_inline void stamp_parent(struct kcmp_event *e, u32 *tgid, u32 bits)
{
}
#endif
