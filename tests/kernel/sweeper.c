/* sweeper: the detection tests' workloads, each a known behaviour made once.
 *
 * Usage: sweeper MODE N
 *   sweep  forks a child that becomes uid 65534 holding N more fds, and compares each of them
 *          with its own fd 0 (kcmp(self, child, KCMP_FILE, 0, fd)): an fd sweep of another
 *          user's process
 *   own    compares N of its own fds with themselves (kcmp(self, self, KCMP_FILE, fd, fd)),
 *          as systemd's same_fd and Mesa's same-file check do
 *   tree   forks two children and compares their N fds and their memory pairwise
 *          (kcmp(c1, c2, KCMP_FILE, fd, fd), KCMP_VM), as CRIU's dump does
 *   compat makes N 32-bit kcmp(self, self, KCMP_VM) calls (int 0x80)
 * Prints "sweeper pid=P child=C" (C: 0 without children) before its calls, then waits for
 * stdin to close (its targets alive, for a monitor to read them), then exits. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/kcmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define IA32_NR_KCMP 349

static void die(const char *what)
{
	perror(what);
	exit(1);
}

/* A child holding the fds, as uid 65534 where asked, until killed. */
static pid_t child(int nobody)
{
	int ready[2];
	if (pipe(ready))
		die("pipe");
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		if (nobody && setresuid(65534, 65534, 65534))
			die("setresuid");
		if (write(ready[1], "x", 1) != 1)
			die("write");
		for (;;)
			pause();
	}
	char c;
	if (read(ready[0], &c, 1) != 1)
		die("read");
	close(ready[0]);
	close(ready[1]);
	return pid;
}

int main(int argc, char **argv)
{
	if (argc != 3)
		die("usage: sweeper sweep|own|tree|compat N");
	int n = atoi(argv[2]);
	for (int i = 0; i < n; i++)
		if (open("/dev/null", O_RDONLY) < 0)
			die("open");
	pid_t me = getpid(), c1 = 0, c2 = 0;
	if (strcmp(argv[1], "sweep") == 0 || strcmp(argv[1], "tree") == 0)
		c1 = child(strcmp(argv[1], "sweep") == 0);
	if (strcmp(argv[1], "tree") == 0)
		c2 = child(0);
	printf("sweeper pid=%d child=%d\n", me, c1);
	fflush(stdout);
	int first = 3;  /* the fds opened above */
	for (int fd = first; fd < first + n; fd++) {
		if (strcmp(argv[1], "sweep") == 0)
			syscall(SYS_kcmp, me, c1, KCMP_FILE, 0, fd);
		else if (strcmp(argv[1], "own") == 0)
			syscall(SYS_kcmp, me, me, KCMP_FILE, fd, fd);
		else if (strcmp(argv[1], "tree") == 0) {
			syscall(SYS_kcmp, c1, c2, KCMP_FILE, fd, fd);
			syscall(SYS_kcmp, c1, c2, KCMP_VM, 0, 0);
		}
	}
	if (strcmp(argv[1], "compat") == 0)
		for (int i = 0; i < n; i++) {
			long ret;
			__asm__ volatile("int $0x80" : "=a"(ret)
					 : "a"(IA32_NR_KCMP), "b"(me), "c"(me), "d"(KCMP_VM), "S"(0), "D"(0)
					 : "memory");
		}
	char line[16];
	while (fgets(line, sizeof(line), stdin))
		;
	if (c1)
		kill(c1, SIGKILL);
	if (c2)
		kill(c2, SIGKILL);
	while (wait(NULL) > 0)
		;
	return 0;
}
