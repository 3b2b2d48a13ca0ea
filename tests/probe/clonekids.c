/* clonekids: children made with known sharing, for the probe tests.
 * Prints "parent PID", "NAME PID" for each child and "thread TID", then "ready", and keeps them
 * all alive until stdin closes. Before cloning it makes an I/O context and a SysV undo list
 * (lazy_resources.h), so that a child without CLONE_IO or CLONE_SYSVSEM really differs. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../lazy_resources.h"

static int hold[2];

static int child(void *arg)
{
	char c;
	(void)arg;
	while (read(hold[0], &c, 1) > 0)
		;
	return 0;
}

static int tid_pipe[2];

static void *thread(void *arg)
{
	pid_t tid = gettid();
	if (write(tid_pipe[1], &tid, sizeof(tid)) != sizeof(tid))
		return NULL;
	child(arg);
	return NULL;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

int main(void)
{
	static const struct { const char *name; int flags; } kids[] = {
		{"fork", 0},
		{"vm", CLONE_VM},
		{"files", CLONE_FILES},
		{"fs", CLONE_FS},
		{"sighand", CLONE_VM | CLONE_SIGHAND},
		{"io", CLONE_IO},
		{"sysvsem", CLONE_SYSVSEM},
		{"all", CLONE_VM | CLONE_FILES | CLONE_FS | CLONE_SIGHAND | CLONE_IO | CLONE_SYSVSEM},
	};
	pid_t pids[sizeof(kids) / sizeof(kids[0])];
	char line[16];

	if (pipe(hold))
		die("pipe");
	int sem = make_lazy_resources();
	if (sem < 0)
		die("I/O context and SysV undo list");
	printf("parent %d\n", getpid());
	for (size_t i = 0; i < sizeof(kids) / sizeof(kids[0]); i++) {
		size_t size = 1 << 16;
		char *stack = malloc(size);
		pids[i] = clone(child, stack + size, kids[i].flags | SIGCHLD, NULL);
		if (pids[i] < 0)
			die(kids[i].name);
		printf("%s %d\n", kids[i].name, pids[i]);
	}
	pthread_t t;
	pid_t tid;
	if (pipe(tid_pipe) || pthread_create(&t, NULL, thread, NULL) ||
	    read(tid_pipe[0], &tid, sizeof(tid)) != sizeof(tid))
		die("pthread");
	printf("thread %d\n", tid);
	semctl(sem, 0, IPC_RMID);
	printf("ready\n");
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin))
		;
	for (size_t i = 0; i < sizeof(kids) / sizeof(kids[0]); i++)
		kill(pids[i], SIGKILL);
	return 0;
}
