/* kcmp(2) capture: pairs each call's entry and exit per thread, counts every call in per-CPU
 * maps (read at scrape time) and streams records through two ring buffers (lane.h).
 *
 * Configured by -D flags made from the feature table, monitor/kernel/features.py: one row a
 * feature, its guard, the values it takes and the hooks it attaches. This file is the core (the
 * kcmp tracepoints' entry and exit); each optional feature is a header of its own behind its
 * guard, with no-op stand-ins where it is off, so that the core reads each once. The loader
 * inlines these headers (kernel/kcmp.py: BCC rewrites map calls in the main file alone).
 *
 * The core's values: RINGBUF_PAGES, PRIORITY_PAGES (ring sizes in pages, powers of two), and
 * KCMP_EPOLL_TFD, KCMP_FILE_TYPE, KCMP_TYPE_UNKNOWN_BIT, EPERM_ERRNO from monitor/abi.py; its
 * filters of the trace stream: FILTER_TGID, FILTER_UID, FILTER_COMM_LO/HI (the comm's 16 bytes
 * as little-endian u64s), TYPE_MASK (bit KCMP_TYPE_UNKNOWN_BIT: unknown types), ERRORS_ONLY;
 * its modes: STREAM_TRACE (the calls that pass the filters), STREAM_EPERM (every permission
 * failure, for the EPERM log), TRACE_URGENT (only the priority lane's kinds of call); and
 * OWN_PIDNS_DEV/INO, OWN_MNTNS_INO, OWN_NETNS_INO: the namespaces a caller is held to.
 *
 * Kernel structs are read only at the offsets BTF_* resolved from the running kernel's BTF,
 * never at the ones of the (possibly mismatched) headers BCC compiles with; the saved user
 * registers a hook is handed have the ptrace ABI's layout.
 *
 * HOOK_FENTRY (fentry.h) hooks the kcmp syscall functions instead of the syscall tracepoints. */
#include <uapi/linux/ptrace.h>
#include "kcmp.h"
#include "kinds.h"

#define MAX_INFLIGHT 16384
#define SLOT_UNSEEN (KCMP_TYPE_UNKNOWN_BIT + 1)

BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
BPF_HASH(inflight, u32, struct kcmp_event, MAX_INFLIGHT);
BPF_PERCPU_ARRAY(stats, u64, KCMP_STAT_COUNT);

BPF_PERCPU_ARRAY(prog_stats, struct kcmp_prog_stats, KCMP_PROGS);

/* A run of program `prog` begins: counted, and one in 2^KCMP_SAMPLE_SHIFT timed (its start
 * returned, else 0). */
static __always_inline u64 run_begin(u32 prog)
{
	struct kcmp_prog_stats *s = prog_stats.lookup(&prog);
	return s && !(s->runs++ & ((1 << KCMP_SAMPLE_SHIFT) - 1)) ? bpf_ktime_get_ns() : 0;
}

/* Looked up again rather than held across the run: a pointer that may be NULL, held, would
 * double the states the verifier walks through the whole program. */
static __always_inline void run_end(u32 prog, u64 start)
{
	if (!start)
		return;
	struct kcmp_prog_stats *s = prog_stats.lookup(&prog);
	if (s) {
		s->timed_ns += bpf_ktime_get_ns() - start;
		s->timed++;
	}
}

/* Runs `call` as program `prog` (BCC rewrites no map call inside a macro: they sit above). */
#define SAMPLED(prog, call)                                                     \
	do {                                                                    \
		u64 sample_start = run_begin(prog);                             \
		call;                                                           \
		run_end((prog), sample_start);                                  \
	} while (0)

static __always_inline void count_n(u32 stat, u64 n)
{
	u64 *v = stats.lookup(&stat);
	if (v)
		*v += n;
}

static __always_inline void count(u32 stat)
{
	count_n(stat, 1);
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

/* v clamped to last, as an index into an array of last + 1 (a power of two) slots. Older
 * verifiers (5.10, 6.1) lose the bound of a clamp that clang makes on a copy of the register:
 * the mask, kept by the barrier, is a bound every verifier sees. */
static __always_inline u32 slot_index(u64 v, u32 last)
{
	u32 i = v < last ? v : last;
	asm volatile("" : "+r"(i));
	return i & last;
}

static __always_inline u32 type_slot(s32 type)
{
	return (type >= 0 && type < KCMP_TYPE_UNKNOWN_BIT) ? type : KCMP_TYPE_UNKNOWN_BIT;
}

static __always_inline bool type_wanted(s32 type)
{
#ifdef TYPE_MASK
	return (TYPE_MASK >> type_slot(type)) & 1;
#else
	return true;
#endif
}

/* A register the caller's syscall entry saved (the ptrace ABI's layout of pt_regs). */
static __always_inline u64 reg64(unsigned long *reg)
{
	unsigned long v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), reg);
	return v;
}

/* The same, as a 32-bit caller's argument: the kernel uses the low 32 bits. */
static __always_inline u64 reg32(unsigned long *reg)
{
	return (u32)reg64(reg);
}

