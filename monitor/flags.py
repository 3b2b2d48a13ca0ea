"""Every command-line flag's spelling, by the name its value goes by: the parsers declare the
flags from this table, and every message that names one takes it from here."""

from __future__ import annotations

FLAGS = {
    # the monitor: its modes
    "version": "--version",
    "trace": "--trace",
    "check": "--check",
    "context": "--context",
    "listen": "--web.listen-address",
    "max_connections": "--web.max-connections",
    "max_requests": "--web.max-requests",
    "read_timeout": "--web.read-timeout",
    "web_config": "--web.config.file",
    "eperm_log_rate": "--eperm-log-rate",
    "events_file": "--events-file",
    "events_file_max_size_mb": "--events-file-max-size-mb",
    "events_file_max_backups": "--events-file-max-backups",
    "events_file_compress": "--events-file-compress",
    "detect": "--detect",
    "no_detect": "--no-detect",
    "rules": "--rules",
    "enforce": "--enforce",
    "own_paths_only": "--own-paths-only",
    "output": "--output",
    # the trace stream's filters, applied in the kernel
    "pid": "--pid",
    "comm": "--comm",
    "uid": "--uid",
    "types": "--type",
    "errors_only": "--errors-only",
    # tuning
    "compat": "--no-compat",
    "compat_timing": "--compat-timing",
    "hooks": "--hooks",
    "fold": "--no-fold",
    "fold_window": "--fold-window",
    "ringbuf_pages": "--ringbuf-pages",
    "btf": "--btf",
    "namespaces_of": "--namespaces-of",
    # kcmp-monitor probe
    "fd": "--fd",
    "epoll": "--epoll",
    "shared_files": "--shared-files",
    "all": "--all",
    "freeze": "--freeze",
    "json": "--json",
    "timeout": "--timeout",
    # kcmp-monitor detect
    "print_rules": "--print-rules",
}


def flag(name: str) -> str:
    """The spelling of the flag whose value is called name."""
    return FLAGS[name]
