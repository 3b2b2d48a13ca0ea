/* compat32: a 32-bit program's own kcmp calls (built -m32: its int 0x80 is its native entry).
 *
 * Usage: compat32 N
 *   Prints "compat32 pid=P", makes N kcmp(self, self, KCMP_VM) calls, then waits for stdin to
 *   close (alive, for a monitor to read its executable), then exits. */
#include <linux/kcmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	pid_t me = getpid();
	printf("compat32 pid=%d\n", me);
	fflush(stdout);
	for (int i = 0; i < atoi(argv[1]); i++)
		syscall(SYS_kcmp, me, me, KCMP_VM, 0, 0);
	char line[16];
	while (fgets(line, sizeof(line), stdin))
		;
	return 0;
}
