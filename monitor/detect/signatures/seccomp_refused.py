"""KCMP-004: a kcmp refused by the caller's seccomp filter: a process trying what its sandbox
forbids (Docker's default profile refuses kcmp to a container without CAP_SYS_PTRACE)."""

from __future__ import annotations

from ...context.containers import display_name
from ..signature import Signature
from ..types import Finding, Meta, Observation


class SeccompRefused(Signature):
    META = Meta("KCMP-004", "kcmp_seccomp_refused",
                "A process tried kcmp, which its seccomp filter forbids",
                2, "T1611", "Escape to Host", "Privilege Escalation")

    def look(self, obs: Observation) -> Finding | None:
        if not obs.seccomp or self.allowed(obs):
            return None
        where = f" in container {display_name(obs.container_id, obs.container_name)}" \
            if obs.container_id else ""
        return self.once(obs.host_pid, obs, f"{obs.comm} (pid {obs.host_pid}){where} tried "
                         f"kcmp {obs.kcmp_type or '?'}, refused by its seccomp filter")
