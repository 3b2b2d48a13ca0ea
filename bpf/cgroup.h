/* KERNEL_CGROUP (features "cgroup", needs KERNEL_CALLER): the caller's (and with KERNEL_TARGETS
 * its targets') cgroup at the call, the name of its kernfs node (the leaf of its path, where a container's id is), in the v1
 * hierarchy of the controller CGROUP_V1_SUBSYS where one is mounted, else in the v2 one. */
#ifdef KERNEL_CGROUP
static __always_inline void read_cgroup(char *name, u64 task)
{
	u64 cset = kread64(task + BTF_TASK_CGROUPS);
#ifdef CGROUP_V1_SUBSYS
	u64 cgrp = kread64(kread64(cset + BTF_CSS_SET_SUBSYS + CGROUP_V1_SUBSYS * sizeof(u64)) +
			   BTF_CSS_CGROUP);
#else
	u64 cgrp = kread64(cset + BTF_CSS_SET_DFL_CGRP);
#endif
	u64 kn = kread64(cgrp + BTF_CGROUP_KN);
	if (kn)
		bpf_probe_read_kernel_str(name, KCMP_CGROUP_NAME,
					  (void *)kread64(kn + BTF_KERNFS_NAME));
}
#else
static __always_inline void read_cgroup(char *name, u64 task)
{
}
#endif
