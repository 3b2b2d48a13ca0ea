/* KERNEL_SECCOMP (features "seccomp", x86_64): a call refused before entry (by seccomp) has
 * no entry record; its arguments are taken from the user registers saved at the top of the
 * task's kernel stack, and the task's seccomp mode says whether a filter refused it. */
#ifdef KERNEL_SECCOMP
/* The user registers saved at syscall entry sit at the top of the task's kernel stack.
 * THREAD_SIZE is not in BTF: the saved syscall number must be kcmp's, or nothing is taken. */
static __always_inline void read_regs(struct kcmp_event *e)
{
	u64 task = bpf_get_current_task();
	u64 regs = kread64(task + BTF_TASK_STACK);
	if (!regs)
		return;
	regs += THREAD_SIZE_VALUE - BTF_PT_REGS_SIZE;
	if (kread64(regs + BTF_PT_REGS_ORIG_AX) != NR_KCMP)
		return;
	e->pid1 = kread64(regs + BTF_PT_REGS_DI);
	e->pid2 = kread64(regs + BTF_PT_REGS_SI);
	e->type = kread64(regs + BTF_PT_REGS_DX);
	e->idx1 = kread64(regs + BTF_PT_REGS_R10);
	e->idx2 = kread64(regs + BTF_PT_REGS_R8);
	e->flags |= KCMP_EV_REGS;
	read_slot(e);
}

/* A call without entry: its arguments from the saved registers (a 64-bit caller's), and
 * whether the caller runs under a seccomp filter that may have refused it. */
static __always_inline void read_refused(struct kcmp_event *before, struct pt_regs *compat_regs)
{
	if (!compat_regs)
		read_regs(before);
#if !defined(COMPAT_ENTRY)
	if (compat_regs) /* a 32-bit call never has an entry here: refused or not, it cannot say */
		return;
#endif
	u64 task = bpf_get_current_task();
	if ((before->flags & KCMP_EV_REGS) &&
	    kread32(task + BTF_TASK_SECCOMP_MODE) == SECCOMP_MODE_FILTER_VALUE)
		before->flags |= KCMP_EV_SECCOMP;
}
#else
static __always_inline void read_refused(struct kcmp_event *before, struct pt_regs *compat_regs)
{
}
#endif
