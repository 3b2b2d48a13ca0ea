"""KCMP-005: a 32-bit kcmp (int 0x80, or a 32-bit program): the path the kcmp tracepoints
miss and other monitors have been evaded by. A 64-bit program has no reason to take it; a
32-bit one that needs kcmp belongs on the allowlist."""

from __future__ import annotations

from ..signature import Signature
from ..types import Finding, Meta, Observation


class CompatCall(Signature):
    META = Meta("KCMP-005", "kcmp_compat_call",
                "A process made kcmp through the 32-bit system call entry",
                2, "T1562", "Impair Defenses", "Defense Evasion")

    def look(self, obs: Observation) -> Finding | None:
        if not obs.compat or self.allowed(obs):
            return None
        return self.once(obs.host_pid, obs, f"{obs.comm} (pid {obs.host_pid}) made a 32-bit "
                         f"kcmp {obs.kcmp_type or '?'} (int 0x80)")
