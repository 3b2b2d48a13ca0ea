/* FOLD_WINDOW_NS (features "fold", the console and JSON): a thread's identical calls within
 * the window of the first are folded into one record (struct kcmp_fold) with their count. The
 * kernel streams a run when its thread's next unlike call or its exit ends it; user space
 * streams runs whose thread went quiet (monitor/kernel/folds.py). */
#ifdef FOLD_WINDOW_NS
/* One run a thread: only that thread changes its run, so no two programs race on it; user
 * space reads runs whose window has shut, which no call changes any more. A full map leaves a
 * new thread's calls unfolded. Allocated as threads come (a run holds a files record). */
BPF_F_TABLE("hash", u32, struct kcmp_fold, folds, MAX_INFLIGHT, BPF_F_NO_PREALLOC);
/* Runs user space has streamed itself (tid -> first_ns): the kernel then streams them not. */
BPF_HASH(fold_swept, u32, u64, MAX_INFLIGHT);
BPF_PERCPU_ARRAY(fold_scratch, struct kcmp_fold, 1);

/* What makes two calls alike: everything a record of them would say but the time. */
#define FOLD_FLAGS (KCMP_EV_ENTRY | KCMP_EV_COMPAT | KCMP_EV_SLOT_READ | KCMP_EV_SLOT_FAULT | \
		    KCMP_EV_TRACE | KCMP_EV_REGS | KCMP_EV_SECCOMP | KCMP_EV_POLICY)

/* Counts the call into the thread's run if it is like the run's first, within the window. */
static __always_inline bool fold_into(struct kcmp_fold *run, struct kcmp_event *call, s64 ret,
				      u32 flags, u32 bits, u64 now, u64 duration)
{
	struct kcmp_event *first = &run->record.record.event;
	if (now - run->run_ns >= FOLD_WINDOW_NS || first->ret != ret || run->outside != bits ||
	    ((first->flags ^ flags) & FOLD_FLAGS) || first->type != call->type ||
	    first->pid1 != call->pid1 || first->pid2 != call->pid2 || first->idx1 != call->idx1 ||
	    first->idx2 != call->idx2 || first->slot_efd != call->slot_efd ||
	    first->slot_tfd != call->slot_tfd || first->slot_toff != call->slot_toff)
		return false;
	u64 uid_gid = bpf_get_current_uid_gid();
	u64 comm[2] = {};
	bpf_get_current_comm(comm, sizeof(comm));
	u64 *seen = (u64 *)first->comm;
	if (first->uid != (u32)uid_gid || first->gid != uid_gid >> 32 || seen[0] != comm[0] ||
	    seen[1] != comm[1])
		return false;
	u64 ts = call->flags & KCMP_EV_ENTRY ? call->ts_ns : now;
	if (!run->repeat)
		run->first_ns = ts;
	run->last_ns = ts;
	run->duration_ns += duration;
	run->repeat++;
	return true;
}

/* Streams the calls folded into the run, unless user space has. */
static __always_inline void close_run(struct kcmp_fold *run, u32 tid)
{
	u32 n = run->repeat;
	if (!n)
		return;
	run->repeat = 0;
	u64 *swept = fold_swept.lookup(&tid);
	if (swept && *swept == run->first_ns) {
		fold_swept.delete(&tid);
		return;
	}
	struct kcmp_event *first = &run->record.record.event;
	bool urgent = urgent_call(first->flags, first->ret, run->outside);
	bool files = names_files(first);
	struct kcmp_record *r = reserve(urgent, files);
	if (!r) {
		count_n(urgent ? KCMP_STAT_DROPPED_PRIORITY : KCMP_STAT_DROPPED, n);
		return;
	}
	if (files)
		bpf_probe_read_kernel(r, sizeof(struct kcmp_record_files), &run->record);
	else
		bpf_probe_read_kernel(r, sizeof(*r), &run->record);
	struct kcmp_event *e = &r->event;
	e->flags = (e->flags & ~KCMP_EV_PRIORITY) | KCMP_EV_FOLDED | (urgent ? KCMP_EV_PRIORITY : 0);
	e->repeat = n;
	e->ts_ns = run->first_ns;
	e->last_ns = run->last_ns;
	e->duration_ns = run->duration_ns;
	events.ringbuf_submit(r, 0);
}

/* The streamed record opens the thread's run (looked up again: see run_end). */
static __always_inline void open_run(u32 tid, struct kcmp_record_files *rec, bool files, u64 now,
				     u32 bits)
{
	struct kcmp_fold *run = folds.lookup(&tid);
	if (!run) {
		u32 zero = 0;
		struct kcmp_fold *blank = fold_scratch.lookup(&zero);
		if (!blank)
			return;
		run = folds.lookup_or_try_init(&tid, blank);
		if (!run)
			return;
	}
	if (files)
		bpf_probe_read_kernel(&run->record, sizeof(run->record), rec);
	else
		bpf_probe_read_kernel(&run->record, sizeof(struct kcmp_record), rec);
	run->run_ns = now;
	run->outside = bits;
	run->repeat = 0;
	run->duration_ns = 0;
}

/* A thread that ends ends its run. */
static __always_inline void end_thread(void)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct kcmp_fold *run = folds.lookup(&tid);
	if (!run)
		return;
	close_run(run, tid);
	folds.delete(&tid);
	fold_swept.delete(&tid);
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
	SAMPLED(KCMP_PROG_TASK_EXIT, end_thread());
	return 0;
}

/* Whether the call was folded into its thread's run; a run it is unlike is streamed (tid by
 * address, as stamp_parent() takes tgid). */
static __always_inline bool fold_call(u32 *tid, struct kcmp_event *e, s64 ret, bool trace,
				      u32 bits, u64 now, u64 duration)
{
	struct kcmp_fold *run = folds.lookup(tid);
	if (!run)
		return false;
	u32 like = (e->flags & ~KCMP_EV_TRACE) | (trace ? KCMP_EV_TRACE : 0);
	if (fold_into(run, e, ret, like, bits, now, duration))
		return true;
	close_run(run, *tid);
	return false;
}
#else
static __always_inline bool fold_call(u32 *tid, struct kcmp_event *e, s64 ret, bool trace,
				      u32 bits, u64 now, u64 duration)
{
	return false;
}

static __always_inline void open_run(u32 tid, struct kcmp_record_files *rec, bool files, u64 now,
				     u32 bits)
{
}
#endif
