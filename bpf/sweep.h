/* SWEEP_FDS, SWEEP_WINDOW_NS (features "sweep", the exporter's fd-sweep signature): counted
 * where every call is seen, the call that makes a caller's SWEEP_FDS-th distinct fd of one
 * other process within the window is streamed (priority lane, KCMP_EV_SWEEP). */
#ifdef SWEEP_FDS
/* Fd sweeps, counted where every call is seen: per (caller, pid2 as it names it), which fds
 * of pid2 it compared in the window, as a 256-bit map of their low byte (fds 256 apart count
 * once: a sweep is still found), and whether the pair was flagged in it. The caller's threads
 * may race on a map: a lost bit counts one fd less, never a false sweep. */
struct sweep_key {
	u32 tgid;
	s32 pid2;
};

struct sweep {
	u64 start_ns;
	u64 bits[4];
	u32 fds;
	u32 flagged;
};

BPF_TABLE("lru_hash", struct sweep_key, struct sweep, sweeps, 4096);

static __always_inline bool swept(struct kcmp_event *call, u32 tgid, u64 now)
{
	s32 type = (s32)call->type, pid1 = (s32)call->pid1, pid2 = (s32)call->pid2;
	if (!(call->flags & (KCMP_EV_ENTRY | KCMP_EV_REGS)) || pid1 == pid2 || pid2 == (s32)tgid)
		return false; /* arguments unknown, or its own fds */
	u32 fd;
	if (type == KCMP_FILE_TYPE)
		fd = (u32)call->idx2;
	else if (type == KCMP_EPOLL_TFD && (call->flags & KCMP_EV_SLOT_READ))
		fd = call->slot_tfd;
	else
		return false;
	struct sweep_key key = {.tgid = tgid, .pid2 = pid2};
	struct sweep *s = sweeps.lookup(&key);
	if (!s || now - s->start_ns >= SWEEP_WINDOW_NS) {
		struct sweep fresh = {.start_ns = now};
		sweeps.update(&key, &fresh);
		s = sweeps.lookup(&key);
		if (!s)
			return false;
	}
	u64 bit = 1ULL << (fd & 63);
	u32 word = (fd >> 6) & 3;
	if (s->bits[word] & bit)
		return false;
	s->bits[word] |= bit;
	s->fds += 1;
	if (s->fds < SWEEP_FDS || s->flagged)
		return false;
	s->flagged = 1;
	return true;
}
#else
static __always_inline bool swept(struct kcmp_event *call, u32 tgid, u64 now)
{
	return false;
}
#endif
