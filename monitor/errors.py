"""Failures a user can act on: each carries its exit code and a one-line remedy."""

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69  # a kernel feature or a dependency is missing (sysexits EX_UNAVAILABLE)
EXIT_INTERNAL = 70
EXIT_NOPERM = 77
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


class MonitorError(Exception):
    exit_code = EXIT_INTERNAL


class UsageError(MonitorError):
    exit_code = EXIT_USAGE


class Unavailable(MonitorError):
    exit_code = EXIT_UNAVAILABLE


class NoPermission(MonitorError):
    exit_code = EXIT_NOPERM
