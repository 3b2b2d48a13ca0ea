"""KCMP-003: one caller refused many times (EPERM), or refused against many distinct targets,
within a window: a process probing which others it may inspect. Refusals by seccomp are
KCMP-004's: the kernel never weighed those targets."""

from __future__ import annotations

from ...abi import EPERM
from ..signature import Threshold
from ..types import Finding, Meta, Observation


class PermissionProbe(Threshold):
    META = Meta("KCMP-003", "kcmp_permission_probe",
                "A process was refused kcmp many times, or against many processes",
                2, "T1057", "Process Discovery", "Discovery")
    PARAMS = {"window_s": (60, "seconds within which refusals are counted"),
              "refusals": (20, "refused calls of one caller that make a probe"),
              "distinct_targets": (5, "distinct processes refused that make a probe")}

    def look(self, obs: Observation) -> Finding | None:
        if obs.ret != -EPERM or obs.seccomp or self.allowed(obs):
            return None
        w = self.window(obs.host_pid, obs)
        w.calls += obs.repeat
        if w.reported:
            return None
        if len(w.items) < self.params["distinct_targets"]:
            w.items.update(t.host_pid or t.pid for t in obs.targets)
        if w.calls < self.params["refusals"] and \
                len(w.items) < self.params["distinct_targets"]:
            return None
        w.reported = True
        return Finding(self.META, f"{obs.comm} (pid {obs.host_pid}) was refused {w.calls} "
                       f"times against {len(w.items)} processes within "
                       f"{(obs.timestamp - w.start) / 1e9:.1f} s", (w.first, obs),
                       str(obs.host_pid))
