"""KCMP-002: one caller compares many distinct fds of another process (KCMP_FILE or
KCMP_EPOLL_TFD) within a short window: a map of which of its files are whose, as a process
looking for a descriptor to reach (a socket, a file it may not open) would draw it."""

from __future__ import annotations

from ..signature import Threshold
from ..types import Finding, Meta, Observation

class FdSweep(Threshold):
    META = Meta("KCMP-002", "kcmp_fd_sweep",
                "A process compared many distinct file descriptors of another process",
                2, "T1083", "File and Directory Discovery", "Discovery")
    PARAMS = {"window_s": (10, "seconds within which the fds are counted"),
              "distinct_fds": (32, "distinct fds of one other process that make a sweep")}

    def look(self, obs: Observation) -> Finding | None:
        if obs.target_fd is None or len(obs.targets) < 2:
            return None  # no fd of pid2 named (KCMP_FILE's idx2, KCMP_EPOLL_TFD's slot tfd)
        target = obs.targets[1]
        if target.host_pid is None or target.host_pid == obs.host_pid:
            return None  # its own fds: systemd's same_fd, Mesa's same-file check
        if self.allowed(obs):
            return None
        w = self.window((obs.host_pid, target.host_pid), obs)
        if w.reported:
            return None
        w.items.add(obs.target_fd)
        if obs.swept:  # the kernel counted them, where every call is seen (the exporter)
            fds = f"{int(self.params['distinct_fds'])} (counted in the kernel)"
        elif len(w.items) < self.params["distinct_fds"]:
            return None
        else:
            fds = str(len(w.items))
        w.reported = True
        return Finding(self.META, f"{obs.comm} (pid {obs.host_pid}) compared {fds} distinct "
                       f"fds of pid {target.host_pid} within "
                       f"{(obs.timestamp - w.start) / 1e9:.1f} s", (w.first, obs),
                       f"{obs.host_pid}->{target.host_pid}")
