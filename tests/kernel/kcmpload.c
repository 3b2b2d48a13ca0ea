/* kcmpload: makes an exact, known set of kcmp(2) calls for the kernel tests.
 *
 * Usage: kcmpload DIR [NAME]
 *   DIR holds the files the test made (a, child, and the hostile name below); NAME becomes the
 *   process name (default kcmpload). Prints "pid N", waits for a line on stdin, then makes each
 *   case REPEAT times and prints one line per case:
 *     case name=X caller=PID tid=TID uid=UID compat=0|1 pid1=.. pid2=.. type=.. idx1=.. idx2=..
 *          ret=R
 *   (raw 64-bit arguments in decimal; ret is the result or -errno, the same on every repeat),
 *   after a "fds ..." line naming its descriptors, then "ready", and keeps every fd and child alive until stdin closes. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ipc.h>
#include <sys/prctl.h>
#include <sys/sem.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lazy_resources.h"
#include "../refuse_kcmp.h"

#define REPEAT 23
#define IA32_NR_KCMP 349
#define HOSTILE_NAME "evil\x1b[31mred"

static int hold[2]; /* children block on hold[0] until the parent exits */

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static long kcmp64(unsigned long pid1, unsigned long pid2, unsigned long type,
		   unsigned long idx1, unsigned long idx2)
{
	long r = syscall(SYS_kcmp, pid1, pid2, type, idx1, idx2);
	return r < 0 ? -errno : r;
}

/* A 32-bit (compat) kcmp from this 64-bit process: i386 syscall 349 through int 0x80. */
static long kcmp32(unsigned long pid1, unsigned long pid2, unsigned long type,
		   unsigned long idx1, unsigned long idx2)
{
	long ret;
	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "a"(IA32_NR_KCMP), "b"(pid1), "c"(pid2), "d"(type), "S"(idx1), "D"(idx2)
			 : "memory", "r8", "r9", "r10", "r11");
	return (int)ret;
}

/* Not kcmp at all: the i386 kcmp number as a 64-bit syscall, where it is unassigned (ENOSYS). */
static long nr349_64(unsigned long pid1, unsigned long pid2, unsigned long type,
		     unsigned long idx1, unsigned long idx2)
{
	long r = syscall(IA32_NR_KCMP, pid1, pid2, type, idx1, idx2);
	return r < 0 ? -errno : r;
}

enum abi { ABI_64, ABI_COMPAT, ABI_NOT_KCMP };

static void run_case(const char *name, enum abi abi, unsigned long pid1, unsigned long pid2,
		     unsigned long type, unsigned long idx1, unsigned long idx2)
{
	static long (*const call[])(unsigned long, unsigned long, unsigned long, unsigned long,
				    unsigned long) = {kcmp64, kcmp32, nr349_64};
	long first = 0;
	for (int i = 0; i < REPEAT; i++) {
		long r = call[abi](pid1, pid2, type, idx1, idx2);
		if (i == 0)
			first = r;
		else if (r != first) {
			fprintf(stderr, "kcmpload: %s returned %ld then %ld\n", name, first, r);
			exit(1);
		}
	}
	printf("case name=%s caller=%d tid=%d uid=%d compat=%d pid1=%lu pid2=%lu type=%lu "
	       "idx1=%lu idx2=%lu ret=%ld\n", name, getpid(), gettid(), getuid(), abi == ABI_COMPAT,
	       pid1, pid2, type, idx1, idx2, first);
	fflush(stdout);
}

/* Forks a child that runs fn, then stays alive (for /proc lookups) until the parent exits.
 * Returns once fn is done; *fd_out gets what fn reports through the pipe, if anything. */
static pid_t spawn(void (*fn)(int report), int *fd_out)
{
	int done[2];
	if (pipe(done))
		die("pipe");
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		char c;
		close(done[0]);
		close(hold[1]);
		fn(done[1]);
		close(done[1]);
		while (read(hold[0], &c, 1) > 0)
			;
		_exit(0);
	}
	close(done[1]);
	int value = -1;
	if (read(done[0], &value, sizeof(value)) < 0)
		die("read");
	if (fd_out)
		*fd_out = value;
	close(done[0]);
	return pid;
}

static const char *dir;

static void child_open(int report)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/child", dir);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		die("open child");
	if (write(report, &fd, sizeof(fd)) != sizeof(fd))
		die("write");
}

static pid_t parent_pid;

static void unprivileged(int report)
{
	(void)report;
	if (setgid(65534) || setuid(65534))
		die("setuid");
	run_case("eperm", ABI_64, getpid(), parent_pid, KCMP_VM, 0, 0);
}

