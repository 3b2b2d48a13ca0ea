"""Container names, images and pods from the container runtime (the Docker Engine API, through
the docker SDK, its own client), learnt on threads of their own: a lookup never waits.

What a container was is remembered after it is gone: every container there is when the
monitor starts is read once, before it says it is tracing, and each one's create and start
events (which carry its name, image and labels) as they happen; an id met that is not known
yet is looked up on the side, so a later event has it, and the miss is counted."""

from __future__ import annotations

import logging
import os
import queue
import threading
from typing import Any

from .types import ContainerInfo

log = logging.getLogger(__name__)

DOCKER_SOCKET = "/var/run/docker.sock"
REMEMBERED = 16384  # containers; the oldest seen give way
# The labels the kubelet sets on the containers of a pod (dockershim, cri-dockerd).
_POD = {"pod_name": "io.kubernetes.pod.name", "pod_namespace": "io.kubernetes.pod.namespace",
        "pod_uid": "io.kubernetes.pod.uid"}


def _info(name: str, image: str | None, image_id: str | None,
          labels: dict[str, str]) -> ContainerInfo:
    return ContainerInfo(name.lstrip("/"), image, image_id,
                         **{field: labels.get(label) for field, label in _POD.items()})


class ContainerRuntime:
    """get(id) answers from what is known; no runtime, and it knows nothing (and fails
    nothing)."""

    def __init__(self, socket: str = DOCKER_SOCKET) -> None:
        self._known: dict[str, ContainerInfo] = {}
        self._lock = threading.Lock()
        self._wanted: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._asked: set[str] = set()
        self.misses = 0  # ids met before they were known
        self.available = False
        if not os.path.exists(socket):
            return
        try:
            import docker

            self._client: Any = docker.DockerClient(base_url=f"unix://{socket}", timeout=5)
            # Before the monitor says it is tracing: the event stream first, so that no
            # container made between the two is missed, then every container there is.
            events = self._client.events(decode=True, filters={
                "type": "container", "event": ["create", "start"]})
            for c in self._client.containers.list(all=True):
                self._remember(c.id, _info(c.name, c.attrs["Config"].get("Image"),
                                           c.attrs.get("Image"), c.labels))
        except Exception as exc:  # the SDK raises its own errors and requests' alike
            log.info("container runtime not read: %s", exc)
            return
        self.available = True
        threading.Thread(target=self._follow, args=(events,), daemon=True).start()
        threading.Thread(target=self._look_up, daemon=True).start()

    def get(self, container_id: str | None) -> ContainerInfo | None:
        if not container_id or not self.available:
            return None
        info = self._known.get(container_id)
        if info is None and container_id not in self._asked:
            self._asked.add(container_id)
            self.misses += 1
            self._wanted.put(container_id)
        return info

    def _remember(self, container_id: str, info: ContainerInfo) -> None:
        with self._lock:
            if len(self._known) >= REMEMBERED:
                self._known.pop(next(iter(self._known)))
            self._known[container_id] = info

    def _follow(self, events) -> None:
        """Each container created or started from now on."""
        try:
            for event in events:
                actor = event.get("Actor", {})
                attributes = dict(actor.get("Attributes", {}))
                name = attributes.pop("name", None)
                if name is None or not actor.get("ID"):
                    continue
                # Inspected while it is there, for its image's id; what the event says
                # (name, image, labels) where it is gone already.
                if not self._inspect(actor["ID"]):
                    image = attributes.pop("image", None)
                    self._remember(actor["ID"], _info(name, image, None, attributes))
        except Exception as exc:
            log.info("container runtime events no longer read: %s", exc)

    def _inspect(self, container_id: str) -> bool:
        try:
            c = self._client.containers.get(container_id)
        except Exception:
            return False  # gone, or not a docker container: the id stays all there is
        self._remember(c.id, _info(c.name, c.attrs["Config"].get("Image"),
                                   c.attrs.get("Image"), c.labels))
        return True

    def _look_up(self) -> None:
        while True:
            container_id = self._wanted.get()
            if container_id not in self._known:
                self._inspect(container_id)
