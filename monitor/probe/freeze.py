"""--freeze: the targets stopped while they are probed, and always resumed."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from .. import PROG
from ..errors import NoPermission, NoSuchTarget, UsageError
from ..flags import flag
from .logic import Proc


@contextmanager
def frozen(pids: Iterable[int], proc: Proc, settle_s: float = 2.0,
           strict: bool = True) -> Iterator[list[int]]:
    """SIGSTOP the targets for the duration, and always SIGCONT the ones this stopped: on
    return, on error and on Ctrl-C. A target already stopped is left as it was; with
    strict=False one that is gone or may not be signalled is left out."""
    stopped: list[int] = []
    try:
        for pid in pids:
            try:
                task = proc.task(pid)
                if task.tgid == os.getpid():
                    raise UsageError(f"{flag('freeze')} cannot stop {PROG} itself")
                if task.tgid in stopped or task.state in "Tt":
                    continue
                # Listed before it is signalled: a Ctrl-C between the two still resumes it.
                stopped.append(task.tgid)
                try:
                    os.kill(task.tgid, signal.SIGSTOP)
                except OSError:
                    stopped.pop()
                    raise
            except PermissionError:
                if strict:
                    raise NoPermission(f"{flag('freeze')} cannot stop {pid}: CAP_KILL (root) "
                                       "or the same uid is needed") from None
                continue
            except (NoSuchTarget, ProcessLookupError):
                if strict:
                    raise
                continue
        deadline = time.monotonic() + settle_s
        for pid in stopped:
            while proc.task(pid).state not in "TtZX" and time.monotonic() < deadline:
                time.sleep(0.005)
        yield stopped
    finally:
        for pid in stopped:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
