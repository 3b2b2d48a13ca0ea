"""Failures a user can act on: each carries its exit code and a one-line remedy. Every exit
code the program uses is here."""

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_DATAERR = 65  # sysexits EX_DATAERR: input lines that were not what they should be
EXIT_NO_SUCH = 66  # sysexits EX_NOINPUT: the process or fd named is not there (probe)
EXIT_UNAVAILABLE = 69  # a kernel feature or a dependency is missing (sysexits EX_UNAVAILABLE)
EXIT_INTERNAL = 70
EXIT_IOERR = 74  # sysexits EX_IOERR: the output could not be written (full, gone, stalled)
EXIT_ADDRESS_IN_USE = 75  # sysexits EX_TEMPFAIL: free the port, or pick another, and retry
EXIT_NOPERM = 77
EXIT_TIMEOUT = 124  # a kcmp call blocked (probe), as timeout(1) reports it
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


class MonitorError(Exception):
    exit_code = EXIT_INTERNAL


class UsageError(MonitorError):
    exit_code = EXIT_USAGE


class Unavailable(MonitorError):
    exit_code = EXIT_UNAVAILABLE


class NoPermission(MonitorError):
    exit_code = EXIT_NOPERM


class BadData(MonitorError):
    exit_code = EXIT_DATAERR


class NoSuchTarget(MonitorError):
    exit_code = EXIT_NO_SUCH


class OutputFailed(MonitorError):
    exit_code = EXIT_IOERR


class OutputStalled(OutputFailed):
    """Raised from the signal handler when a stop asked for has not come about in time: a
    write to a reader that reads nothing blocks until then."""


class AddressInUse(MonitorError):
    exit_code = EXIT_ADDRESS_IN_USE


class ProbeTimeout(MonitorError):
    exit_code = EXIT_TIMEOUT
