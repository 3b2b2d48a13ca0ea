"""The exporter's lifecycle: listen address, systemd notification, serving."""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import re
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector

from .. import __version__
from ..errors import AddressInUse, UsageError
from ..flags import flag
from .collector import (
    ContextCollector,
    DetectionCollector,
    EnforcementCollector,
    KcmpCollector,
    RefusalCollector,
    RuntimeCollector,
    SelfState,
)
from .httpd import DEFAULT_LIMITS, Limits, MetricsServer

if TYPE_CHECKING:
    from .access import Access

log = logging.getLogger(__name__)

# Outside 9100-9999, which Prometheus's port allocation list has handed out in full.
DEFAULT_PORT = 9041
DEFAULT_ADDRESS = f"127.0.0.1:{DEFAULT_PORT}"
BPF_STATS_SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"


@dataclass(frozen=True)
class ListenAddress:
    host: str  # "" for every interface
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_listen_address(text: str) -> ListenAddress:
    """HOST:PORT, [IPV6]:PORT, or :PORT for every interface (only when asked for)."""
    host, sep, port = text.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or len(port) > 5 or \
            not 0 < int(port) < 65536:
        raise UsageError(f"{flag('listen')} {text!r}: expected HOST:PORT with a port "
                         "from 1 to 65535, e.g. 127.0.0.1:9041 or :9041 for every interface")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise UsageError(f"{flag('listen')} {text!r}: {host!r} is not an IPv6 "
                             "address") from None
    elif ":" in host:
        raise UsageError(f"{flag('listen')} {text!r}: write an IPv6 address in brackets, "
                         "e.g. [::1]:9041")
    elif host and not _host_name(host):
        # What the resolver would be handed, refused before anything is attached.
        raise UsageError(f"{flag('listen')} {text!r}: {host!r} is not a host name or "
                         "an IPv4 address")
    return ListenAddress(host, int(port))


_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _host_name(host: str) -> bool:
    """An IPv4 address, or a name of labels a resolver takes (IDNA for the rest)."""
    try:
        ipaddress.IPv4Address(host)
        return True
    except ValueError:
        pass
    try:
        ascii_name = host.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    labels = ascii_name.removesuffix(".").split(".")
    return len(ascii_name) <= 253 and all(_LABEL.fullmatch(label) for label in labels)


def bpf_stats_enabled(path: str = BPF_STATS_SYSCTL) -> bool:
    try:
        with open(path) as f:
            return f.read().strip() == "1"
    except OSError:
        return False


def notify(state: str) -> None:
    """sd_notify(3): tell systemd (Type=notify) how we are; silent outside systemd."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(path)
            sock.sendall(state.encode())
        except OSError as exc:
            log.warning("could not notify systemd: %s", exc)


def build_registry(program, context=None, runtime=None, detector=None,
                   refusals=None, policy=None) -> CollectorRegistry:
    """Our collector over the program's maps, the process's own metrics, with context (a
    callable returning the tracer's Summary) what enriching the stream found, with a
    runtime (collector.RuntimeCounts) how its containers were named, and with a detector
    (collector.DetectionCounts) its findings, with refusals (access.Refusals) the requests
    the web configuration refused, with a policy (collector.EnforcementCounts) what its rules
    matched."""
    registry = CollectorRegistry()
    state = SelfState(version=__version__, bcc_version=program.bcc_version,
                      kernel=os.uname().release, attached=program.attached,
                      run_stats=program.run_stats, bpf_stats_enabled=bpf_stats_enabled,
                      program_costs=program.program_costs)
    registry.register(KcmpCollector(program.snapshot, state))
    if context is not None:
        registry.register(ContextCollector(context))
    if runtime is not None:
        registry.register(RuntimeCollector(runtime))
    if detector is not None:
        registry.register(DetectionCollector(detector))
    if refusals is not None:
        registry.register(RefusalCollector(refusals))
    if policy is not None:
        registry.register(EnforcementCollector(policy))
    ProcessCollector(registry=registry)
    return registry


def listen(registry: CollectorRegistry, address: ListenAddress,
           limits: Limits = DEFAULT_LIMITS, access: Access | None = None) -> MetricsServer:
    """/metrics bound to its address, served once started (with access: as the web
    configuration says); AddressInUse or UsageError with the reason."""
    try:
        server = MetricsServer(registry, address.host, address.port, limits, access)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise AddressInUse(f"{address} is in use: stop what listens there or choose "
                               f"another {flag('listen')}") from None
        raise UsageError(f"cannot listen on {address}: {exc.strerror}") from None
    return server
