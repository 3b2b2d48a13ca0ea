/* kcmp(2) capture: pairs each call's entry and exit per thread, counts every call in per-CPU
 * maps (read at scrape time) and streams records through a ring buffer.
 * Configured by -D flags from monitor/kernel/kcmp.py:
 *   KCMP_EPOLL_TFD, KCMP_TYPE_UNKNOWN_BIT, IA32_NR_KCMP, ENOSYS_ERRNO, EPERM_ERRNO,
 *   NR_KCMP, SECCOMP_MODE_FILTER_VALUE, THREAD_SIZE_VALUE
 *                      ABI values from monitor/abi.py
 *   COUNT              count every call (the exporter); independent of the filters below
 *   STREAM_TRACE       stream the calls that pass the filters (the console / JSON)
 *   STREAM_EPERM       stream every EPERM (the permission-failure log)
 *   RINGBUF_PAGES      the bulk ring buffer's size in pages (power of two)
 *   PRIORITY_PAGES     the priority lane's (power of two)
 *   FOLD_WINDOW_NS     fold a thread's identical calls within this window of the first
 *                      into one record (struct kcmp_fold); user space closes quiet runs
 *   FILTER_TGID        trace only this caller process
 *   FILTER_UID         trace only this caller uid
 *   FILTER_COMM_LO/HI  trace only callers whose comm is these 16 bytes (little-endian u64s)
 *   TYPE_MASK          trace only types whose bit is set (bit KCMP_TYPE_UNKNOWN_BIT: unknown)
 *   ERRORS_ONLY        trace only calls that returned an error
 *   TRACE_URGENT       trace only what the priority lane is for (permission failures,
 *                      seccomp refusals, 32-bit calls, calls from another namespace): the
 *                      exporter's event file and signatures
 *   SWEEP_FDS, SWEEP_WINDOW_NS
 *                      count, for every call, each caller's distinct fds of one other process
 *                      compared within the window; the call that makes SWEEP_FDS is streamed
 *                      (priority lane, KCMP_EV_SWEEP): the exporter's fd-sweep signature
 *   CAPTURE_COMPAT     x86_64: also capture 32-bit (int 0x80) calls through raw_syscalls:
 *                      their exit; with COMPAT_ENTRY their entry too
 *   PROC_TABLE         keep a table of this many tasks (parent and name, from the
 *                      fork and rename tracepoints) and stamp streamed records with the
 *                      caller's parent; needs CLONE_THREAD_FLAG, CLONE_PARENT_FLAG (abi.py);
 *                      with KERNEL_CALLER, also of their numbers in their pid namespaces
 *   OWN_PIDNS_DEV/INO, OWN_MNTNS_INO, OWN_NETNS_INO
 *                      the monitor's namespaces: records say whether the caller shares its pid
 *                      namespace, and (COUNT, KERNEL_CALLER) calls from others are counted
 *   KERNEL_CALLER      stamp streamed records with the caller as the kernel sees it
 *   KERNEL_FILES       with KERNEL_CALLER: the caller's own fds named by the call, with
 *                      their paths (needs KCMP_FILE_TYPE)
 *   KERNEL_SECCOMP     recover the arguments of a call refused before entry (by seccomp) from
 *                      the saved user registers
 *   BTF_*              for those three: offsets of the kernel struct members read, resolved
 *                      from the running kernel's BTF by monitor/kernel/fields.py
 * Kernel structs are read only at those offsets, never at the ones of the (possibly
 * mismatched) headers BCC compiles with; pt_regs on the compat path has the ptrace ABI's
 * layout. */
#include <uapi/linux/ptrace.h>
#include "kcmp.h"

#define MAX_INFLIGHT 16384
#define SLOT_UNSEEN (KCMP_TYPE_UNKNOWN_BIT + 1)

BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
BPF_HASH(inflight, u32, struct kcmp_event, MAX_INFLIGHT);
BPF_PERCPU_ARRAY(stats, u64, KCMP_STAT_COUNT);
#ifdef COUNT
BPF_PERCPU_ARRAY(type_stats, struct kcmp_type_stats, KCMP_SLOTS);
BPF_PERCPU_HASH(denied, struct kcmp_denied_key, u64, 4096);
BPF_PERCPU_HASH(comms, struct kcmp_comm_key, struct kcmp_comm_stats, 10240);
#endif

#ifdef PROC_TABLE
/* LRU: bounded, and a process gone long ago gives way to the living. Entries are kept after
 * exit on purpose: that is when user space needs them. */
BPF_TABLE("lru_hash", u32, struct kcmp_proc, procs, PROC_TABLE);
#endif

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

/* A register of the raw syscall tracepoints' pt_regs (the ptrace ABI's layout), as a 32-bit
 * caller's argument. */
static __always_inline u64 reg32(unsigned long *reg)
{
	unsigned long v = 0;
	bpf_probe_read_kernel(&v, sizeof(v), reg);
	return (u32)v;
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
 * once a call by outside(), for the counts and the record alike. */
struct caller_ns {
	u64 nsproxy;
	u32 mntns;
	u32 netns;
};

#ifdef KERNEL_CALLER
/* The deepest pid namespace a task can be in (MAX_PID_NS_LEVEL is 32). */
#define PID_LEVELS 32

static __always_inline u32 ns_inum(u64 ns, u32 inum_offset)
{
	return ns ? kread32(ns + inum_offset) : 0;
}

/* The struct upid of a struct pid at a level: its number there and that namespace. */
static __always_inline u64 upid_at(u64 pid, u32 level)
{
	return pid + BTF_PID_NUMBERS + (u64)level * BTF_UPID_SIZE;
}

/* The upid of a struct pid in the deepest namespace it is in: the task's own (that of
 * task_active_pid_ns, not nsproxy's pid_ns_for_children). */
static __always_inline u64 own_upid(u64 pid, u32 *level)
{
	u32 deepest = kread32(pid + BTF_PID_LEVEL);
	*level = deepest < PID_LEVELS ? deepest : PID_LEVELS - 1;
	return upid_at(pid, *level);
}

/* The number of a struct pid at a level, if the pid reaches that deep into that namespace. */
static __always_inline u32 pid_nr_at(u64 pid, u32 level, u64 ns)
{
	if (!pid || kread32(pid + BTF_PID_LEVEL) < level)
		return 0;
	u64 upid = upid_at(pid, level);
	return kread64(upid + BTF_UPID_NS) == ns ? kread32(upid + BTF_UPID_NR) : 0;
}

static __always_inline void read_task(struct kcmp_task *t, struct caller_ns *ns)
{
	u64 task = bpf_get_current_task();
	u64 nsproxy = ns->nsproxy;
	t->mntns = ns->mntns;
	t->netns = ns->netns;
	if (nsproxy) {
		t->utsns = ns_inum(kread64(nsproxy + BTF_NSPROXY_UTS), BTF_UTS_INUM);
		t->ipcns = ns_inum(kread64(nsproxy + BTF_NSPROXY_IPC), BTF_IPC_INUM);
		t->cgroupns = ns_inum(kread64(nsproxy + BTF_NSPROXY_CGROUP), BTF_CGROUP_INUM);
	}
	u32 level;
	u64 upid = own_upid(kread64(task + BTF_TASK_THREAD_PID), &level);
	u64 pidns = kread64(upid + BTF_UPID_NS);
	t->pidns = ns_inum(pidns, BTF_PIDNS_INUM);
	t->pid_level = level;
	t->ns_tid = kread32(upid + BTF_UPID_NR);
	u64 leader = kread64(task + BTF_TASK_GROUP_LEADER);
	t->ns_pid = pid_nr_at(kread64(leader + BTF_TASK_THREAD_PID), level, pidns);
	u64 parent = kread64(task + BTF_TASK_REAL_PARENT);
	t->ppid = kread32(parent + BTF_TASK_TGID);
	u64 parent_leader = kread64(parent + BTF_TASK_GROUP_LEADER);
	t->ns_ppid = pid_nr_at(kread64(parent_leader + BTF_TASK_THREAD_PID), level, pidns);

	u64 real = kread64(task + BTF_TASK_REAL_CRED);
	t->uid = kread32(real + BTF_CRED_UID);
	t->gid = kread32(real + BTF_CRED_GID);
	u64 cred = kread64(task + BTF_TASK_CRED);
	t->euid = kread32(cred + BTF_CRED_EUID);
	t->egid = kread32(cred + BTF_CRED_EGID);
	t->cap_effective = kread64(cred + BTF_CRED_CAP_EFFECTIVE);
	t->userns = ns_inum(kread64(cred + BTF_CRED_USER_NS), BTF_USERNS_INUM);

	u64 exe = kread64(kread64(task + BTF_TASK_MM) + BTF_MM_EXE_FILE);
	if (exe) {
		t->exe_ino = kread64(kread64(exe + BTF_FILE_INODE) + BTF_INODE_INO);
		u64 dentry = kread64(exe + BTF_FILE_DENTRY);
		t->exe_name_len = kread32(dentry + BTF_DENTRY_NAME_LEN);
		bpf_probe_read_kernel_str(t->exe_name, sizeof(t->exe_name),
					  (void *)kread64(dentry + BTF_DENTRY_NAME));
	}
#ifdef KERNEL_CGROUP
	u64 cset = kread64(task + BTF_TASK_CGROUPS);
#ifdef CGROUP_V1_SUBSYS
	u64 cgrp = kread64(kread64(cset + BTF_CSS_SET_SUBSYS + CGROUP_V1_SUBSYS * sizeof(u64)) +
			   BTF_CSS_CGROUP);
#else
	u64 cgrp = kread64(cset + BTF_CSS_SET_DFL_CGRP);
#endif
	u64 kn = kread64(cgrp + BTF_CGROUP_KN);
	if (kn)
		bpf_probe_read_kernel_str(t->cgroup, sizeof(t->cgroup),
					  (void *)kread64(kn + BTF_KERNFS_NAME));
#endif
}
#endif

#if defined(KERNEL_FILES) && defined(KERNEL_CALLER)
/* A path is built backwards in a scratch buffer twice its size, so that each piece written
 * at a masked offset with a masked length stays inside it, as the verifier must see. */
struct path_scratch {
	char buf[2 * KCMP_PATH_MAX];
};
BPF_PERCPU_ARRAY(path_scratch, struct path_scratch, 1);

static __always_inline u64 fd_file(u64 task, u32 fd)
{
	u64 fdt = kread64(kread64(task + BTF_TASK_FILES) + BTF_FILES_FDT);
	if (!fdt || fd >= kread32(fdt + BTF_FDT_MAX_FDS))
		return 0;
	return kread64(kread64(fdt + BTF_FDT_FD) + (u64)fd * sizeof(u64));
}

/* What d_path() would give for the file, from the root of the caller's mount namespace: the
 * names of the dentries up to each mount's root, crossing to the mount it sits on, until the
 * namespace's root mount. */
static __always_inline void file_path(struct kcmp_file *f, u64 file, char *buf)
{
	u64 dentry = kread64(file + BTF_FILE_DENTRY);
	u64 ops = kread64(dentry + BTF_DENTRY_OP);
	if (ops && kread64(ops + BTF_DOPS_DNAME)) {
		f->flags |= KCMP_FILE_DNAME;
		long n = bpf_probe_read_kernel_str(f->path, sizeof(f->path),
						   (void *)kread64(dentry + BTF_DENTRY_NAME));
		f->path_len = n > 0 ? n - 1 : 0;
		return;
	}
	if (!kread64(dentry + BTF_DENTRY_HASH_PPREV) &&
	    kread64(dentry + BTF_DENTRY_PARENT) != dentry)
		f->flags |= KCMP_FILE_UNLINKED;
	u64 vfsmnt = kread64(file + BTF_FILE_MNT);
	u64 mnt = vfsmnt - BTF_MOUNT_MNT;
	u32 pos = KCMP_PATH_MAX;
	bool done = false;
	/* Unrolled: a counted loop's counter would keep the verifier from merging the states
	 * of the paths through it. */
#pragma unroll
	for (int i = 0; i < KCMP_PATH_DEPTH; i++) {
		u64 parent = kread64(dentry + BTF_DENTRY_PARENT);
		if (dentry == kread64(vfsmnt + BTF_VFSMOUNT_ROOT) || dentry == parent) {
			u64 up = kread64(mnt + BTF_MOUNT_PARENT);
			if (!up || up == mnt) { /* the root of the mount namespace */
				done = true;
				break;
			}
			dentry = kread64(mnt + BTF_MOUNT_MOUNTPOINT);
			mnt = up;
			vfsmnt = mnt + BTF_MOUNT_MNT;
			continue;
		}
		u32 len = kread32(dentry + BTF_DENTRY_NAME_LEN);
		if (len + 1 >= pos) /* one byte stays free: path_len < KCMP_PATH_MAX */
			break;
		pos -= len;
		bpf_probe_read_kernel(&buf[pos & (KCMP_PATH_MAX - 1)], len & (KCMP_PATH_MAX - 1),
				      (void *)kread64(dentry + BTF_DENTRY_NAME));
		pos -= 1;
		buf[pos & (KCMP_PATH_MAX - 1)] = '/';
		dentry = parent;
	}
	if (!done)
		f->flags |= KCMP_FILE_CUT;
	if (pos == KCMP_PATH_MAX) { /* the root itself */
		pos -= 1;
		buf[pos & (KCMP_PATH_MAX - 1)] = '/';
	}
	u32 n = KCMP_PATH_MAX - pos;
	f->path_len = n;
	bpf_probe_read_kernel(f->path, n & (KCMP_PATH_MAX - 1), &buf[pos & (KCMP_PATH_MAX - 1)]);
}

static __always_inline void read_fd(struct kcmp_file *f, u64 task, u32 fd, char *buf)
{
	f->flags = KCMP_FILE_OWN;
	u64 file = fd_file(task, fd);
	if (!file)
		return;
	u64 inode = kread64(file + BTF_FILE_INODE);
	u64 sb = kread64(inode + BTF_INODE_SB);
	f->flags |= KCMP_FILE_OPEN;
	f->ino = kread64(inode + BTF_INODE_INO);
	f->dev = kread32(sb + BTF_SB_DEV);
	f->magic = (u32)kread64(sb + BTF_SB_MAGIC);
	file_path(f, file, buf);
}

/* As strace resolves them: idx1 against pid1; idx2 and the epoll slot's efd and tfd against
 * pid2; each only where that pid is the caller's own process or thread, as its pid namespace
 * numbers them. */
static __always_inline void read_files(struct kcmp_record_files *r)
{
	u32 zero = 0;
	struct path_scratch *scratch = path_scratch.lookup(&zero);
	if (!scratch)
		return;
	struct kcmp_event *e = &r->record.event;
	struct kcmp_task *t = &r->record.task;
	s32 pid1 = (s32)e->pid1, pid2 = (s32)e->pid2;
	bool own1 = pid1 == (s32)t->ns_pid || pid1 == (s32)t->ns_tid;
	bool own2 = pid2 == (s32)t->ns_pid || pid2 == (s32)t->ns_tid;
	u32 fds[KCMP_FILES] = {(u32)e->idx1, (u32)e->idx2, 0};
	bool wanted[KCMP_FILES] = {own1, own2, false};
	if ((s32)e->type == KCMP_EPOLL_TFD) {
		fds[1] = e->slot_efd;
		fds[2] = e->slot_tfd;
		wanted[1] = wanted[2] = own2 && (e->flags & KCMP_EV_SLOT_READ);
	}
	u64 task = bpf_get_current_task();
	/* Unrolled: the verifiers of 5.10 and 6.1 refuse a loop whose back edge is a helper call's
	 * fall-through, as this one's was ("back-edge from insn N to N+1"). */
#pragma unroll
	for (int k = 0; k < KCMP_FILES; k++)
		if (wanted[k])
			read_fd(&r->files[k], task, fds[k], scratch->buf);
}
#endif

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
#endif

static __always_inline void on_enter(u64 pid1, u64 pid2, u64 type, u64 idx1, u64 idx2, u32 flags)
{
#ifdef STREAM_TRACE
	if (caller_wanted() && type_wanted((s32)type))
		flags |= KCMP_EV_TRACE;
#endif
#if !defined(COUNT) && !defined(STREAM_EPERM)
	if (!(flags & KCMP_EV_TRACE))
		return;
#endif
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
	read_slot(&e);
	if (inflight.update(&tid, &e) != 0)
		count(KCMP_STAT_INFLIGHT);
}

#if defined(COUNT) && defined(KERNEL_CALLER)
BPF_PERCPU_ARRAY(namespaced, u64, KCMP_NS_COUNTERS);

static __always_inline void count_ns(u32 kind, u32 slot, u32 outcome)
{
	u32 index = KCMP_NS_INDEX(kind, slot, outcome);
	u64 *v = namespaced.lookup(&index);
	if (v)
		(*v)++;
}

#endif

/* The monitor's namespaces the caller is not in, a bit per KCMP_NS_* (pid always known; mount
 * and network with KERNEL_CALLER, which also fills *ns). */
static __always_inline u32 outside(struct caller_ns *ns)
{
	u32 bits = 0;
	struct bpf_pidns_info own;
	if (bpf_get_ns_current_pid_tgid(OWN_PIDNS_DEV, OWN_PIDNS_INO, &own, sizeof(own)) != 0)
		bits |= 1 << KCMP_NS_PID;
#ifdef KERNEL_CALLER
	u64 nsproxy = kread64(bpf_get_current_task() + BTF_TASK_NSPROXY);
	ns->nsproxy = nsproxy;
	if (nsproxy) {
		ns->mntns = ns_inum(kread64(nsproxy + BTF_NSPROXY_MNT), BTF_MNT_INUM);
		ns->netns = ns_inum(kread64(nsproxy + BTF_NSPROXY_NET), BTF_NET_INUM);
		if (ns->mntns != OWN_MNTNS_INO)
			bits |= 1 << KCMP_NS_MNT;
		if (ns->netns != OWN_NETNS_INO)
			bits |= 1 << KCMP_NS_NET;
	}
#endif
	return bits;
}

#if defined(COUNT) && defined(KERNEL_CALLER)
static __always_inline void count_namespaced(u32 slot, u32 outcome, u32 bits)
{
	for (u32 kind = 0; kind < KCMP_NS_KINDS; kind++)
		if (bits & (1 << kind))
			count_ns(kind, slot, outcome);
}
#endif

#ifdef COUNT
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
#endif

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

/* A call with no entry: refused before the syscall tracepoints ran (seccomp), or one whose
 * entry the in-flight map could not keep. Its arguments, where the registers still hold
 * them: the saved ones for a 64-bit caller, those of the raw tracepoint for a 32-bit one. */
static __always_inline void read_before(struct kcmp_event *before, struct pt_regs *compat_regs)
{
	if (compat_regs) {
		before->pid1 = reg32(&compat_regs->bx);
		before->pid2 = reg32(&compat_regs->cx);
		before->type = reg32(&compat_regs->dx);
		before->idx1 = reg32(&compat_regs->si);
		before->idx2 = reg32(&compat_regs->di);
		before->flags |= KCMP_EV_REGS;
		read_slot(before);
	}
#ifdef KERNEL_SECCOMP
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
#endif
}

/* The priority lane: a ring buffer of its own, which floods of benign calls cannot fill, for
 * what a person must not miss: permission failures, seccomp refusals, 32-bit calls, calls from
 * another namespace, and the first call of each caller. */
BPF_RINGBUF_OUTPUT(priority, PRIORITY_PAGES);
BPF_TABLE("lru_hash", u32, u8, callers_seen, 16384);

static __always_inline bool urgent_call(u32 flags, s64 ret, u32 bits)
{
	return ret == -EPERM_ERRNO || (flags & (KCMP_EV_COMPAT | KCMP_EV_SECCOMP)) || bits;
}

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

/* A call that names fds, whose record has room for the caller's own. */
static __always_inline bool names_files(struct kcmp_event *call)
{
#if defined(KERNEL_FILES) && defined(KERNEL_CALLER)
	return (call->flags & (KCMP_EV_ENTRY | KCMP_EV_REGS)) &&
	       ((s32)call->type == KCMP_FILE_TYPE || (s32)call->type == KCMP_EPOLL_TFD);
#else
	return false;
#endif
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
		    KCMP_EV_TRACE | KCMP_EV_REGS | KCMP_EV_SECCOMP)

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
#endif

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
#endif

/* A record is made in this scratch before ring space is reserved for it, and copied there:
 * made in the reserved space, each way of reserving it (two lanes, two sizes) would have the
 * verifier walk the caller's and its files' reading once more, past what 5.10 and 6.1 allow. */
BPF_PERCPU_ARRAY(record_scratch, struct kcmp_record_files, 1);

static __always_inline void on_exit(s64 ret, u32 flags, struct pt_regs *compat_regs)
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
		read_before(e, compat_regs);
		e->ts_ns = now;
	}
	e->duration_ns = duration;

	struct caller_ns ns = {};
	u32 bits = outside(&ns);