/* kcmp's five arguments in the saved registers: the 64-bit syscall ABI's order, and i386's. */
#define ARGS64(regs) reg64(&(regs)->di), reg64(&(regs)->si), reg64(&(regs)->dx), \
		     reg64(&(regs)->r10), reg64(&(regs)->r8)
#define ARGS32(regs) reg32(&(regs)->bx), reg32(&(regs)->cx), reg32(&(regs)->dx), \
		     reg32(&(regs)->si), reg32(&(regs)->di)

static __always_inline void set_args(struct kcmp_event *e, u64 pid1, u64 pid2, u64 type,
				     u64 idx1, u64 idx2)
{
	e->pid1 = pid1;
	e->pid2 = pid2;
	e->type = type;
	e->idx1 = idx1;
	e->idx2 = idx2;
}

static __always_inline void read_slot(struct kcmp_event *e)
{
	if ((s32)e->type != KCMP_EPOLL_TFD)
		return;
	u32 slot[3];
	if (bpf_probe_read_user(slot, sizeof(slot), (void *)e->idx2) == 0) {
		e->slot_efd = slot[0];
		e->slot_tfd = slot[1];
		e->slot_toff = slot[2];
		e->flags |= KCMP_EV_SLOT_READ;
	} else {
		e->flags |= KCMP_EV_SLOT_FAULT;
	}
}

#if defined(KERNEL_CALLER) || defined(KERNEL_SECCOMP)
/* A read that fails (a NULL pointer met on the way) gives 0: the helper zeroes what it could
 * not read. No branch here, or each read would double the paths the verifier walks. */
static __always_inline u64 kread64(u64 addr)
{
	u64 v;
	bpf_probe_read_kernel(&v, sizeof(v), (void *)addr);
	return v;
}

static __always_inline u32 kread32(u64 addr)
{
	u32 v;
	bpf_probe_read_kernel(&v, sizeof(v), (void *)addr);
	return v;
}
#endif

/* The caller's nsproxy and its mount and network namespaces' inodes (KERNEL_CALLER), read
 * once a call by outside(), for the counts and the record alike; and its own pid namespace,
 * read with the record (read_task()), in which find_targets() looks pids up. */
struct caller_ns {
	u64 nsproxy;
	u64 pidns;
	u32 mntns;
	u32 netns;
};

#include "task.h"
#include "targets.h"
#include "files.h"
#include "seccomp.h"
#include "policy.h"

static __always_inline void on_enter(u64 pid1, u64 pid2, u64 type, u64 idx1, u64 idx2, u32 flags)
{
	u32 rule = 0;
	flags |= police((s32)pid1, (s32)pid2, (s32)type, &rule);
#ifdef STREAM_TRACE
	if (caller_wanted() && type_wanted((s32)type))
		flags |= KCMP_EV_TRACE;
#endif
#if !defined(COUNT) && !defined(STREAM_EPERM)
	if (!(flags & (KCMP_EV_TRACE | KCMP_EV_POLICY)))
		return;
#endif
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct kcmp_event e = {};
	e.ts_ns = bpf_ktime_get_ns();
	set_args(&e, pid1, pid2, type, idx1, idx2);
	e.flags = flags | KCMP_EV_ENTRY;
	e.rule = rule;
	/* The slot lives in the caller's memory and may change after the call: copy it now. */
	read_slot(&e);
	if (inflight.update(&tid, &e) != 0) {
		count(KCMP_STAT_INFLIGHT);
		/* Its exit will not know the rule: counted here (a waiting deny is lost). */
		if (flags & KCMP_EV_POLICY)
			count_enforced(rule, flags & KCMP_EV_APPLIED);
	}
}

#include "count.h"

/* The monitor's namespaces the caller is not in, a bit per KCMP_NS_* (pid always known; mount
 * and network with KERNEL_CALLER, which also fills *ns). */
static __always_inline u32 outside(struct caller_ns *ns)
{
	u32 bits = 0;
	struct bpf_pidns_info own;
	if (bpf_get_ns_current_pid_tgid(OWN_PIDNS_DEV, OWN_PIDNS_INO, &own, sizeof(own)) != 0)
		bits |= 1 << KCMP_NS_PID;
	return caller_namespaces(ns, bits);
}

static __always_inline bool trace_wanted_before(struct kcmp_event *before)
{
#ifdef STREAM_TRACE
	if (before->flags & KCMP_EV_REGS)
		return caller_wanted() && type_wanted((s32)before->type);
#ifndef TYPE_MASK
	return caller_wanted();
#endif
#endif
	return false; /* the type of an exit without entry is unknown: a type filter drops it */
}


/* A call with no entry: refused before the entry hooks ran (seccomp), or one whose entry the
 * in-flight map could not keep. Its arguments, where the registers still hold them: regs, the
 * saved ones the hook was handed (a 32-bit caller's, or any caller's under HOOK_FENTRY), else
 * those read_refused() finds. */
static __always_inline void read_before(struct kcmp_event *before, struct pt_regs *regs)
{
	if (regs) {
		if (before->flags & KCMP_EV_COMPAT)
			set_args(before, ARGS32(regs));
		else
			set_args(before, ARGS64(regs));
		before->flags |= KCMP_EV_REGS;
		read_slot(before);
	}
	read_refused(before, regs);
}

