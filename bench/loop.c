/* The benchmark's workload: N calls of one syscall in a tight loop, timed; or a steady rate.
 * Usage: loop kcmp|kcmpfile|kcmppeer|getppid|fork N
 *                                    -> prints the calls (fork: fork+exit+wait) per second;
 *                                       kcmpfile compares an open file of its own with itself,
 *                                       kcmppeer with a child's fd of the same file
 *        loop paced RATE SECONDS     -> kcmp at RATE calls/s in 1 ms batches; prints the calls
 *        loop eperm N                -> as uid 65534, N calls comparing itself with pid 1,
 *                                       each refused with EPERM; prints the refusals
 *        loop confined-getppid N     -> getppid under a seccomp filter that refuses kcmp (as a
 *                                       container's would); prints the calls per second */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/kcmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../tests/refuse_kcmp.h"

static int paced(long rate, long seconds, pid_t me)
{
	struct timespec next;
	long per_ms = rate / 1000, calls = 0;
	clock_gettime(CLOCK_MONOTONIC, &next);
	for (long ms = 0; ms < seconds * 1000; ms++) {
		for (long i = 0; i < per_ms; i++)
			syscall(SYS_kcmp, me, me, KCMP_VM, 0, 0);
		calls += per_ms;
		next.tv_nsec += 1000000;
		if (next.tv_nsec >= 1000000000) {
			next.tv_nsec -= 1000000000;
			next.tv_sec++;
		}
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
	}
	printf("%ld\n", calls);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3 && !(argc == 4 && strcmp(argv[1], "paced") == 0))
		return 2;
	if (argc == 4) {
		prctl(PR_SET_NAME, "kcmpbench", 0, 0, 0);
		return paced(atol(argv[2]), atol(argv[3]), getpid());
	}
	long n = atol(argv[2]);
	if (strcmp(argv[1], "eperm") == 0) {
		if (setgid(65534) != 0 || setuid(65534) != 0)
			return 1;
		long refused = 0;
		for (long i = 0; i < n; i++)
			refused += syscall(SYS_kcmp, getpid(), 1, KCMP_VM, 0, 0) == -1;
		printf("%ld\n", refused);
		return 0;
	}
	if (strcmp(argv[1], "confined-getppid") == 0 && refuse_kcmp() != 0)
		return 1;
	int kcmp = strcmp(argv[1], "kcmp") == 0, forks = strcmp(argv[1], "fork") == 0;
	int peer = strcmp(argv[1], "kcmppeer") == 0;
	int file = strcmp(argv[1], "kcmpfile") == 0 || peer ? open("/etc/hostname", O_RDONLY) : -1;
	pid_t me = getpid(), other = me;
	int hold[2] = {-1, -1};
	if (peer) { /* a child holding the file until the loop ends */
		char c;
		if (pipe(hold) != 0 || (other = fork()) < 0)
			return 1;
		if (other == 0) {
			close(hold[1]);
			_exit(read(hold[0], &c, 1) < 0);
		}
		close(hold[0]);
	}
	struct timespec t0, t1;
	prctl(PR_SET_NAME, "kcmpbench", 0, 0, 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 0; i < n; i++) {
		if (kcmp) {
			syscall(SYS_kcmp, me, me, KCMP_VM, 0, 0);
		} else if (file >= 0) {
			syscall(SYS_kcmp, me, other, KCMP_FILE, file, file);
		} else if (forks) {
			pid_t child = fork();
			if (child == 0)
				_exit(0);
			waitpid(child, NULL, 0);
		} else
			syscall(SYS_getppid);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (peer) {
		close(hold[1]);
		waitpid(other, NULL, 0);
	}
	double s = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("%.0f\n", n / s);
	return 0;
}
