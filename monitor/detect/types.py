"""What the signatures read and what they make: a call as one observation (from a live record
and its context, or from a recorded JSON event: the same fields either way), and findings."""

from __future__ import annotations

from typing import Any, NamedTuple


class Seen(NamedTuple):
    """A target process of a call (pid1 or pid2), as far as it was known."""

    pid: int  # as the caller named it
    host_pid: int | None
    uid: int | None
    container_id: str | None  # "" for none; None: not read


class Observation(NamedTuple):
    """A kcmp call (or a folded run of `repeat` like it) as the signatures see it."""

    timestamp: int  # epoch ns
    host_pid: int
    host_tid: int
    comm: str  # escaped as the JSON stream shows it
    exe: str | None  # the executable's path, else its file name
    uid: int
    euid: int | None
    container_id: str | None
    container_name: str | None
    container_image: str | None
    kcmp_type: str | None  # KCMP_FILE ...; None: unknown
    idx1: int | None
    idx2: int | None
    ret: int
    seccomp: bool  # refused by seccomp before entry
    compat: bool  # a 32-bit (int 0x80) call
    targets: tuple[Seen, ...]  # () where the arguments are unknown
    repeat: int = 1
    swept: bool = False  # it completed an fd sweep the kernel counted (the exporter's)
    exe_bits: int | None = None  # 32 or 64: the caller's ELF class; None: not read
    # The fd of pid2 it names: KCMP_FILE's idx2, KCMP_EPOLL_TFD's slot tfd (idx2 is the slot's
    # address there); None for other types, or a slot not read.
    target_fd: int | None = None

    def event(self) -> dict[str, Any]:
        """The call as a finding shows what triggered it."""
        return {"timestamp": self.timestamp, "hostProcessId": self.host_pid,
                "hostThreadId": self.host_tid, "processName": self.comm,
                "executable": self.exe, "userId": self.uid, "effectiveUserId": self.euid,
                "containerId": self.container_id, "containerName": self.container_name,
                "containerImage": self.container_image, "kcmpType": self.kcmp_type,
                "idx1": self.idx1, "idx2": self.idx2, "returnValue": self.ret,
                "refusedBySeccomp": self.seccomp, "compat": self.compat, "repeat": self.repeat,
                "fdSweep": self.swept, "elfClass": self.exe_bits,
                "targetFd": self.target_fd,
                "targets": [{"pid": t.pid, "hostPid": t.host_pid, "userId": t.uid,
                             "containerId": t.container_id} for t in self.targets]}


class Meta(NamedTuple):
    """A signature's metadata, as its findings carry it."""

    id: str  # KCMP-00N
    name: str  # the finding's event name, e.g. kcmp_fd_sweep
    description: str
    severity: int  # 0 info, 1 low, 2 medium, 3 high (Tracee's scale)
    technique: str  # MITRE ATT&CK technique id
    technique_name: str
    tactic: str


SEVERITIES = ("info", "low", "medium", "high")


class Finding(NamedTuple):
    meta: Meta
    summary: str  # one line on what was seen
    events: tuple[Observation, ...]  # what triggered it (the last call, or a window's first)
    key: str  # whom it is about (a caller, a pair), for the log

    def record(self) -> dict[str, Any]:
        """Tracee's finding shape: the signature's metadata and the triggering events."""
        m = self.meta
        return {"kind": "finding", "timestamp": self.events[-1].timestamp,
                "eventName": m.name, "signatureId": m.id, "signatureName": m.name,
                "description": m.description, "severity": m.severity,
                "severityName": SEVERITIES[m.severity],
                "mitre": {"technique": m.technique, "name": m.technique_name,
                          "tactic": m.tactic},
                "summary": self.summary, "triggeredBy": [e.event() for e in self.events]}
