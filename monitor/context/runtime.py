"""Container names, images and pods from the container runtimes, learnt on threads of their
own: a lookup never waits.

Docker through its Engine API (the docker SDK, its own client): every container there is when
the monitor starts, read before it says it is tracing, and each one's create and start events
(which carry its name, image and labels) as they happen. containerd (the Kubernetes CRI's
containers) through the OCI bundle of each task (config.json, whose annotations the CRI plugin
fills with the container's and its pod's names): every bundle there is at start, and the new
ones every BUNDLE_POLL_S (containerd's events need its gRPC API). An id met
that is not known yet is looked up on the side in both, so a later event has it, and the miss
is counted. What a container was is remembered after it is gone."""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from typing import Any

from .types import ContainerInfo

log = logging.getLogger(__name__)

DOCKER_SOCKET = "/var/run/docker.sock"
# Where containerd keeps its tasks' bundles, by namespace: its own, Docker's, k3s's.
BUNDLE_ROOTS = ("/run/containerd/io.containerd.runtime.v2.task",
                "/run/docker/containerd/daemon/io.containerd.runtime.v2.task",
                "/run/k3s/containerd/io.containerd.runtime.v2.task")
REMEMBERED = 16384  # containers; the oldest seen give way
MAX_CONFIG = 1 << 20  # bytes of a bundle's config.json read
BUNDLE_POLL_S = 0.5  # how often the bundles' folders are listed for new containers
# The labels the kubelet sets on the containers of a pod (dockershim, cri-dockerd).
_POD = {"pod_name": "io.kubernetes.pod.name", "pod_namespace": "io.kubernetes.pod.namespace",
        "pod_uid": "io.kubernetes.pod.uid"}
_K8S_NAME = "io.kubernetes.container.name"
# The annotations containerd's CRI plugin sets in a task's OCI spec.
_CRI = {"pod_name": "io.kubernetes.cri.sandbox-name",
        "pod_namespace": "io.kubernetes.cri.sandbox-namespace",
        "pod_uid": "io.kubernetes.cri.sandbox-uid"}
_CRI_NAME = "io.kubernetes.cri.container-name"
_CRI_IMAGE = "io.kubernetes.cri.image-name"


def _info(name: str, image: str | None, image_id: str | None,
          labels: dict[str, str]) -> ContainerInfo:
    """A Docker container; one of a pod is named as its pod names it."""
    return ContainerInfo(labels.get(_K8S_NAME) or name.lstrip("/"), image, image_id,
                         **{field: labels.get(label) for field, label in _POD.items()})


def _inspected(c: Any) -> ContainerInfo:
    """A Docker container as the SDK's listing or inspect gives it."""
    return _info(c.name, c.attrs["Config"].get("Image"), c.attrs.get("Image"), c.labels)


def bundle_info(annotations: dict[str, str]) -> ContainerInfo | None:
    """A CRI container from its OCI annotations; None for a task the CRI did not make (its id
    is all there is)."""
    name = annotations.get(_CRI_NAME) or annotations.get(_CRI["pod_name"])
    if not name:
        return None
    return ContainerInfo(name, annotations.get(_CRI_IMAGE), None,
                         **{field: annotations.get(key) for field, key in _CRI.items()})


class Bundles:
    """containerd's task bundles under roots: config.json read for an id, or for all."""

    def __init__(self, roots: tuple[str, ...] = BUNDLE_ROOTS) -> None:
        self.roots = [root for root in roots if os.path.isdir(root)]
        self._seen: set[str] = set()  # bundles' folders listed before (read or not)

    def read(self, path: str) -> ContainerInfo | None:
        try:
            with open(path, "rb") as f:
                spec = json.loads(f.read(MAX_CONFIG))
        except (OSError, ValueError):
            return None  # gone, unreadable, or cut: the id stays all there is
        annotations = spec.get("annotations") if isinstance(spec, dict) else None
        if not isinstance(annotations, dict):
            return None
        return bundle_info({k: v for k, v in annotations.items() if isinstance(v, str)})

    def find(self, container_id: str) -> ContainerInfo | None:
        for root in self.roots:
            for namespace in _listdir(root):
                path = os.path.join(root, namespace, container_id, "config.json")
                if os.path.exists(path):
                    return self.read(path)
        return None

    def new(self) -> list[tuple[str, ContainerInfo]]:
        """The CRI's containers among the bundles not listed before (at first, all)."""
        found = []
        for root in self.roots:
            for namespace in _listdir(root):
                folder = os.path.join(root, namespace)
                for container_id in _listdir(folder):
                    path = os.path.join(folder, container_id)
                    if path in self._seen:
                        continue
                    self._seen.add(path)
                    info = self.read(os.path.join(path, "config.json"))
                    if info is not None:
                        found.append((container_id, info))
        return found


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


