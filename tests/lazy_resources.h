/* For the test helpers (tests/kernel/kcmpload.c, tests/probe/clonekids.c): an I/O context and
 * a SysV semaphore undo list are allocated lazily, so two tasks that never made one compare
 * equal under kcmp. make_lazy_resources() makes both for the caller, so that a child made
 * without CLONE_IO / CLONE_SYSVSEM really differs. It returns the semaphore set's id, to be
 * removed (semctl IPC_RMID) once the children exist; -1 on failure, with errno set. */
#ifndef KCMP_TESTS_LAZY_RESOURCES_H
#define KCMP_TESTS_LAZY_RESOURCES_H

#include <linux/ioprio.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/syscall.h>
#include <unistd.h>

static int make_lazy_resources(void)
{
	struct sembuf up = {.sem_num = 0, .sem_op = 1, .sem_flg = SEM_UNDO};
	int sem;

	if (syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, IOPRIO_PRIO_VALUE(IOPRIO_CLASS_BE, 4)))
		return -1;
	sem = semget(IPC_PRIVATE, 1, 0600);
	if (sem < 0 || semop(sem, &up, 1))
		return -1;
	return sem;
}

#endif
