"""The kernel side's user half: compiling and attaching bpf/kcmp.bpf.c, reading its ring buffer
and maps, and the Python mirrors of the layouts in bpf/kcmp.h."""
