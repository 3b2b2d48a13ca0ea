/* The record one kcmp call produces, and the counters kept in the kernel.
 * monitor/kernel/events.py, counters.py and proctable.py mirror these layouts byte for byte;
 * tests/unit compiles this header to hold them to the same contract. */
#ifndef KCMP_MONITOR_KCMP_H
#define KCMP_MONITOR_KCMP_H

#include <linux/types.h>

#define KCMP_EV_ENTRY      0x1 /* entry seen: arguments, slot and duration are valid */
#define KCMP_EV_COMPAT     0x2 /* 32-bit caller (int 0x80 / ia32 entry) */
#define KCMP_EV_SLOT_READ  0x4 /* epoll slot copied from the caller at entry */
#define KCMP_EV_SLOT_FAULT 0x8 /* epoll slot pointer unreadable at entry */
#define KCMP_EV_TRACE      0x10 /* passed the trace filters (else streamed only for the EPERM log) */
#define KCMP_EV_OWN_PIDNS  0x20 /* the caller was in the monitor's pid namespace (PROC_TABLE) */
#define KCMP_EV_TASK       0x40 /* task holds the caller as the kernel saw it (KERNEL_CALLER) */
#define KCMP_EV_REGS       0x80 /* no entry: the arguments come from the saved user registers */
#define KCMP_EV_SECCOMP    0x100 /* no entry, and the caller runs under a seccomp filter */
#define KCMP_EV_PRIORITY   0x200 /* streamed through the priority lane */
#define KCMP_EV_FOLDED     0x400 /* stands for repeat more calls like its run's first (FOLD) */
#define KCMP_EV_SWEEP      0x800 /* the call made SWEEP_FDS distinct fds of one other process
				  * its caller compared within SWEEP_WINDOW_NS (an fd sweep) */
#define KCMP_EV_TARGETS    0x1000 /* targets holds the tasks pid1 and pid2 named at the call,
				   * as the kernel found them (KERNEL_TARGETS) */
#define KCMP_EV_POLICY     0x2000 /* a rule of the policy matched the call at its entry (rule) */
#define KCMP_EV_APPLIED    0x4000 /* and its action was carried out */
#define KCMP_EV_KILLED     0x8000 /* by SIGKILL to the caller (else: kcmp's access check
				   * refused the call, EPERM) */
#define KCMP_EV_DENYING    0x10000 /* a deny waits for kcmp's access check (KMOD_RET) */

#define KCMP_STAT_DROPPED          0 /* ring buffer full: calls lost (a folded record's all) */
#define KCMP_STAT_INFLIGHT         1 /* in-flight map full: entry not kept */
#define KCMP_STAT_COMPAT           2 /* 32-bit calls */
#define KCMP_STAT_DENIED_OVERFLOW  3 /* EPERMs not counted by uid: the denied map was full */
#define KCMP_STAT_COMM_OVERFLOW    4 /* calls not counted by comm: the comms map was full */
#define KCMP_STAT_COMM_OVERFLOW_DENIED 5 /* EPERMs among those */
#define KCMP_STAT_DROPPED_PRIORITY 6 /* both rings full: a priority event lost */
#define KCMP_STAT_COUNT            7

/* Each program's runs, and one run in 2^KCMP_SAMPLE_SHIFT timed: what the programs cost,
 * known without kernel.bpf_stats_enabled (which times every run of every BPF program on the
 * machine, at a cost here of about 60 ns a run). The per-CPU array "prog_stats" by program. */
