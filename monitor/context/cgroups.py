"""The cgroup v2 path behind the cgroup id every record carries, so that a caller gone before
its event is read still gets its container (the id is the cgroup directory's inode)."""

from __future__ import annotations

import os

from .refresh import MissRefreshed

MOUNTINFO = "/proc/self/mountinfo"


def cgroup2_mount(mountinfo: str = MOUNTINFO) -> str | None:
    """Where the unified (v2) hierarchy is mounted: /sys/fs/cgroup, or .../unified (hybrid)."""
    try:
        with open(mountinfo) as f:
            for line in f:
                fields = line.split()
                dash = fields.index("-")
                if fields[dash + 1] == "cgroup2":
                    return fields[4]
    except (OSError, ValueError, IndexError):
        return None
    return None


class CgroupPaths:
    """cgroup id -> path below the mount ("/system.slice/docker-<id>.scope"); the tree is
    walked again, at most every `refresh_s`, when an id is not known."""

    def __init__(self, mount: str | None, refresh_s: float = 1.0) -> None:
        self.mount = mount
        self._paths = MissRefreshed(self._walk, refresh_s)

    def path(self, cgroup_id: int) -> str | None:
        return None if self.mount is None else self._paths.get(cgroup_id, self.mount)

    @staticmethod
    def _walk(mount: str) -> dict[int, str]:
        paths = {}
        for directory, _subdirs, _files in os.walk(mount):
            try:
                inode = os.stat(directory).st_ino
            except OSError:  # removed meanwhile
                continue
            paths[inode] = "/" + os.path.relpath(directory, mount).removeprefix(".")
        return paths