#ifdef COUNT
	count_call(e, ret, duration, bits);
#endif
	bool trace = e->flags & KCMP_EV_ENTRY ? e->flags & KCMP_EV_TRACE : trace_wanted_before(e);
#ifdef ERRORS_ONLY
	if (ret >= 0)
		trace = false;
#endif
#ifdef TRACE_URGENT
	if (!urgent_call(e->flags, ret, bits))
		trace = false;
#endif
	bool sweep = false;
#ifdef SWEEP_FDS
	sweep = swept(e, tgid, now);
	if (sweep)
		trace = true;
#endif
	bool log_eperm = false;
#ifdef STREAM_EPERM
	log_eperm = ret == -EPERM_ERRNO;
#endif
	if (!trace && !log_eperm)
		return;
#ifdef FOLD_WINDOW_NS
	struct kcmp_fold *run = folds.lookup(&tid);
	if (run) {
		u32 like = (e->flags & ~KCMP_EV_TRACE) | (trace ? KCMP_EV_TRACE : 0);
		if (fold_into(run, e, ret, like, bits, now, duration))
			return;
		close_run(run, tid);
	}
#endif
	bool urgent = sweep || priority_wanted(e, ret, bits, tgid);
	bool files = names_files(e); /* room for the caller's own fds */
	if (trace)
		e->flags |= KCMP_EV_TRACE;
	else
		e->flags &= ~KCMP_EV_TRACE;
	u64 uid_gid = bpf_get_current_uid_gid();
