/* KERNEL_FILES (features "files", needs KERNEL_CALLER): the fds a call names, as the tables of
 * the tasks it named held them at the call (the caller's own; with KERNEL_TARGETS any task's):
 * each file's inode, device, file system and path, by a walk of dentries and mounts up to the
 * caller's root (a chroot's, a container's) or, for a file outside it, the root of its mount
 * namespace, as /proc/<pid>/fd shows it to a process sharing the caller's root. */
#ifdef KERNEL_FILES
#ifndef KERNEL_CALLER
#error "KERNEL_FILES reads the caller's pids that KERNEL_CALLER reads"
#endif
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

/* The caller's root (task->fs->root), where its paths begin. */
struct fs_root {
	u64 mnt;
	u64 dentry;
};

/* What d_path() would give for the file to a process with that root: the names of the dentries
 * up to the root, or to each mount's root, crossing to the mount it sits on, until the mount
 * namespace's root mount. */
static __always_inline void file_path(struct kcmp_file *f, u64 file, char *buf,
				      struct fs_root *root)
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
		if (dentry == root->dentry && vfsmnt == root->mnt) {
			done = true;
			break;
		}
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

static __always_inline void read_fd(struct kcmp_file *f, u64 task, u32 fd, char *buf,
				   struct fs_root *root)
{
	f->flags = KCMP_FILE_LOOKED;
	u64 file = fd_file(task, fd);
	if (!file)
		return;
	u64 inode = kread64(file + BTF_FILE_INODE);
	u64 sb = kread64(inode + BTF_INODE_SB);
	f->flags |= KCMP_FILE_OPEN;
	f->ino = kread64(inode + BTF_INODE_INO);
	f->dev = kread32(sb + BTF_SB_DEV);
	f->magic = (u32)kread64(sb + BTF_SB_MAGIC);
	file_path(f, file, buf, root);
}

/* As strace resolves them: idx1 against pid1's task; idx2 and the epoll slot's efd and tfd
 * against pid2's (0: not known as a task: not read). */
static __always_inline void read_files(struct kcmp_record_files *r, u64 task1, u64 task2)
{
	u32 zero = 0;
	struct path_scratch *scratch = path_scratch.lookup(&zero);
	if (!scratch)
		return;
	struct kcmp_event *e = &r->record.event;
	u32 fds[KCMP_FILES] = {(u32)e->idx1, (u32)e->idx2, 0};
	u64 tasks[KCMP_FILES] = {task1, task2, 0};
	if ((s32)e->type == KCMP_EPOLL_TFD) {
		bool slot = e->flags & KCMP_EV_SLOT_READ;
		fds[1] = e->slot_efd;
		fds[2] = e->slot_tfd;
		tasks[1] = slot ? task2 : 0;
		tasks[2] = tasks[1];
	}
	u64 fs = kread64(bpf_get_current_task() + BTF_TASK_FS);
	struct fs_root root = {.mnt = kread64(fs + BTF_FS_ROOT_MNT),
			       .dentry = kread64(fs + BTF_FS_ROOT_DENTRY)};
	/* Unrolled: the verifiers of 5.10 and 6.1 refuse a loop whose back edge is a helper call's
	 * fall-through, as this one's was ("back-edge from insn N to N+1"). */
#pragma unroll
	for (int k = 0; k < KCMP_FILES; k++)
		if (tasks[k])
			read_fd(&r->files[k], tasks[k], fds[k], scratch->buf, &root);
}

/* A call that names fds, whose record has room for them. */
static __always_inline bool names_files(struct kcmp_event *call)
{
	return record_names_files(call->flags, (s32)call->type);
}

static __always_inline void read_named_files(struct kcmp_record_files *rec, bool files,
					    u64 task1, u64 task2)
{
	if (files) {
		__builtin_memset(rec->files, 0, sizeof(rec->files));
		read_files(rec, task1, task2);
	}
}
#else
static __always_inline bool names_files(struct kcmp_event *call)
{
	return false;
}

static __always_inline void read_named_files(struct kcmp_record_files *rec, bool files,
					    u64 task1, u64 task2)
{
}
#endif
