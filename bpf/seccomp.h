/* KERNEL_SECCOMP (features "seccomp", x86_64): a call refused before entry (by seccomp) has
 * no entry record; its arguments are taken from the user registers saved at the top of the
 * task's kernel stack. On the syscall tracepoints the task's seccomp mode says whether a filter
 * may have refused it; under HOOK_FENTRY the fexit on __secure_computing (fentry.h) sees the
 * refusal itself. */
#ifdef KERNEL_SECCOMP
/* The user registers saved at syscall entry, at the top of the task's kernel stack (0 where
 * the task has none). THREAD_SIZE is not in BTF: the callers check the saved syscall number. */
static __always_inline u64 saved_regs(u64 task)
{
	u64 stack = kread64(task + BTF_TASK_STACK);
	return stack ? stack + THREAD_SIZE_VALUE - BTF_PT_REGS_SIZE : 0;
}

/* A 64-bit caller's arguments, if the saved syscall number is kcmp's. */
static __always_inline void read_regs(struct kcmp_event *e)
{
	u64 regs = saved_regs(bpf_get_current_task());
	if (!regs || kread64(regs + BTF_PT_REGS_ORIG_AX) != NR_KCMP)
		return;
	e->pid1 = kread64(regs + BTF_PT_REGS_DI);
	e->pid2 = kread64(regs + BTF_PT_REGS_SI);
	e->type = kread64(regs + BTF_PT_REGS_DX);
	e->idx1 = kread64(regs + BTF_PT_REGS_R10);
	e->idx2 = kread64(regs + BTF_PT_REGS_R8);
	e->flags |= KCMP_EV_REGS;
	read_slot(e);
}

#ifdef HOOK_FENTRY
/* A call without entry: a 64-bit one the seccomp hook saw refused (it has no registers to
 * hand), or one the syscall function's hook was handed the registers of. */
static __always_inline void read_refused(struct kcmp_event *before, struct pt_regs *regs)
{
	if (!regs)
		read_regs(before);
}
#else
/* A call without entry: its arguments from the saved registers (a 64-bit caller's), and
 * whether the caller runs under a seccomp filter that may have refused it. */
static __always_inline void read_refused(struct kcmp_event *before, struct pt_regs *regs)
{
	if (!regs)
		read_regs(before);
#if !defined(COMPAT_ENTRY)
	if (regs) /* a 32-bit call never has an entry here: refused or not, it cannot say */
		return;
#endif
	u64 task = bpf_get_current_task();
	if ((before->flags & KCMP_EV_REGS) &&
	    kread32(task + BTF_TASK_SECCOMP_MODE) == SECCOMP_MODE_FILTER_VALUE)
		before->flags |= KCMP_EV_SECCOMP;
}
#endif
#else
static __always_inline void read_refused(struct kcmp_event *before, struct pt_regs *regs)
{
}
#endif
