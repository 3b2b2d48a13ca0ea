"""kcmp-monitor: an eBPF monitor of the Linux kcmp(2) system call."""

__version__ = "0.1.0"
PROG = "kcmp-monitor"  # the command's name, in every line it prints