class ContainerRuntime:
    """get(id) answers from what is known; no runtime, and it knows nothing (and fails
    nothing)."""

    def __init__(self, socket: str = DOCKER_SOCKET,
                 bundle_roots: tuple[str, ...] = BUNDLE_ROOTS) -> None:
        self._known: dict[str, ContainerInfo] = {}
        self._lock = threading.Lock()
        self._wanted: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._asked: set[str] = set()
        self.misses = 0  # ids met before they were known
        self._bundles = Bundles(bundle_roots)
        for container_id, info in self._bundles.new():
            self._remember(container_id, info)
        self._client: Any = None
        self._events = self._docker(socket)
        self.available = self._client is not None or bool(self._bundles.roots)

    def start(self) -> None:
        """Follow Docker's events and look up what is asked for, from now on. Apart from
        reading: capabilities belong to each thread, so these start once the process has
        dropped what it will not use."""
        if not self.available:
            return
        if self._events is not None:
            threading.Thread(target=self._follow, args=(self._events,), daemon=True).start()
        threading.Thread(target=self._look_up, daemon=True).start()

    @property
    def known(self) -> int:
        return len(self._known)

    def _docker(self, socket: str):
        """Docker's containers, and its event stream from now on; None without Docker."""
        if not os.path.exists(socket):
            return None
        try:
            import docker

            client = docker.DockerClient(base_url=f"unix://{socket}", timeout=5)
            # Before the monitor says it is tracing: the event stream first, so that no
            # container made between the two is missed, then every container there is.
            events = client.events(decode=True, filters={
                "type": "container", "event": ["create", "start"]})
            for c in client.containers.list(all=True):
                self._remember(c.id, _inspected(c))
        except Exception as exc:  # the SDK raises its own errors and requests' alike
            log.info("container runtime not read: %s", exc)
            return None
        self._client = client
        return events

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
        """Each Docker container created or started from now on: known at once from what the
        event says (name, image, labels), then inspected while it is there for its image's
        id."""
        try:
            for event in events:
                actor = event.get("Actor", {})
                attributes = dict(actor.get("Attributes", {}))
                name = attributes.pop("name", None)
                if name is None or not actor.get("ID"):
                    continue
                image = attributes.pop("image", None)
                self._remember(actor["ID"], _info(name, image, None, attributes))
                self._inspect(actor["ID"])
        except Exception as exc:
            log.info("container runtime events no longer read: %s", exc)

    def _inspect(self, container_id: str) -> bool:
        if self._client is None:
            return False
        try:
            c = self._client.containers.get(container_id)
        except Exception:
            return False  # gone, not Docker's, or no longer reachable (the daemon left root)
        self._remember(c.id, _inspected(c))
        return True

    def _look_up(self) -> None:
        """Ids asked for; between them, containerd's bundles made since the last look (it
        has no event stream to follow without its gRPC API)."""
        while True:
            try:
                container_id = self._wanted.get(timeout=BUNDLE_POLL_S)
            except queue.Empty:
                for made, info in self._bundles.new():
                    self._remember(made, info)
                continue
            if container_id in self._known or self._inspect(container_id):
                continue
            found = self._bundles.find(container_id)
            if found is not None:
                self._remember(container_id, found)
