/* COUNT (features "count", the exporter): every call counted in per-CPU maps, read at scrape
 * time: by type slot, outcome, errno, duration, seccomp refusals; permission failures by uid;
 * calls and failures by process name; with KERNEL_CALLER, calls from outside the monitor's
 * namespaces. Independent of the trace stream's filters. */
#ifdef COUNT
BPF_PERCPU_ARRAY(type_stats, struct kcmp_type_stats, KCMP_SLOTS);
BPF_PERCPU_HASH(denied, struct kcmp_denied_key, u64, 4096);
BPF_PERCPU_HASH(comms, struct kcmp_comm_key, struct kcmp_comm_stats, 10240);

#ifdef KERNEL_CALLER
BPF_PERCPU_ARRAY(namespaced, u64, KCMP_NS_COUNTERS);

static __always_inline void count_ns(u32 kind, u32 slot, u32 outcome)
{
	u32 index = KCMP_NS_INDEX(kind, slot, outcome);
	u64 *v = namespaced.lookup(&index);
	if (v)
		(*v)++;
}

static __always_inline void count_namespaced(u32 slot, u32 outcome, u32 bits)
{
	for (u32 kind = 0; kind < KCMP_NS_KINDS; kind++)
		if (bits & (1 << kind))
			count_ns(kind, slot, outcome);
}
#endif

static __always_inline void count_call(struct kcmp_event *call, s64 ret, u64 duration, u32 bits)
{
	u32 flags = call->flags;
	u32 slot = flags & (KCMP_EV_ENTRY | KCMP_EV_REGS) ? type_slot((s32)call->type) : SLOT_UNSEEN;
	bool eperm = ret == -EPERM_ERRNO;
	u32 outcome = ret == 0 ? KCMP_OUTCOME_SAME : ret > 0 ? KCMP_OUTCOME_DIFFERENT
						      : KCMP_OUTCOME_ERROR;
#ifdef KERNEL_CALLER
	count_namespaced(slot, outcome, bits);
#endif
	struct kcmp_type_stats *ts = type_stats.lookup(&slot);
	if (ts) {
		ts->outcome[outcome]++;
		if (ret < 0) {
			ts->errnos[slot_index(-ret, KCMP_ERRNO_SLOTS - 1)]++;
		}
		if (flags & KCMP_EV_SECCOMP)
			ts->seccomp++;
		if (flags & KCMP_EV_ENTRY) {
			ts->duration_sum_ns += duration;
			ts->duration_log2[slot_index(bpf_log2l(duration), KCMP_LOG2_SLOTS - 1)]++;
		}
	}
	if (flags & KCMP_EV_COMPAT)
		count(KCMP_STAT_COMPAT);
	if (eperm) {
		struct kcmp_denied_key dk = {.slot = slot, .uid = (u32)bpf_get_current_uid_gid()};
		u64 zero = 0, *n = denied.lookup_or_try_init(&dk, &zero);
		if (n)
			(*n)++;
		else
			count(KCMP_STAT_DENIED_OVERFLOW);
	}
	struct kcmp_comm_key ck = {};
	struct kcmp_comm_stats none = {};
	bpf_get_current_comm(ck.comm, sizeof(ck.comm));
	struct kcmp_comm_stats *cs = comms.lookup_or_try_init(&ck, &none);
	if (cs) {
		cs->calls++;
		if (eperm)
			cs->denied++;
	} else {
		count(KCMP_STAT_COMM_OVERFLOW);
		if (eperm)
			count(KCMP_STAT_COMM_OVERFLOW_DENIED);
	}
}
#else
static __always_inline void count_call(struct kcmp_event *call, s64 ret, u64 duration, u32 bits)
{
}
#endif