enum kcmp_prog {
	KCMP_PROG_ENTER,       /* syscalls:sys_enter_kcmp */
	KCMP_PROG_EXIT,        /* syscalls:sys_exit_kcmp */
	KCMP_PROG_NEWTASK,     /* task:task_newtask (PROC_TABLE) */
	KCMP_PROG_RENAME,      /* task:task_rename (PROC_TABLE) */
	KCMP_PROG_TASK_EXIT,   /* sched:sched_process_exit (FOLD_WINDOW_NS) */
	KCMP_PROG_NEWTASK_RAW, /* the raw task_newtask (pid numbers: PROC_TABLE, KERNEL_CALLER) */
	KCMP_PROG_RAW_ENTER,   /* raw_syscalls:sys_enter (COMPAT_ENTRY), its 32-bit kcmp runs */
	KCMP_PROG_RAW_EXIT,    /* raw_syscalls:sys_exit (CAPTURE_COMPAT), the same */
	KCMP_PROG_FENTRY,      /* fentry:__x64_sys_kcmp (HOOK_FENTRY) */
	KCMP_PROG_FEXIT,       /* fexit:__x64_sys_kcmp (HOOK_FENTRY) */
	KCMP_PROG_IA32_FENTRY, /* fentry:__ia32_sys_kcmp (HOOK_FENTRY, CAPTURE_COMPAT) */
	KCMP_PROG_IA32_FEXIT,  /* fexit:__ia32_sys_kcmp (HOOK_FENTRY, CAPTURE_COMPAT) */
	KCMP_PROG_SECCOMP,     /* fexit:__secure_computing (HOOK_FENTRY), its runs for a
				* refused kcmp */
	KCMP_PROG_DENY,        /* fmod_ret:security_ptrace_access_check (POLICY_DENY_CHECK),
				* its runs during a kcmp the policy denies */
	KCMP_PROGS
};
#define KCMP_SAMPLE_SHIFT 6

struct kcmp_prog_stats {
	__u64 runs;
	__u64 timed;       /* of those, the ones timed */
	__u64 timed_ns;    /* their time, from the program's start to its end */
};

/* Counters per type slot: 0..7 the Linux types, then "unknown" (an invalid type) and "unseen"
 * (an exit without entry, whose type no tracepoint saw). */
#define KCMP_SLOTS        10
#define KCMP_ERRNO_SLOTS  256 /* the last one counts every errno at or above it */
#define KCMP_LOG2_SLOTS   64  /* slot k: durations in [2^(k-1), 2^k) ns */

enum kcmp_outcome { KCMP_OUTCOME_SAME, KCMP_OUTCOME_DIFFERENT, KCMP_OUTCOME_ERROR, KCMP_OUTCOMES };

/* Calls made from outside the monitor's own namespaces, by kind, type slot and outcome: the
 * per-CPU array "namespaced" at KCMP_NS_INDEX(kind, slot, outcome) (COUNT and KERNEL_CALLER). */
enum kcmp_ns_kind { KCMP_NS_PID, KCMP_NS_MNT, KCMP_NS_NET, KCMP_NS_KINDS };
#define KCMP_NS_INDEX(kind, slot, outcome) \
	(((kind) * KCMP_SLOTS + (slot)) * KCMP_OUTCOMES + (outcome))
#define KCMP_NS_COUNTERS (KCMP_NS_KINDS * KCMP_SLOTS * KCMP_OUTCOMES)

struct kcmp_type_stats {
	__u64 outcome[KCMP_OUTCOMES];
	__u64 duration_sum_ns;
	__u64 duration_log2[KCMP_LOG2_SLOTS];
	__u64 errnos[KCMP_ERRNO_SLOTS];
	__u64 seccomp;     /* refused before entry while under a seccomp filter */
};

struct kcmp_denied_key {
	__u32 slot;
	__u32 uid;
};

struct kcmp_comm_key {
	char comm[16];
};

struct kcmp_comm_stats {
	__u64 calls;
	__u64 denied;
};

/* The caller as the kernel saw it at the call: what /proc can tell only while it lives.
 * Namespaces by inode; pids as the caller's own pid namespace numbers them. */
#define KCMP_CGROUP_NAME 96 /* "cri-containerd-<64 hex>.scope" and its NUL fit */