#ifdef PROC_TABLE
	struct kcmp_proc *proc = procs.lookup(&tgid);
	e->ppid = proc ? proc->ppid : 0;
	if (!(bits & (1 << KCMP_NS_PID)))
		e->flags |= KCMP_EV_OWN_PIDNS;
#endif
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
#ifdef KERNEL_CALLER
	read_task(&rec->record.task, &ns);
	e->flags |= KCMP_EV_TASK;
#endif
#if defined(KERNEL_FILES) && defined(KERNEL_CALLER)
	if (files) {
		__builtin_memset(rec->files, 0, sizeof(rec->files));
		read_files(rec);
	}
#endif
	struct kcmp_record *r = reserve(urgent, files);
	if (!r) {
		count(urgent ? KCMP_STAT_DROPPED_PRIORITY : KCMP_STAT_DROPPED);
		return;
	}
	if (files)
		bpf_probe_read_kernel(r, sizeof(struct kcmp_record_files), rec);
	else
		bpf_probe_read_kernel(r, sizeof(struct kcmp_record), rec);
#ifdef FOLD_WINDOW_NS
	open_run(tid, rec, files, now, bits);
#endif
	events.ringbuf_submit(r, 0);
}

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

#ifdef PROC_TABLE
/* A new task: a process's parent is its creator, or with CLONE_PARENT the creator's parent;
 * a thread gets its process's parent (a kcmp target may be a thread). task_newtask is
 * the fork tracepoint that carries the clone flags. */
