"""Which container a process runs in, from its cgroup paths."""

from __future__ import annotations

import re

# A container's id in a cgroup path: docker, containerd (CRI), CRI-O, podman, kubepods.
_CONTAINER = re.compile(rb"(?:docker|cri-containerd|crio|libpod|kubepods)[^\n]*?[-/:]"
                        rb"([0-9a-f]{64})(?:\.scope)?(?:/|$)", re.M)


def container_in(cgroups: bytes) -> str:
    """The container id in cgroup paths, or "" for none."""
    found = _CONTAINER.search(cgroups)
    return found.group(1).decode() if found else ""
