"""KCMP-005: a 32-bit kcmp (int 0x80) from a 64-bit program: the path the kcmp tracepoints
miss and other monitors have been evaded by, which a 64-bit program has no reason to take. A
32-bit program's own calls are left alone; one whose ELF class could not be read (gone before
its event was read) is reported, said so."""

from __future__ import annotations

from ..signature import Signature
from ..types import Finding, Meta, Observation


class CompatCall(Signature):
    META = Meta("KCMP-005", "kcmp_compat_call",
                "A process made kcmp through the 32-bit system call entry",
                2, "T1562", "Impair Defenses", "Defense Evasion")

    def look(self, obs: Observation) -> Finding | None:
        if not obs.compat or obs.exe_bits == 32 or self.allowed(obs):
            return None
        program = "a 64-bit program" if obs.exe_bits == 64 else "a program of unknown class"
        return self.once(obs.host_pid, obs, f"{obs.comm} (pid {obs.host_pid}, {program}) made "
                         f"a 32-bit kcmp {obs.kcmp_type or '?'} (int 0x80)")
