/* kcmp(2) capture: pairs each call's entry and exit per thread and streams one record per call.
 * Configured by -D flags from monitor/loader.py:
 *   KCMP_EPOLL_TFD, KCMP_TYPE_UNKNOWN_BIT, IA32_NR_KCMP, ENOSYS_ERRNO   from monitor/abi.py
 *   RINGBUF_PAGES      ring buffer size in pages (power of two)
 *   FILTER_TGID        keep only this caller process
 *   FILTER_UID         keep only this caller uid
 *   FILTER_COMM_LO/HI  keep only callers whose comm is these 16 bytes (little-endian u64s)
 *   TYPE_MASK          keep only types whose bit is set (bit KCMP_TYPE_UNKNOWN_BIT: unknown)
 *   ERRORS_ONLY        keep only calls that returned an error
 *   CAPTURE_COMPAT     x86_64: also capture 32-bit (int 0x80) calls through raw_syscalls
 * Only tracepoint fields, helpers and user memory are read, plus pt_regs registers on the
 * compat path, whose layout is the ptrace ABI: no kernel struct offset from mismatched headers
 * is ever used. */
#include <uapi/linux/ptrace.h>
#include "kcmp.h"

#define MAX_INFLIGHT 16384

BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
BPF_HASH(inflight, u32, struct kcmp_event, MAX_INFLIGHT);
BPF_PERCPU_ARRAY(stats, u64, KCMP_STAT_COUNT);

static __always_inline void count(u32 stat)
{
	u64 *v = stats.lookup(&stat);
	if (v)
		(*v)++;
}

static __always_inline bool caller_wanted(void)
{
#ifdef FILTER_TGID
	if ((bpf_get_current_pid_tgid() >> 32) != FILTER_TGID)
		return false;
#endif
#ifdef FILTER_UID
	if ((u32)bpf_get_current_uid_gid() != FILTER_UID)
		return false;
#endif
#ifdef FILTER_COMM_LO
	u64 comm[2] = {};
	bpf_get_current_comm(comm, sizeof(comm));
	if (comm[0] != FILTER_COMM_LO || comm[1] != FILTER_COMM_HI)
		return false;
#endif
	return true;
}

static __always_inline bool type_wanted(s32 type)
{
#ifdef TYPE_MASK
	u32 bit = (type >= 0 && type < KCMP_TYPE_UNKNOWN_BIT) ? type : KCMP_TYPE_UNKNOWN_BIT;
	return (TYPE_MASK >> bit) & 1;
#else
	return true;
#endif
}

static __always_inline void on_enter(u64 pid1, u64 pid2, u64 type, u64 idx1, u64 idx2, u32 flags)
{
	if (!caller_wanted() || !type_wanted((s32)type))
		return;

	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct kcmp_event e = {};
	e.ts_ns = bpf_ktime_get_ns();
	e.pid1 = pid1;
	e.pid2 = pid2;
	e.type = type;
	e.idx1 = idx1;
	e.idx2 = idx2;
	e.flags = flags | KCMP_EV_ENTRY;
	/* The slot lives in the caller's memory and may change after the call: copy it now. */
	if ((s32)type == KCMP_EPOLL_TFD) {
		u32 slot[3];
		if (bpf_probe_read_user(slot, sizeof(slot), (void *)idx2) == 0) {
			e.slot_efd = slot[0];
			e.slot_tfd = slot[1];
			e.slot_toff = slot[2];
			e.flags |= KCMP_EV_SLOT_READ;
		} else {
			e.flags |= KCMP_EV_SLOT_FAULT;
		}
	}
	if (inflight.update(&tid, &e) != 0)
		count(KCMP_STAT_INFLIGHT);
}

static __always_inline void on_exit(s64 ret, u32 flags)
{
	u64 pid_tgid = bpf_get_current_pid_tgid();
	u32 tid = (u32)pid_tgid;
	struct kcmp_event *entry = inflight.lookup(&tid);

	/* An exit without an entry is a call seccomp refused (or one whose entry was not kept). */
	if (!entry) {
#ifdef TYPE_MASK
		return;
#endif
		if (!caller_wanted())
			return;
	}
#ifdef ERRORS_ONLY
	if (ret >= 0) {
		if (entry)
			inflight.delete(&tid);
		return;
	}
#endif
	u64 now = bpf_ktime_get_ns();
	struct kcmp_event *e = events.ringbuf_reserve(sizeof(struct kcmp_event));
	if (!e) {
		count(KCMP_STAT_DROPPED);
		if (entry)
			inflight.delete(&tid);
		return;
	}
	if (entry) {
		*e = *entry;
		e->duration_ns = now - entry->ts_ns;
		inflight.delete(&tid);
	} else {
		__builtin_memset(e, 0, sizeof(*e));
		e->ts_ns = now;
		e->flags = flags;
	}
	u64 uid_gid = bpf_get_current_uid_gid();
	e->ret = ret;
	e->tgid = pid_tgid >> 32;
	e->tid = tid;
	e->uid = (u32)uid_gid;
	e->gid = uid_gid >> 32;
	e->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	events.ringbuf_submit(e, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_kcmp)
{
	on_enter(args->pid1, args->pid2, args->type, args->idx1, args->idx2, 0);
	return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_kcmp)
{
	on_exit(args->ret, 0);
	return 0;
}

#ifdef CAPTURE_COMPAT
/* The per-syscall tracepoints skip compat calls, so 32-bit kcmp is caught on the raw syscall
 * tracepoints, which fire for every syscall on the machine: the number test comes first.
 * On x86_64 the i386 number IA32_NR_KCMP is unassigned, so a 64-bit caller using it always
 * gets -ENOSYS, and a 32-bit kcmp never does (this kernel has kcmp, or its tracepoints would
 * be missing). Neither the code segment (a 64-bit process may use int 0x80) nor the task's
 * compat flag (behind a kernel struct) tells them apart at entry, so the exit decides. */
static __always_inline u64 reg32(unsigned long *reg)
{
	unsigned long v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), reg);
	return (u32)v;
}

RAW_TRACEPOINT_PROBE(sys_enter)
{
	if (ctx->args[1] != IA32_NR_KCMP)
		return 0;
	/* i386 argument order: ebx, ecx, edx, esi, edi; the kernel uses the low 32 bits. */
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	on_enter(reg32(&regs->bx), reg32(&regs->cx), reg32(&regs->dx), reg32(&regs->si),
		 reg32(&regs->di), KCMP_EV_COMPAT);
	return 0;
}

RAW_TRACEPOINT_PROBE(sys_exit)
{
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	long nr = 0;
	bpf_probe_read_kernel(&nr, sizeof(nr), &regs->orig_ax);
	if (nr != IA32_NR_KCMP)
		return 0;
	s64 ret = (s64)ctx->args[1];
	if (ret == -ENOSYS_ERRNO) {
		u32 tid = (u32)bpf_get_current_pid_tgid();
		inflight.delete(&tid);
		return 0;
	}
	on_exit(ret, KCMP_EV_COMPAT);
	return 0;
}
#endif
