/* The benchmark's workload: N calls of one syscall in a tight loop, timed.
 * Usage: loop kcmp|getppid N   -> prints the calls per second */
#define _GNU_SOURCE
#include <linux/kcmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	long n = atol(argv[2]);
	int kcmp = strcmp(argv[1], "kcmp") == 0;
	pid_t me = getpid();
	struct timespec t0, t1;
	prctl(PR_SET_NAME, "kcmpbench", 0, 0, 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 0; i < n; i++) {
		if (kcmp)
			syscall(SYS_kcmp, me, me, KCMP_VM, 0, 0);
		else
			syscall(SYS_getppid);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("%.0f\n", n / s);
	return 0;
}
