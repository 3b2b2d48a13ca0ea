/* The kernel side's rules that user space applies too, to records it makes itself (the folded
 * runs it streams: monitor/kernel/kinds.py). Plain C over the record's fields, so that
 * tests/unit/test_kinds.py compiles this file and holds the Python to it. */

/* The priority lane's kinds of call (the lane itself: lane.h): a permission failure, a
 * 32-bit call, a seccomp refusal, a caller outside one of the monitor's namespaces. */
static __always_inline bool urgent_call(__u32 flags, __s64 ret, __u32 bits)
{
	return ret == -EPERM_ERRNO || (flags & (KCMP_EV_COMPAT | KCMP_EV_SECCOMP)) || bits;
}

/* A call that names fds (KCMP_FILE, KCMP_EPOLL_TFD) whose arguments are known. */
static __always_inline bool record_names_files(__u32 flags, __s32 type)
{
	return (flags & (KCMP_EV_ENTRY | KCMP_EV_REGS)) &&
	       (type == KCMP_FILE_TYPE || type == KCMP_EPOLL_TFD);
}
