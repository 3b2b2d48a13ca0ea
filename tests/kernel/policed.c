/* policed: kcmp calls for the policy tests.
 *
 * Usage: policed [-u UID] [-3] [-n N] [-t TYPE] PID2
 *   Makes N calls (default 1) kcmp(self, PID2, TYPE, 0, 0), PID2 a pid or "self", TYPE by
 *   number (default KCMP_VM),
 *   64-bit or (-3) 32-bit through int 0x80, as UID where given (setuid first). Then prints
 *   "calls N same S different D eperm E other O" and exits 0. A caller the policy kills
 *   prints nothing: SIGKILL ends it on the way back from its first call. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/kcmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define IA32_NR_KCMP 349

static long kcmp64(long pid1, long pid2, long type)
{
	long r = syscall(SYS_kcmp, pid1, pid2, type, 0L, 0L);
	return r < 0 ? -errno : r;
}

static long kcmp32(long pid1, long pid2, long type)
{
	long ret;
	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "a"(IA32_NR_KCMP), "b"(pid1), "c"(pid2), "d"(type), "S"(0L), "D"(0L)
			 : "memory", "r8", "r9", "r10", "r11");
	return (int)ret;
}

int main(int argc, char **argv)
{
	long n = 1, type = KCMP_VM;
	int compat = 0, opt;
	while ((opt = getopt(argc, argv, "u:3n:t:")) != -1) {
		switch (opt) {
		case 'u':
			if (setgid(atoi(optarg)) || setuid(atoi(optarg))) {
				perror("setuid");
				return 2;
			}
			break;
		case '3':
			compat = 1;
			break;
		case 'n':
			n = atol(optarg);
			break;
		case 't':
			type = atol(optarg);
			break;
		default:
			fprintf(stderr, "usage: policed [-u UID] [-3] [-n N] [-t TYPE] PID2\n");
			return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usage: policed [-u UID] [-3] [-n N] [-t TYPE] PID2\n");
		return 2;
	}
	long self = getpid();
	long pid2 = strcmp(argv[optind], "self") ? atol(argv[optind]) : self;
	long same = 0, different = 0, eperm = 0, other = 0;
	for (long i = 0; i < n; i++) {
		long r = compat ? kcmp32(self, pid2, type) : kcmp64(self, pid2, type);
		if (r == 0)
			same++;
		else if (r > 0)
			different++;
		else if (r == -EPERM)
			eperm++;
		else
			other++;
	}
	printf("calls %ld same %ld different %ld eperm %ld other %ld\n", n, same, different,
	       eperm, other);
	return 0;
}