#include "lane.h"
#include "fold.h"
#include "sweep.h"
#include "proctable.h"

/* A record is made in this scratch before ring space is reserved for it, and copied there:
 * made in the reserved space, each way of reserving it (two lanes, two sizes) would have the
 * verifier walk the caller's and its files' reading once more, past what 5.10 and 6.1 allow. */
BPF_PERCPU_ARRAY(record_scratch, struct kcmp_record_files, 1);

static __always_inline void on_exit(s64 ret, u32 flags, struct pt_regs *regs)
{
	u64 pid_tgid = bpf_get_current_pid_tgid();
	u32 tid = (u32)pid_tgid, tgid = pid_tgid >> 32;
	u64 now = bpf_ktime_get_ns();
	u32 zero = 0;
	struct kcmp_record_files *rec = record_scratch.lookup(&zero);
	struct kcmp_event *entry = inflight.lookup(&tid);
	if (!rec) {
		if (entry)
			inflight.delete(&tid);
		return;
	}
	/* One copy of the call, whichever way it came: no pointer that is the entry on one path
	 * and the stack on another (each would be walked on its own). */
	struct kcmp_event *e = &rec->record.event;
	u64 duration = 0;
	if (entry) {
		*e = *entry;
		duration = now - entry->ts_ns;
		inflight.delete(&tid);
	} else {
		__builtin_memset(e, 0, sizeof(*e));
		e->flags = flags;
		read_before(e, regs);
		e->ts_ns = now;
	}
	e->duration_ns = duration;

	struct caller_ns ns = {};
	u32 bits = outside(&ns);
	count_call(e, ret, duration, bits);
	bool policed = e->flags & KCMP_EV_POLICY;
	if (policed)
		count_enforced(e->rule, e->flags & KCMP_EV_APPLIED);
	bool trace = e->flags & KCMP_EV_ENTRY ? e->flags & KCMP_EV_TRACE : trace_wanted_before(e);
#ifdef ERRORS_ONLY
	if (ret >= 0)
		trace = false;
#endif
#ifdef TRACE_URGENT
	if (!urgent_call(e->flags, ret, bits))
		trace = false;
#endif
	bool sweep = swept(e, tgid, now);
	if (sweep || policed)
		trace = true;
	bool log_eperm = false;
#ifdef STREAM_EPERM
	log_eperm = ret == -EPERM_ERRNO;
#endif
	if (!trace && !log_eperm)
		return;
	if (fold_call(&tid, e, ret, trace, bits, now, duration))
		return;
	bool urgent = sweep || policed || priority_wanted(e, ret, bits, tgid);
	bool files = names_files(e); /* room for the fds it names */
	if (trace)
		e->flags |= KCMP_EV_TRACE;
	else
		e->flags &= ~KCMP_EV_TRACE;
	u64 uid_gid = bpf_get_current_uid_gid();
	stamp_parent(e, &tgid, bits);
	if (urgent)
		e->flags |= KCMP_EV_PRIORITY;
	if (sweep)
		e->flags |= KCMP_EV_SWEEP;
	e->ret = ret;
	e->tgid = tgid;
	e->tid = tid;
	e->uid = (u32)uid_gid;
	e->gid = uid_gid >> 32;
	e->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	__builtin_memset(&rec->record.task, 0, sizeof(rec->record.task));
	__builtin_memset(rec->record.targets, 0, sizeof(rec->record.targets));
	read_caller(&rec->record, &ns);
	u64 task1 = 0, task2 = 0;
	if (e->flags & (KCMP_EV_ENTRY | KCMP_EV_REGS))
		find_targets(&rec->record, &ns, &task1, &task2);
	read_named_files(rec, files, task1, task2);
	struct kcmp_record *r = reserve(urgent, files);
	if (!r) {
		count(urgent ? KCMP_STAT_DROPPED_PRIORITY : KCMP_STAT_DROPPED);
		return;
	}
	if (files)
		bpf_probe_read_kernel(r, sizeof(struct kcmp_record_files), rec);
	else
		bpf_probe_read_kernel(r, sizeof(struct kcmp_record), rec);
	if (!policed) /* each policed call a record of its own: none folds into it */
		open_run(tid, rec, files, now, bits);
	events.ringbuf_submit(r, 0);
}

#ifndef HOOK_FENTRY
TRACEPOINT_PROBE(syscalls, sys_enter_kcmp)
{
	SAMPLED(KCMP_PROG_ENTER,
		on_enter(args->pid1, args->pid2, args->type, args->idx1, args->idx2, 0));
	return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_kcmp)
{
	SAMPLED(KCMP_PROG_EXIT, on_exit(args->ret, 0, NULL));
	return 0;
}
#endif

#ifdef POLICY_DENY_CHECK
KMOD_RET(security_ptrace_access_check)
{
	int ret = 0;
	SAMPLED(KCMP_PROG_DENY, ret = deny_at_check());
	return ret;
}
#endif

#include "compat.h"
#include "fentry.h"
