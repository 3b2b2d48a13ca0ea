/* The shapes in which a kcmp call names another task's fd and that task lets go of it right
 * after the call, as the kernel's, LTP's and strace's own kcmp tests do: the fd closed, the
 * thread or process gone, by the time a monitor reading /proc would look.
 *
 *   peerfds MODE DIR    files are made in DIR; every call goes to stdout-less kcmp(2)
 *
 * MODE: close   a child's fd, closed as soon as the parent's call returns
 *       thread  a sibling thread's (the same table), the thread exiting right after
 *       exit    a child's fd, the child exiting right after
 *       parent  the caller a child naming its parent, which exits as soon as the child has
 *       epoll   KCMP_EPOLL_TFD on a child's epoll, its target fd closed right after
 *       own     the caller's own fds only (for a chrooted caller)
 * No sleep anywhere: each side waits on a pipe for the other. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define KCMP_FILE 0
#define KCMP_EPOLL_TFD 7

struct kcmp_epoll_slot {
	uint32_t efd, tfd, toff;
};

static const char *dir;

static long kcmp(pid_t pid1, pid_t pid2, int type, unsigned long idx1, unsigned long idx2)
{
	return syscall(SYS_kcmp, pid1, pid2, type, idx1, idx2);
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static int open_file(const char *name)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_RDWR | O_CREAT, 0600);
	if (fd < 0)
		die(path);
	return fd;
}

static void put(int fd, int v)
{
	if (write(fd, &v, sizeof(v)) != sizeof(v))
		die("write");
}

static int get(int fd)
{
	int v = -1;
	if (read(fd, &v, sizeof(v)) != sizeof(v))
		die("read");
	return v;
}

/* A child that opens its own file (or, with epoll, its epoll on the shared pipe), says which
 * fds, waits for the parent's call, then lets go as the mode says. */
static void child(const char *mode, int up, int down, int pipe_rd)
{
	if (!strcmp(mode, "epoll")) {
		int efd = epoll_create1(0);
		struct epoll_event ev = {.events = EPOLLIN};
		if (efd < 0 || epoll_ctl(efd, EPOLL_CTL_ADD, pipe_rd, &ev))
			die("epoll");
		put(up, efd);
		get(down);
		close(pipe_rd);
	} else {
		int fd = open_file("child-file");
		put(up, fd);
		get(down);
		if (!strcmp(mode, "exit"))
			_exit(0);
		close(fd);
	}
	put(up, 0);
	get(down); /* until the parent lets it end */
	_exit(0);
}

static void with_child(const char *mode)
{
	int up[2], down[2], shared[2];
	if (pipe(up) || pipe(down) || pipe(shared))
		die("pipe");
	int mine = open_file("parent-file");
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0)
		child(mode, up[1], down[0], shared[0]);
	int theirs = get(up[0]);
	if (!strcmp(mode, "epoll")) {
		struct kcmp_epoll_slot slot = {.efd = theirs, .tfd = shared[0], .toff = 0};
		kcmp(getpid(), pid, KCMP_EPOLL_TFD, shared[0], (unsigned long)&slot);
	} else {
		kcmp(getpid(), pid, KCMP_FILE, mine, theirs);
	}
	put(down[1], 1);
	if (strcmp(mode, "exit")) {
		get(up[0]);
		put(down[1], 1);
	}
	waitpid(pid, NULL, 0);
}

static int sibling_up[2], sibling_down[2];

static void *sibling(void *unused)
{
	put(sibling_up[1], (int)gettid());
	put(sibling_up[1], open_file("thread-file"));
	get(sibling_down[0]);
	return NULL; /* exits right after the call */
}

static void with_thread(void)
{
	pthread_t t;
	if (pipe(sibling_up) || pipe(sibling_down))
		die("pipe");
	int mine = open_file("parent-file");
	if (pthread_create(&t, NULL, sibling, NULL))
		die("pthread_create");
	pid_t tid = get(sibling_up[0]);
	int theirs = get(sibling_up[0]);
	kcmp(getpid(), tid, KCMP_FILE, mine, theirs);
	put(sibling_down[1], 1);
	pthread_join(t, NULL);
}

/* The caller a child naming its parent, which waits for it and exits when it has. */
static void with_parent(void)
{
	int fd = open_file("parent-file");
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		kcmp(getppid(), getpid(), KCMP_FILE, fd, fd);
		_exit(0);
	}
	waitpid(pid, NULL, 0);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: peerfds close|thread|exit|parent|epoll|own DIR\n");
		return 2;
	}
	const char *mode = argv[1];
	dir = argv[2];
	if (!strcmp(mode, "thread")) {
		with_thread();
	} else if (!strcmp(mode, "parent")) {
		with_parent();
	} else if (!strcmp(mode, "own")) {
		int a = open_file("own-file"), b = dup(a);
		kcmp(getpid(), getpid(), KCMP_FILE, a, b);
	} else {
		with_child(mode);
	}
	return 0;
}
