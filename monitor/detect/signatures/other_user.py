"""KCMP-006: a successful kcmp on a process of another user by a program not on the
allowlist: it learnt what that user's process shares (root's, usually: kcmp needs ptrace
access, which root and CAP_SYS_PTRACE have over everyone)."""

from __future__ import annotations

from ..signature import Signature
from ..types import Finding, Meta, Observation


class OtherUser(Signature):
    META = Meta("KCMP-006", "kcmp_other_user",
                "A process compared a process of another user",
                1, "T1057", "Process Discovery", "Discovery")

    def look(self, obs: Observation) -> Finding | None:
        if obs.ret < 0:
            return None
        me = obs.euid if obs.euid is not None else obs.uid
        for t in obs.targets:
            if t.uid is not None and t.uid != me:
                if self.allowed(obs):
                    return None
                return self.once((obs.host_pid, t.uid), obs,
                                 f"{obs.comm} (pid {obs.host_pid}, uid {me}) compared pid "
                                 f"{t.host_pid} of uid {t.uid}")
        return None