struct kcmp_task {
	__u32 pidns;
	__u32 mntns;
	__u32 netns;
	__u32 userns;
	__u32 utsns;
	__u32 ipcns;
	__u32 cgroupns;
	__u32 ppid;        /* the real parent's tgid, as the host numbers it */
	__u32 ns_pid;
	__u32 ns_tid;
	__u32 ns_ppid;     /* 0: the parent is outside the caller's pid namespace */
	__u32 pid_level;   /* how deep the caller's pid namespace is: 0 for the host's */
	__u32 uid;         /* real */
	__u32 gid;
	__u32 euid;
	__u32 egid;
	__u64 cap_effective;
	__u64 exe_ino;
	__u32 exe_name_len; /* the executable's name's full length: more than fits is cut */
	__u32 reserved;
	char exe_name[64];
	char cgroup[KCMP_CGROUP_NAME]; /* its cgroup's own name, the leaf of its path
					  * (KERNEL_CGROUP); "" where not read */
};

struct kcmp_event {
	__u64 ts_ns;       /* CLOCK_MONOTONIC at entry, or at exit when no entry was seen */
	__u64 duration_ns;
	__u64 cgroup_id;
	__u64 pid1;        /* the raw argument registers; user space truncates like the kernel */
	__u64 pid2;
	__u64 type;
	__u64 idx1;
	__u64 idx2;
	__s64 ret;
	__u32 tgid;
	__u32 tid;
	__u32 uid;
	__u32 gid;
	__u32 slot_efd;    /* struct kcmp_epoll_slot, when KCMP_EV_SLOT_READ */
	__u32 slot_tfd;
	__u32 slot_toff;
	__u32 flags;
	char comm[16];
	__u32 ppid;        /* the caller's parent as the process table knew it; 0: not known */
	__u32 repeat;      /* KCMP_EV_FOLDED: how many calls the record stands for */
	__u64 last_ns;     /* KCMP_EV_FOLDED: the last one's time (ts_ns is the first's) */
	__u32 rule;        /* KCMP_EV_POLICY: the index of the rule that matched */
	__u32 reserved;
};

/* A task pid1 or pid2 named, as the kernel found it in the caller's pid namespace at the call
 * (KERNEL_TARGETS). Host pids; namespaces by inode. */
#define KCMP_TARGET_FOUND   0x1 /* the pid named a task: the rest is valid */
#define KCMP_TARGET_EXITING 0x2 /* it was exiting (or a zombie) at the call */

struct kcmp_target {
	__u32 pid;         /* the task's (a thread's, where a thread was named) */
	__u32 tgid;
	__u32 ppid;        /* its real parent's tgid */
	__u32 uid;         /* real */
	__u32 euid;
	__u32 pidns;       /* its own, as the caller's is */
	__u32 mntns;
	__u32 netns;
	__u32 flags;
	char comm[16];
	char cgroup[KCMP_CGROUP_NAME]; /* as struct kcmp_task's (KERNEL_CGROUP) */
};

/* What one call streams: the call, (KCMP_EV_TASK) its caller as the kernel saw it, and
 * (KCMP_EV_TARGETS) the tasks it named. The in-flight map keeps only the call. */
struct kcmp_record {
	struct kcmp_event event;
	struct kcmp_task task;
	struct kcmp_target targets[2]; /* pid1's, pid2's */
};

/* An fd named by a KCMP_FILE or KCMP_EPOLL_TFD call, as the fd table of the task it belongs
 * to held it at the call (KERNEL_FILES): the caller's own, and (KERNEL_TARGETS) any other's. */
#define KCMP_FILES         3     /* idx1; idx2 or the slot's efd; the slot's tfd */
#define KCMP_PATH_MAX      256   /* bytes of a path a record holds, its NUL not included */
#define KCMP_PATH_DEPTH    16    /* dentries (and mounts crossed) walked at most */
#define KCMP_FILE_LOOKED   0x1   /* looked up in its task's table */
#define KCMP_FILE_OPEN     0x2   /* and was open there */
#define KCMP_FILE_DNAME    0x4   /* a pseudo file its file system names (pipe:, socket:,
				  * anon_inode:): path holds only its dentry's name */
