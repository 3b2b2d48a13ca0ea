/* ownfds: compares its own fds with kcmp, then exits at once, so that nothing of it is left in
 * /proc when a monitor reads the events. Built static, so that it also runs alone in a
 * container image.
 *
 * Usage: ownfds DIR [PEER]
 *   Opens, in DIR: a file, and a file it then deletes; and a pipe, a socket pair, an epoll fd
 *   watching the pipe, and a memfd. Prints one line:
 *     ownfds pid=P ppid=PP exe_ino=I pidns=.. mntns=.. netns=.. userns=.. utsns=.. ipcns=..
 *            cgroupns=.. file=F deleted=D pipe=R socket=S epoll=E memfd=M
 *   (as its own pid namespace and /proc see it), waits for a line on stdin, makes each call
 *   REPEAT times: kcmp(self, self, KCMP_FILE, fd, fd) for each fd, KCMP_EPOLL_TFD of the
 *   pipe in the epoll fd, and KCMP_FILE with fd numbers of 2^31 and above (EBADF); with a
 *   PEER pid, then kcmp(self, PEER, KCMP_VM, 0, 0) REPEAT times too; then exits. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/kcmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define REPEAT 23

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static unsigned long inode_of(const char *path)
{
	struct stat st;
	if (stat(path, &st))
		die(path);
	return st.st_ino;
}

static void calls(pid_t me, unsigned long type, unsigned long idx1, unsigned long idx2)
{
	for (int i = 0; i < REPEAT; i++)
		syscall(SYS_kcmp, me, me, type, idx1, idx2);
}

int main(int argc, char **argv)
{
	if (argc != 2 && argc != 3)
		die("usage: ownfds DIR [PEER]");
	prctl(PR_SET_NAME, "ownfds", 0, 0, 0);
	char path[4096];
	snprintf(path, sizeof(path), "%s/own", argv[1]);
	int file = open(path, O_RDWR | O_CREAT, 0600);
	snprintf(path, sizeof(path), "%s/deleted", argv[1]);
	int deleted = open(path, O_RDWR | O_CREAT, 0600);
	if (file < 0 || deleted < 0 || unlink(path))
		die("open");
	int pipefd[2], sv[2];
	if (pipe(pipefd) || socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		die("pipe");
	int epfd = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = pipefd[0]};
	if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, pipefd[0], &ev))
		die("epoll");
	int memfd = memfd_create("ownfds", 0);
	if (memfd < 0)
		die("memfd_create");
	static const char *const ns[] = {"pid", "mnt", "net", "user", "uts", "ipc", "cgroup"};
	printf("ownfds pid=%d ppid=%d exe_ino=%lu", getpid(), getppid(), inode_of("/proc/self/exe"));
	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		snprintf(path, sizeof(path), "/proc/self/ns/%s", ns[i]);
		printf(" %sns=%lu", ns[i], inode_of(path));
	}
	printf(" file=%d deleted=%d pipe=%d socket=%d epoll=%d memfd=%d\n", file, deleted,
	       pipefd[0], sv[0], epfd, memfd);
	fflush(stdout);
	char line[16];
	if (!fgets(line, sizeof(line), stdin))
		die("stdin");

	pid_t me = getpid();
	int fds[] = {file, deleted, pipefd[0], sv[0], epfd, memfd};
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		calls(me, KCMP_FILE, fds[i], fds[i]);
	struct kcmp_epoll_slot slot = {.efd = epfd, .tfd = pipefd[0], .toff = 0};
	calls(me, KCMP_EPOLL_TFD, pipefd[0], (unsigned long)(uintptr_t)&slot);
	calls(me, KCMP_FILE, 0x80000003UL, 0xdeadbeefUL);
	if (argc == 3) {
		pid_t peer = atoi(argv[2]);
		for (int i = 0; i < REPEAT; i++)
			syscall(SYS_kcmp, me, peer, KCMP_VM, 0, 0);
	}
	return 0;
}
