"""One structured log line per permission failure, rate-limited so a flood cannot fill a disk.

The kernel counters count every call whatever this log drops; the log says what it dropped.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from ..abi import may_ptrace
from ..context.containers import display_name
from ..context.types import Containers, Context
from ..detect.types import SEVERITIES, Finding
from ..kernel.counters import SLOT_NAMES, SLOT_UNSEEN, slot_of
from ..kernel.events import Event
from ..ratelimit import TokenBucket
from .logs import logfmt

log = logging.getLogger(__name__)


def _name(comm: bytes | None) -> str | None:
    return None if comm is None else comm.decode("utf-8", "surrogateescape")


REPORT_EVERY_S = 5.0  # how often, at most, a line says how many were suppressed


class RateLimited:
    """A token bucket: `rate` lines a second on average, bursts of up to 5 seconds' worth;
    what it refuses is counted and said at most every REPORT_EVERY_S."""

    WHAT = "lines"  # what the suppressed ones were, for the line that says so

    def __init__(self, rate: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.bucket = TokenBucket(rate, max(1.0, 5 * rate), clock)
        self.suppressed = 0  # since the last line that said so
        self.suppressed_total = 0
        self._reported = self.bucket.last

    def ready(self) -> bool:
        """Whether a line could be written now (nothing is taken)."""
        return self.bucket.ready()

    def admit(self) -> bool:
        """Whether the next one gets its line (else it is counted)."""
        if self.bucket.take():
            return True
        self.suppressed += 1
        self.suppressed_total += 1
        return False

    def tick(self) -> None:
        """Between reads: say what was suppressed, at most every REPORT_EVERY_S."""
        if self.suppressed and self.clock() - self._reported >= REPORT_EVERY_S:
            self.report_suppressed()

    def report_suppressed(self) -> None:
        """Say how many lines were dropped since the last time, if any, and in all."""
        if self.suppressed:
            log.warning(logfmt(msg=f"{self.WHAT} suppressed (rate limit)",
                               suppressed=self.suppressed, total=self.suppressed_total))
            self.suppressed = 0
            self._reported = self.clock()


class PermissionLog(RateLimited):
    """A line per permission failure. admit() is asked first, before the event is given any
    context: a flood costs a token test per event, not the work of a line."""

    WHAT = "kcmp permission denied lines"

    def __init__(self, rate: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 runtime: Containers | None = None) -> None:
        super().__init__(rate, clock)
        self.runtime = runtime

    def event(self, event: Event, ctx: Context) -> None:
        """The line of an admitted permission failure."""
        log.warning(logfmt(
            msg="kcmp refused by seccomp" if event.seccomp else "kcmp permission denied",
            **self._call(event, ctx)))

    def _call(self, event: Event, ctx: Context) -> dict[str, object]:
        """The call's fields of a line: its caller, type and targets."""
        a = event.args
        t1, t2 = ctx.targets or (None, None)
        c = ctx.caller
        # The caller as the kernel saw it at the call, where the program read it.
        kernel = {} if c is None or c.caps is None else dict(
            euid=c.euid, cap_sys_ptrace=may_ptrace(c.caps),
            exe=_name(c.exe_name), pidns=c.pidns, mntns=c.mntns, netns=c.netns)
        return dict(
            kcmp_type=SLOT_NAMES[slot_of(a.type) if a else SLOT_UNSEEN],
            caller_pid=event.tgid, caller_tid=event.tid, comm=_name(event.comm),
            uid=event.uid, **kernel, pid1=a.pid1 if a else None, pid1_uid=t1 and t1.uid,
            pid1_comm=t1 and _name(t1.name), pid2=a.pid2 if a else None,
            pid2_uid=t2 and t2.uid, pid2_comm=t2 and _name(t2.name), compat=event.compat,
            seccomp=event.seccomp or None, crosses=",".join(ctx.crossings) or None,
            **self._containers(ctx))

    def _containers(self, ctx: Context) -> dict[str, str | None]:
        """The caller's container by its runtime's name (else its short id), its image and
        pod; each target's where it is in one."""
        c, (t1, t2) = ctx.caller, ctx.targets or (None, None)
        found: dict[str, str | None] = {}
        for key, cid in (("container", c and c.container_id),
                         ("pid1_container", t1 and t1.container_id),
                         ("pid2_container", t2 and t2.container_id)):
            if not cid:
                continue
            info = self.runtime.get(cid) if self.runtime is not None else None
            found[key] = display_name(cid, info and info.name)
            if key == "container" and info is not None:
                found["container_image"] = info.image
                found["pod"] = info.pod_name and f"{info.pod_namespace}/{info.pod_name}"
        return found


ENFORCEMENT_LINES_PER_S = 10.0  # the metric counts every call a rule matched


class EnforcementLog(PermissionLog):
    """The daemon's line per call a rule of the policy matched: stopped, or (a dry run, a log
    rule) marked. Bounded like the others; kcmp_enforced_total counts every one."""

    WHAT = "kcmp policy lines"

    def event(self, event: Event, ctx: Context) -> None:
        e = ctx.enforcement
        if e is None:
            return
        msg = ("kcmp call stopped" if e.applied else
               "kcmp call matched a log rule" if e.action == "log" else
               "kcmp call would be stopped")
        log.warning(logfmt(msg=msg, rule=e.rule, action=e.action, mechanism=e.mechanism,
                           ret=event.ret, **self._call(event, ctx)))


FINDINGS_PER_S = 10.0  # finding lines a second at most (bursts of 50); the metric counts all


class FindingLog(RateLimited):
    """The daemon's line per finding of the signatures: rare by design (once per caller or
    pair per window), bounded here against callers made by the thousand to fill the log."""

    WHAT = "kcmp finding lines"

    def finding(self, finding: Finding) -> None:
        if not self.admit():
            return
        m = finding.meta
        log.warning(logfmt(msg="kcmp finding", signature=m.id, name=m.name,
                           severity=SEVERITIES[m.severity], technique=m.technique,
                           summary=finding.summary))
