"""KCMP-001: a caller in a container compares a process outside its container, or in another
one. kcmp tells it which of that process's files, memory and fd tables are its own: from a
container, a view across the boundary its runtime drew."""

from __future__ import annotations

from ...context.containers import display_name, short_id
from ..signature import Signature
from ..types import Finding, Meta, Observation


class CrossContainer(Signature):
    META = Meta("KCMP-001", "kcmp_cross_container",
                "A process in a container compared a process outside its container",
                3, "T1613", "Container and Resource Discovery", "Discovery")

    def look(self, obs: Observation) -> Finding | None:
        own = obs.container_id
        if not own or self.allowed(obs):
            return None  # not in a container, or its cgroup could not be read
        for t in obs.targets:
            if t.container_id is None or t.container_id == own:
                continue  # unknown, or the same container
            where = f"container {short_id(t.container_id)}" if t.container_id else "the host"
            return self.once((obs.host_pid, t.host_pid), obs,
                             f"{obs.comm} (pid {obs.host_pid}) in container "
                             f"{display_name(own, obs.container_name)} compared pid {t.host_pid} "
                             f"of {where}")
        return None
