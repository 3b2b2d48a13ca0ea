"""Callers for the context tests, each renamed so that a monitor can filter on it.

  outer PID   compare this process with PID (a host pid), REPEAT times
  inner       (run as pid 1 of a new pid namespace) compare itself with a child in the same
              namespace and with a process of a namespace nested in it, by their numbers here
  shortlived  fork children that each make one call against this process and exit at once
  alone       (run as pid 1 of a new pid namespace) compare itself with a child there; both
              are gone once stdin closes

Prints one JSON line of what it made, waits for "go", calls, prints "ready", waits for EOF.
"""

import ctypes
import json
import os
import signal
import subprocess
import sys
import time

REPEAT = 23
KCMP_VM = 1
NAME = b"nscaller"

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def kcmp(pid1, pid2):
    return libc.syscall(312, pid1, pid2, KCMP_VM, 0, 0)


def child_of(parent, timeout=10.0):
    """The pid (as this process's /proc numbers it) of a child of parent."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat[stat.rfind(b")") + 2:].split()[1]) == parent:
                return int(entry)
        time.sleep(0.01)
    raise AssertionError(f"no child of {parent}")


def main():
    libc.prctl(15, NAME, 0, 0, 0)  # PR_SET_NAME
    mode = sys.argv[1]
    kids = []
    made = {"pid": os.getpid()}
    if mode == "alone":
        kids.append(subprocess.Popen(["sleep", "1000"]))
        made.update(child=kids[0].pid)
        calls = [(os.getpid(), made["child"])]
    elif mode == "inner":
        kids.append(subprocess.Popen(["sleep", "1000"]))
        nested = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "sleep", "1000"])
        kids.append(nested)
        made.update(child=kids[0].pid, nested=child_of(nested.pid))
        calls = [(os.getpid(), made["child"]), (os.getpid(), made["nested"])]
    elif mode == "outer":
        calls = [(os.getpid(), int(sys.argv[2]))]
    else:
        calls = []
    print(json.dumps(made), flush=True)
    assert sys.stdin.readline() == "go\n"
    if mode == "shortlived":
        children = []
        for _ in range(REPEAT):
            pid = os.fork()
            if pid == 0:
                kcmp(os.getpid(), os.getppid())
                os._exit(0)
            children.append(pid)
        for pid in children:
            os.waitpid(pid, 0)
        made["children"] = children
    for pid1, pid2 in calls:
        for _ in range(REPEAT):
            assert kcmp(pid1, pid2) >= 0, ctypes.get_errno()
    print(json.dumps(made), flush=True)
    print("ready", flush=True)
    sys.stdin.read()
    for kid in kids:
        os.kill(kid.pid, signal.SIGKILL)
        kid.wait()


if __name__ == "__main__":
    main()