static __always_inline void new_task(u32 pid, u64 flags, char *comm)
{
	u32 creator = bpf_get_current_pid_tgid() >> 32;
	struct kcmp_proc p = {.ppid = creator};
	if (flags & (CLONE_THREAD_FLAG | CLONE_PARENT_FLAG)) {
		struct kcmp_proc *c = procs.lookup(&creator);
		p.ppid = c ? c->ppid : 0;
	}
	bpf_probe_read_kernel(p.comm, sizeof(p.comm), comm);
	procs.update(&pid, &p);
}

TRACEPOINT_PROBE(task, task_newtask)
{
	SAMPLED(KCMP_PROG_NEWTASK, new_task(args->pid, args->clone_flags, args->comm));
	return 0;
}

#ifdef KERNEL_CALLER
BPF_TABLE("lru_hash", struct kcmp_nspid, u32, nspids, PROC_TABLE);

/* A new task's number in its own pid namespace (the raw tracepoint hands over the task). */
static __always_inline void number_task(u64 task)
{
	u32 level;
	u64 upid = own_upid(kread64(task + BTF_TASK_THREAD_PID), &level);
	struct kcmp_nspid key = {.pidns = ns_inum(kread64(upid + BTF_UPID_NS), BTF_PIDNS_INUM),
				 .nr = kread32(upid + BTF_UPID_NR)};
	u32 host = kread32(task + BTF_TASK_PID);
	nspids.update(&key, &host);
}

