/* KERNEL_POLICY (feature "policy", needs KERNEL_CALLER): the kcmp policy, decided at the call's
 * entry from the table the loader writes (struct kcmp_policy, kcmp.h), with no user space on
 * the call's path. The caller's uid, comm, executable (device and inode) and mount namespace
 * are asked only of a call whose type some rule takes; the tasks it names (KERNEL_TARGETS)
 * only where a rule still in play asks about them. The monitor itself, the host's pid 1 and
 * kernel threads are never acted on. Its values: OWN_TGID (the monitor's pid in its own pid
 * namespace), PF_KTHREAD_VALUE, SIGKILL_VALUE.
 *
 * Actions: a kill is bpf_send_signal(SIGKILL) at the entry: the call runs, but its caller dies
 * on the way back to user space and never sees the answer. A deny, where trampolines can be
 * had (POLICY_DENY_CHECK), is kcmp's own access check refusing (a modify-return program on
 * security_ptrace_access_check, which the kernel lets any security_ function have): kcmp
 * then returns EPERM without comparing anything. Without them a deny is a kill. */
#ifdef KERNEL_POLICY
#ifndef KERNEL_CALLER
#error "KERNEL_POLICY reads the caller's executable and namespaces, which KERNEL_CALLER reads"
#endif
BPF_ARRAY(policy, struct kcmp_policy, 1);
BPF_HASH(policy_uids, u32, u32, 1024);
BPF_HASH(policy_comms, struct kcmp_comm_key, u32, 1024);
BPF_HASH(policy_exes, struct kcmp_policy_exe, u32, 1024);
/* Calls a rule matched, at rule * 2 + applied. */
BPF_PERCPU_ARRAY(enforced, u64, KCMP_POLICY_RULES * 2);

static __always_inline u32 rules_named(u32 *bits)
{
	return bits ? *bits : 0;
}

static __always_inline bool never_acted_on(u64 task)
{
	struct bpf_pidns_info own;
	if (bpf_get_ns_current_pid_tgid(OWN_PIDNS_DEV, OWN_PIDNS_INO, &own, sizeof(own)) == 0 &&
	    own.tgid == OWN_TGID)
		return true;
	return (bpf_get_current_pid_tgid() >> 32) == 1 ||
	       (kread32(task + BTF_TASK_FLAGS) & PF_KTHREAD_VALUE);
}

/* The rules whose conditions on the tasks pid1 and pid2 name hold (outside: either is in
 * another mount namespace than the caller's; other_user: either has another real uid). */
#ifdef KERNEL_TARGETS
static __always_inline void named_task_is(u64 task, u32 uid, u32 mntns, bool *outside,
					  bool *other)
{
	if (!task)
		return;
	u64 nsproxy = kread64(task + BTF_TASK_NSPROXY);
	if (nsproxy && ns_inum(kread64(nsproxy + BTF_NSPROXY_MNT), BTF_MNT_INUM) != mntns)
		*outside = true;
	if (kread32(kread64(task + BTF_TASK_REAL_CRED) + BTF_CRED_UID) != uid)
		*other = true;
}

static __always_inline u32 targets_hold(struct kcmp_policy *p, u64 task, s32 pid1, s32 pid2,
					u32 uid, u32 mntns)
{
	u32 level;
	u64 upid = own_upid(kread64(task + BTF_TASK_THREAD_PID), &level);
	u64 pidns = kread64(upid + BTF_UPID_NS);
	bool outside = false, other = false;
	named_task_is(task_by_vpid(pidns, level, pid1), uid, mntns, &outside, &other);
	if (pid2 != pid1)
		named_task_is(task_by_vpid(pidns, level, pid2), uid, mntns, &outside, &other);
	return ~((outside ? 0 : p->outside) | (other ? 0 : p->other_user));
}
#else
static __always_inline u32 targets_hold(struct kcmp_policy *p, u64 task, s32 pid1, s32 pid2,
					u32 uid, u32 mntns)
{
	return ~(p->outside | p->other_user); /* the loader refuses a policy that asks */
}
#endif