#define KCMP_FILE_UNLINKED 0x8   /* deleted, as d_path's " (deleted)" says */
#define KCMP_FILE_CUT      0x10  /* longer or deeper than the record holds: the path is its end */

struct kcmp_file {
	__u64 ino;
	__u32 dev;         /* the kernel's dev_t: major << 20 | minor */
	__u32 magic;       /* the file system's s_magic */
	__u32 flags;
	__u32 path_len;
	char path[KCMP_PATH_MAX]; /* as /proc/<pid>/fd would show it to a process with the
				   * caller's root, path_len bytes */
};

/* The record of a KCMP_FILE or KCMP_EPOLL_TFD call whose arguments are known. */
struct kcmp_record_files {
	struct kcmp_record record;
	struct kcmp_file files[KCMP_FILES];
};

/* A thread's run of identical calls (FOLD): the first is streamed as it comes; those like it
 * within the window after it are counted here, and streamed as one record (KCMP_EV_FOLDED)
 * when a different call ends the run, the thread exits, or user space finds the window shut. */
struct kcmp_fold {
	struct kcmp_record_files record; /* the run's first call as it was streamed (its files
					  * only where it names fds) */
	__u64 run_ns;      /* when that call returned: the window opens */
	__u64 first_ns;    /* the first folded call's time: with the thread, names the run */
	__u64 last_ns;
	__u64 duration_ns; /* the folded calls' durations, summed (where entries were seen) */
	__u32 repeat;      /* calls folded so far */
	__u32 outside;     /* the caller's outside() bits, part of what makes calls alike */
};

/* A key of the kernel's table of pid numbers (PROC_TABLE with KERNEL_CALLER): a task's
 * number in its own pid namespace, whose value is its host pid, so that pids numbered in a
 * namespace translate even once the namespace's processes are gone. */
struct kcmp_nspid {
	__u32 pidns;       /* the namespace's inode */
	__u32 nr;
};

/* What the process table keeps of a task, so that one gone before its event is decoded still
 * has a name and a parent. */
struct kcmp_proc {
	__u32 ppid;        /* a thread's: its process's parent */
	char comm[16];
};

/* The policy as the loader writes it (KERNEL_POLICY, monitor/kernel/policy.py): masks with a
 * bit per rule, in the rule file's order; the first rule whose conditions all hold is the
 * call's. The maps of caller uids, comms and executables give each value the rules that name
 * it, and KCMP_POLICY_ALLOW where it is allowlisted. */
#define KCMP_POLICY_RULES 16
#define KCMP_POLICY_TYPES 16   /* type slots (KCMP_SLOTS of them used), a power of two */
#define KCMP_POLICY_ALLOW (1u << 31)

enum kcmp_action { KCMP_ACTION_LOG, KCMP_ACTION_DENY, KCMP_ACTION_KILL };
/* How the actions are carried out: not at all (a dry run); a deny at kcmp's access check and
 * a kill by SIGKILL; both by SIGKILL (no trampolines for the access check). */
enum kcmp_apply { KCMP_APPLY_NONE, KCMP_APPLY_CHECK, KCMP_APPLY_KILL };

struct kcmp_policy {
	__u32 types[KCMP_POLICY_TYPES]; /* the rules that take each type slot */
	__u32 uids;          /* the rules that name the caller's uids, */
	__u32 exes;          /* executables */
	__u32 comms;         /* and comms: they hold only where the maps say so */
	__u32 in_container;  /* the rules for callers in a container (not in the monitor's
			      * mount namespace) */
	__u32 on_host;       /* and for callers in it */
	__u32 outside;       /* the rules for calls naming a task outside the caller's mount
			      * namespace */
	__u32 other_user;    /* and a task of another real uid */
	__u32 apply;         /* enum kcmp_apply */
	__u8 action[KCMP_POLICY_RULES]; /* enum kcmp_action */
};

struct kcmp_policy_exe {
	__u64 ino;
	__u32 dev;           /* the kernel's dev_t: major << 20 | minor */
	__u32 reserved;
};

#endif
