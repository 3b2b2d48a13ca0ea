"""kcmp-monitor: an eBPF monitor of the Linux kcmp(2) system call."""

__version__ = "0.1.0"
