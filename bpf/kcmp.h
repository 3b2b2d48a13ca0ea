/* The record one kcmp call produces. monitor/events.py mirrors this layout byte for byte;
 * tests/unit/test_events.py compiles this header to hold the two to the same contract. */
#ifndef KCMP_MONITOR_KCMP_H
#define KCMP_MONITOR_KCMP_H

#include <linux/types.h>

#define KCMP_EV_ENTRY      0x1 /* entry seen: arguments, slot and duration are valid */
#define KCMP_EV_COMPAT     0x2 /* 32-bit caller (int 0x80 / ia32 entry) */
#define KCMP_EV_SLOT_READ  0x4 /* epoll slot copied from the caller at entry */
#define KCMP_EV_SLOT_FAULT 0x8 /* epoll slot pointer unreadable at entry */

#define KCMP_STAT_DROPPED     0 /* ring buffer full: event lost */
#define KCMP_STAT_INFLIGHT    1 /* in-flight map full: entry not kept */
#define KCMP_STAT_COUNT       2

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
};

#endif
