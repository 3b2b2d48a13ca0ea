"""A kcmp caller holding sockets, for the network-context tests: a TCP pair on loopback and a
Unix socket pair. Prints what it holds as one JSON line, makes 23 KCMP_FILE calls on each pair
after a line on stdin, prints "ready", and keeps everything open until stdin closes."""

import ctypes
import json
import os
import platform
import socket
import sys

KCMP_FILE, REPEAT = 0, 23
NR = {"x86_64": 312, "aarch64": 272}[platform.machine()]


def inode(sock):
    return os.stat(f"/proc/self/fd/{sock.fileno()}").st_ino


libc = ctypes.CDLL(None, use_errno=True)
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
client = socket.create_connection(listener.getsockname())
server, _ = listener.accept()
left, right = socket.socketpair()
pid = os.getpid()
print(json.dumps({"pid": pid, "tcp": [client.fileno(), server.fileno()],
                  "client": client.getsockname(), "server": server.getsockname(),
                  "unix": [left.fileno(), right.fileno()],
                  "unix_inodes": [inode(left), inode(right)]}), flush=True)
sys.stdin.readline()
for _ in range(REPEAT):
    libc.syscall(NR, pid, pid, KCMP_FILE, client.fileno(), server.fileno())
    libc.syscall(NR, pid, pid, KCMP_FILE, left.fileno(), right.fileno())
print("ready", flush=True)
sys.stdin.read()