/* The first rule whose conditions all hold, as 1 << rule; 0 for none. */
static __always_inline u32 matching_rules(struct kcmp_policy *p, s32 pid1, s32 pid2, s32 type)
{
	u32 m = p->types[slot_index(type_slot(type), KCMP_POLICY_TYPES - 1)];
	if (!m)
		return 0;
	u64 task = bpf_get_current_task();
	if (never_acted_on(task))
		return 0;
	u32 uid = (u32)bpf_get_current_uid_gid();
	u32 uids = rules_named(policy_uids.lookup(&uid));
	struct kcmp_comm_key comm = {};
	bpf_get_current_comm(comm.comm, sizeof(comm.comm));
	u32 comms = rules_named(policy_comms.lookup(&comm));
	struct kcmp_policy_exe exe = {};
	u64 file = kread64(kread64(task + BTF_TASK_MM) + BTF_MM_EXE_FILE);
	if (file) {
		u64 inode = kread64(file + BTF_FILE_INODE);
		exe.ino = kread64(inode + BTF_INODE_INO);
		exe.dev = kread32(kread64(inode + BTF_INODE_SB) + BTF_SB_DEV);
	}
	u32 exes = rules_named(policy_exes.lookup(&exe));
	if ((uids | comms | exes) & KCMP_POLICY_ALLOW)
		return 0;
	m &= ~(p->uids & ~uids) & ~(p->comms & ~comms) & ~(p->exes & ~exes);
	u64 nsproxy = kread64(task + BTF_TASK_NSPROXY);
	u32 mntns = ns_inum(kread64(nsproxy + BTF_NSPROXY_MNT), BTF_MNT_INUM);
	m &= mntns != OWN_MNTNS_INO ? ~p->on_host : ~p->in_container;
	if (m & (p->outside | p->other_user))
		m &= targets_hold(p, task, pid1, pid2, uid, mntns);
	return m & -m;
}

static __always_inline void count_enforced(u32 rule, bool applied)
{
	u32 index = slot_index(rule, KCMP_POLICY_RULES - 1) * 2 + applied;
	u64 *n = enforced.lookup(&index);
	if (n)
		(*n)++;
}

/* The policy's decision on a call at its entry, carried out: KCMP_EV_* flags for its record,
 * and the rule in *rule. */
static __always_inline u32 police(s32 pid1, s32 pid2, s32 type, u32 *rule)
{
	u32 zero = 0;
	struct kcmp_policy *p = policy.lookup(&zero);
	if (!p)
		return 0;
	u32 bit = matching_rules(p, pid1, pid2, type);
	if (!bit)
		return 0;
	u32 r = 0;
#pragma unroll
	for (int i = 1; i < KCMP_POLICY_RULES; i++)
		if (bit >> i)
			r = i;
	*rule = r;
	u8 action = p->action[r & (KCMP_POLICY_RULES - 1)];
	if (p->apply == KCMP_APPLY_NONE || action == KCMP_ACTION_LOG)
		return KCMP_EV_POLICY;
	if (action == KCMP_ACTION_DENY && p->apply == KCMP_APPLY_CHECK)
		return KCMP_EV_POLICY | KCMP_EV_DENYING;
	if (bpf_send_signal(SIGKILL_VALUE) != 0)
		return KCMP_EV_POLICY;
	return KCMP_EV_POLICY | KCMP_EV_APPLIED | KCMP_EV_KILLED;
}
#else
static __always_inline u32 police(s32 pid1, s32 pid2, s32 type, u32 *rule)
{
	return 0;
}

static __always_inline void count_enforced(u32 rule, bool applied)
{
}
#endif

#ifdef POLICY_DENY_CHECK
#ifndef KERNEL_POLICY
#error "POLICY_DENY_CHECK carries out KERNEL_POLICY's denials"
#endif
/* kcmp's access check on a task it was handed, during a call the policy denies: refused. The
 * check runs for every ptrace access check of the machine; only those inside a denied kcmp
 * find a waiting deny in the in-flight map. */
static __always_inline int deny_at_check(void)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct kcmp_event *e = inflight.lookup(&tid);
	if (!e || !(e->flags & KCMP_EV_DENYING))
		return 0;
	e->flags = (e->flags & ~KCMP_EV_DENYING) | KCMP_EV_APPLIED;
	return -EPERM_ERRNO;
}
#endif
