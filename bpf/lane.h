/* The priority lane: a ring buffer of its own, which floods of benign calls cannot fill, for
 * what a person must not miss: the urgent calls (urgent_call(), kinds.h), counted fd sweeps,
 * and the first call of each caller. TRACE_URGENT streams the urgent calls alone. */
BPF_RINGBUF_OUTPUT(priority, PRIORITY_PAGES);
BPF_TABLE("lru_hash", u32, u8, callers_seen, 16384);

static __always_inline bool priority_wanted(struct kcmp_event *call, s64 ret, u32 bits, u32 tgid)
{
	if (urgent_call(call->flags, ret, bits))
		return true;
	u8 *seen = callers_seen.lookup(&tgid);
	if (seen)
		return false;
	u8 one = 1;
	callers_seen.update(&tgid, &one);
	return true;
}

/* Room for a record: in the priority lane (or, when it is full, the bulk one) for an urgent
 * call; in the bulk lane for the rest, which never takes the priority lane's room. */
static __always_inline struct kcmp_record *reserve(bool urgent, bool files)
{
	struct kcmp_record *r = NULL;
	if (urgent) {
		r = files ? priority.ringbuf_reserve(sizeof(struct kcmp_record_files))
			  : priority.ringbuf_reserve(sizeof(struct kcmp_record));
		if (r)
			return r;
	}
	return files ? events.ringbuf_reserve(sizeof(struct kcmp_record_files))
		     : events.ringbuf_reserve(sizeof(struct kcmp_record));
}
