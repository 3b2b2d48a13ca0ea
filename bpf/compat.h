/* CAPTURE_COMPAT (features "compat", x86_64): 32-bit (int 0x80) calls, on the raw syscall
 * tracepoints; COMPAT_ENTRY ("compat_entry") hooks their entry too. Needs IA32_NR_KCMP and
 * ENOSYS_ERRNO. Included last: it runs the core's on_enter() and on_exit(). Under HOOK_FENTRY
 * the 32-bit calls are caught on __ia32_sys_kcmp instead (fentry.h). */
#if defined(CAPTURE_COMPAT) && !defined(HOOK_FENTRY)
/* The per-syscall tracepoints skip compat calls, so 32-bit kcmp is caught on the raw syscall
 * tracepoints, which fire for every syscall on the machine: the number test comes first.
 * On x86_64 the i386 number IA32_NR_KCMP is unassigned, so a 64-bit caller using it always
 * gets -ENOSYS, and a 32-bit kcmp never does (this kernel has kcmp, or its tracepoints would
 * be missing). Neither the code segment (a 64-bit process may use int 0x80) nor the task's
 * compat flag (behind a kernel struct) tells them apart at entry, so the exit decides. By
 * default only the exit is hooked (one program per syscall, not two): the arguments are still
 * in the registers there; COMPAT_ENTRY adds the entry, for the duration and the slot as it
 * was at entry. */
#ifdef COMPAT_ENTRY
RAW_TRACEPOINT_PROBE(sys_enter)
{
	if (ctx->args[1] != IA32_NR_KCMP)
		return 0;
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	SAMPLED(KCMP_PROG_RAW_ENTER, on_enter(ARGS32(regs), KCMP_EV_COMPAT));
	return 0;
}
#endif

static __always_inline void compat_exit(struct pt_regs *regs, s64 ret)
{
	if (ret == -ENOSYS_ERRNO) {
#ifdef COMPAT_ENTRY
		u32 tid = (u32)bpf_get_current_pid_tgid();
		inflight.delete(&tid);
#endif
		return;
	}
	on_exit(ret, KCMP_EV_COMPAT, regs);
}

/* Only its runs for the 32-bit kcmp number are counted and sampled: counting the others, one
 * each syscall of the machine, would add to every syscall's cost. */
RAW_TRACEPOINT_PROBE(sys_exit)
{
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	long nr = 0;
	bpf_probe_read_kernel(&nr, sizeof(nr), &regs->orig_ax);
	if (nr != IA32_NR_KCMP)
		return 0;
	SAMPLED(KCMP_PROG_RAW_EXIT, compat_exit(regs, ctx->args[1]));
	return 0;
}
#endif