RAW_TRACEPOINT_PROBE(task_newtask)
{
	SAMPLED(KCMP_PROG_NEWTASK_RAW, number_task(ctx->args[0]));
	return 0;
}
#endif

/* exec and prctl(PR_SET_NAME) both rename: keep the name a gone process last had. */
static __always_inline void rename_task(u32 pid, char *comm)
{
	struct kcmp_proc *p = procs.lookup(&pid);
	if (p)
		bpf_probe_read_kernel(p->comm, sizeof(p->comm), comm);
}

TRACEPOINT_PROBE(task, task_rename)
{
	SAMPLED(KCMP_PROG_RENAME, rename_task(args->pid, args->newcomm));
	return 0;
}
#endif

#ifdef CAPTURE_COMPAT
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
static __always_inline void compat_enter(struct pt_regs *regs)
{
	/* i386 argument order: ebx, ecx, edx, esi, edi; the kernel uses the low 32 bits. */
	on_enter(reg32(&regs->bx), reg32(&regs->cx), reg32(&regs->dx), reg32(&regs->si),
		 reg32(&regs->di), KCMP_EV_COMPAT);
}

RAW_TRACEPOINT_PROBE(sys_enter)
{
	if (ctx->args[1] != IA32_NR_KCMP)
		return 0;
	SAMPLED(KCMP_PROG_RAW_ENTER, compat_enter((struct pt_regs *)ctx->args[0]));
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
