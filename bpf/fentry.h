/* HOOK_FENTRY (feature "fentry", x86_64, Linux 5.5+ with BTF): kcmp caught on BPF trampolines
 * on the syscall functions themselves instead of the syscall tracepoints: no program runs for
 * any other syscall, and which function fired says whether the caller is 32-bit
 * (__ia32_sys_kcmp, CAPTURE_COMPAT). A call seccomp refuses never reaches them: an fexit on
 * __secure_computing, which runs only for tasks under seccomp, sees each refused kcmp. Needs
 * KERNEL_SECCOMP's saved registers (the row requires it). Included last: it runs the core's
 * on_enter() and on_exit(). */
#ifdef HOOK_FENTRY
/* The user registers the syscall function is handed (the task's saved ones), where the saved
 * syscall number is nr. Read from the task, not from the function's argument: 5.10's BTF knows
 * pt_regs there by name only, and its verifier then lets no program read the argument. */
static __always_inline struct pt_regs *kcmp_regs(u64 nr)
{
	u64 regs = saved_regs(bpf_get_current_task());
	return regs && kread64(regs + BTF_PT_REGS_ORIG_AX) == nr ? (struct pt_regs *)regs : NULL;
}

static __always_inline void fentry_enter(u64 nr, u32 flags)
{
	struct pt_regs *regs = kcmp_regs(nr);
	if (!regs)
		return; /* its exit then has no entry: its arguments unknown (see Limits) */
	if (flags & KCMP_EV_COMPAT)
		on_enter(ARGS32(regs), flags);
	else
		on_enter(ARGS64(regs), flags);
}

/* The fexit programs read the syscall function's result alone (ctx[1], after its argument). */
KFUNC_PROBE(__x64_sys_kcmp)
{
	SAMPLED(KCMP_PROG_FENTRY, fentry_enter(NR_KCMP, 0));
	return 0;
}

KRETFUNC_PROBE(__x64_sys_kcmp)
{
	SAMPLED(KCMP_PROG_FEXIT, on_exit((long)ctx[1], 0, kcmp_regs(NR_KCMP)));
	return 0;
}

#ifdef CAPTURE_COMPAT
KFUNC_PROBE(__ia32_sys_kcmp)
{
	SAMPLED(KCMP_PROG_IA32_FENTRY, fentry_enter(IA32_NR_KCMP, KCMP_EV_COMPAT));
	return 0;
}

KRETFUNC_PROBE(__ia32_sys_kcmp)
{
	SAMPLED(KCMP_PROG_IA32_FEXIT,
		on_exit((long)ctx[1], KCMP_EV_COMPAT, kcmp_regs(IA32_NR_KCMP)));
	return 0;
}
#endif

/* A refused kcmp: __secure_computing returned nonzero (the call is skipped), the saved
 * syscall number is kcmp's for the caller's ABI (thread_info's TS_COMPAT, as the kernel's
 * in_ia32_syscall() asks), and the result the caller gets is in the saved ax. Only those runs
 * are counted and sampled: the others are every syscall of a task under seccomp. */
KRETFUNC_PROBE(__secure_computing)
{
	if (!(int)ctx[1])
		return 0;
	u64 task = bpf_get_current_task();
	u64 regs = saved_regs(task);
	if (!regs)
		return 0;
	u64 nr = kread64(regs + BTF_PT_REGS_ORIG_AX);
	u32 flags = KCMP_EV_SECCOMP;
	struct pt_regs *args = NULL; /* a 64-bit caller's: read_refused() reads them */
	if (kread32(task + BTF_TASK_TI_STATUS) & TS_COMPAT_VALUE) {
#ifdef CAPTURE_COMPAT
		if (nr != IA32_NR_KCMP)
			return 0;
		flags |= KCMP_EV_COMPAT;
		args = (struct pt_regs *)regs;
#else
		return 0;
#endif
	} else if (nr != NR_KCMP) {
		return 0;
	}
	SAMPLED(KCMP_PROG_SECCOMP, on_exit(kread64(regs + BTF_PT_REGS_AX), flags, args));
	return 0;
}
#endif
