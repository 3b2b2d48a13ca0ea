"""The BPF program's C source (kcmp.bpf.c, kcmp.h): package data, compiled at start by
kernel/kcmp.py."""
