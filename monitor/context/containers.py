"""Which container a process runs in, from its cgroup paths."""

from __future__ import annotations

import re

# A container's id in a cgroup path: docker, containerd (CRI), CRI-O, podman, kubepods.
_CONTAINER = re.compile(rb"(?:docker|cri-containerd|crio|libpod|kubepods)[^\n]*?[-/:]"
                        rb"([0-9a-f]{64})(?:\.scope)?(?:/|$)", re.M)


def short_id(cid: str) -> str:
    """A container's id as docker shows it (12 hex digits)."""
    return cid[:12]


def display_name(cid: str, name: str | None) -> str:
    """A container by the name its runtime gives it, else by its short id."""
    return short_id(cid) if name is None else name


def container_in(cgroups: bytes) -> str:
    """The container id in cgroup paths, or "" for none."""
    found = _CONTAINER.search(cgroups)
    return found.group(1).decode() if found else ""


# A container's cgroup's own name: the id alone (cgroupfs drivers), or the systemd driver's
# scope named after the runtime.
_LEAF = re.compile(rb"(?:(?:docker|cri-containerd|crio|libpod)-)?([0-9a-f]{64})(?:\.scope)?")


def container_of_leaf(name: bytes) -> str:
    """The container id a cgroup's own name (the last part of its path) holds, or ""."""
    found = _LEAF.fullmatch(name)
    return found.group(1).decode() if found else ""