static void seccomp_refused(int report)
{
	(void)report;
	if (refuse_kcmp() != 0)
		die("seccomp");
	run_case("seccomp", ABI_64, getpid(), getpid(), KCMP_VM, 0, 0);
	/* Every register its own value, as the saved registers must give them back. */
	run_case("seccomp_args", ABI_64, getpid(), 1, KCMP_FILE, 0x12345, 0xdeadbeefUL);
}

/* A second thread of this process compares its own VM with the main thread's: the same. */
static void *thread_case(void *arg)
{
	(void)arg;
	run_case("thread_vm", ABI_64, getpid(), gettid(), KCMP_VM, 0, 0);
	return NULL;
}

static int open_in(const char *name)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		die(path);
	return fd;
}

int main(int argc, char **argv)
{
	char line[64];
	if (argc < 2) {
		fprintf(stderr, "usage: kcmpload DIR [NAME]\n");
		return 2;
	}
	dir = argv[1];
	prctl(PR_SET_NAME, argc > 2 ? argv[2] : "kcmpload", 0, 0, 0);
	parent_pid = getpid();
	unsigned long me = parent_pid;
	printf("pid %d\n", parent_pid);
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 1;

	if (pipe(hold))
		die("pipe");
	int fa = open_in("a"), fa_dup = dup(fa), fevil = open_in(HOSTILE_NAME);
	int pipefd[2];
	if (pipe(pipefd))
		die("pipe");
	int efd = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = pipefd[0]};
	if (efd < 0 || epoll_ctl(efd, EPOLL_CTL_ADD, pipefd[0], &ev))
		die("epoll");
	int sem = make_lazy_resources();
	if (sem < 0)
		die("I/O context and SysV undo list");
	int child_fd;
	unsigned long child = spawn(child_open, &child_fd);
	semctl(sem, 0, IPC_RMID);
	printf("fds a=%d a_dup=%d hostile=%d pipe=%d efd=%d child=%lu child_fd=%d\n", fa, fa_dup,
	       fevil, pipefd[0], efd, child, child_fd);

	run_case("file_same", ABI_64, me, me, KCMP_FILE, fa, fa_dup);
	run_case("file_diff", ABI_64, me, child, KCMP_FILE, fa, child_fd);
	static const struct { const char *same, *diff; int type; } plain[] = {
		{"vm_same", "vm_diff", KCMP_VM},
		{"files_same", "files_diff", KCMP_FILES},
		{"fs_same", "fs_diff", KCMP_FS},
		{"sighand_same", "sighand_diff", KCMP_SIGHAND},
		{"io_same", "io_diff", KCMP_IO},
		{"sysvsem_same", "sysvsem_diff", KCMP_SYSVSEM},
	};
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
		run_case(plain[i].same, ABI_64, me, me, plain[i].type, 0, 0);
		run_case(plain[i].diff, ABI_64, me, child, plain[i].type, 0, 0);
	}
	struct kcmp_epoll_slot hit = {.efd = efd, .tfd = pipefd[0], .toff = 0};
	struct kcmp_epoll_slot miss = {.efd = efd, .tfd = fa, .toff = 0};
	run_case("epoll_hit", ABI_64, me, me, KCMP_EPOLL_TFD, pipefd[0], (unsigned long)&hit);
	run_case("epoll_diff", ABI_64, me, me, KCMP_EPOLL_TFD, fa, (unsigned long)&hit);
	run_case("epoll_miss", ABI_64, me, me, KCMP_EPOLL_TFD, pipefd[0], (unsigned long)&miss);
	run_case("epoll_fault", ABI_64, me, me, KCMP_EPOLL_TFD, pipefd[0], 1);
	run_case("ebadf", ABI_64, me, me, KCMP_FILE, 999, fa);
	run_case("einval_types", ABI_64, me, me, KCMP_TYPES, 0, 0);
	run_case("einval_negative", ABI_64, me, me, (unsigned long)-1, 0, 0);
	run_case("einval_2a", ABI_64, me, me, 0x2a, 5, 0);
	run_case("esrch", ABI_64, me, 1073741823, KCMP_VM, 0, 0);
	run_case("esrch_truncated", ABI_64, 0xdeadca75face1057UL, me, KCMP_VM, 0, 0);
	run_case("compat_vm", ABI_COMPAT, me, me, KCMP_VM, 0, 0);
	run_case("compat_file", ABI_COMPAT, me, me, KCMP_FILE, fa, fa_dup);
	run_case("nr349_64bit", ABI_NOT_KCMP, me, me, KCMP_FS, 0, 0);
	run_case("hostile_path", ABI_64, me, me, KCMP_FILE, fevil, fevil);
	pthread_t thread;
	if (pthread_create(&thread, NULL, thread_case, NULL) || pthread_join(thread, NULL))
		die("pthread");
	spawn(unprivileged, NULL);
	spawn(seccomp_refused, NULL);

	printf("ready\n");
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin))
		;
	return 0;
}
