"""Processes whose fds share open file descriptions in known ways, for the probe tests.

Usage: python fdtree.py DIR        prints one JSON line naming every fd, then waits for stdin
       python fdtree.py DIR --scale N M   N children inheriting M opens of one file

A (this process): x1 = open(DIR/x), x2 = dup(x1), x3 = open(DIR/x) again (another description),
a pipe (r, w), an epoll fd watching r, a Unix socket pair; C (forked first, before any of it) is
sent w over the socket (SCM_RIGHTS); B (forked last) inherits everything.
"""

import json
import os
import select
import socket
import sys


def wait_for_eof():
    sys.stdin.read()


def fork(fn):
    pid = os.fork()
    if pid == 0:
        try:
            fn()
        finally:
            os._exit(0)
    return pid


def tree(directory):
    path = os.path.join(directory, "x")
    open(path, "w").close()
    parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    received = {}
    report_r, report_w = os.pipe()

    def c_main():
        parent_end.close()
        _, fds, _, _ = socket.recv_fds(child_end, 1, 1)
        os.write(report_w, str(fds[0]).encode())
        wait_for_eof()

    c = fork(c_main)
    child_end.close()
    x1 = os.open(path, os.O_RDONLY)
    x2 = os.dup(x1)
    x3 = os.open(path, os.O_RDONLY)
    r, w = os.pipe()
    ep = select.epoll()
    ep.register(r, select.EPOLLIN)
    socket.send_fds(parent_end, [b"w"], [w])
    received["w"] = int(os.read(report_r, 16))
    b = fork(wait_for_eof)
    print(json.dumps({"A": os.getpid(), "B": b, "C": c, "x1": x1, "x2": x2, "x3": x3, "r": r,
                      "w": w, "epoll": ep.fileno(), "sock": parent_end.fileno(),
                      "c_w": received["w"]}), flush=True)
    wait_for_eof()


def scale(directory, children, opens):
    path = os.path.join(directory, "x")
    open(path, "w").close()
    fds = [os.open(path, os.O_RDONLY) for _ in range(opens)]
    kids = [fork(wait_for_eof) for _ in range(children)]
    print(json.dumps({"A": os.getpid(), "children": kids, "fds": fds, "dir": directory}),
          flush=True)
    wait_for_eof()


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[2] == "--scale":
        scale(sys.argv[1], int(sys.argv[3]), int(sys.argv[4]))
    else:
        tree(sys.argv[1])
