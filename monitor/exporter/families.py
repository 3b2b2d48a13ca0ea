"""Every metric family the exporter serves, once: its kind, name, help and labels. The
collectors make their families from here, and say them (describe()) without reading a map."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from ..kernel.counters import SAMPLE_SHIFT
from ..kernel.kinds import PRIORITY_LANE


class Family(NamedTuple):
    # prometheus-client's counter, gauge or histogram family: their add_metric()s differ
    kind: Callable[..., Any]
    name: str
    help: str
    labels: tuple[str, ...] = ()

    def make(self, value: float | None = None, **help_values: Any) -> Any:
        """The family, to be given samples by label (value: its one sample, for a family
        without labels); help_values fill the help's {fields}."""
        text = self.help.format(**help_values) if help_values else self.help
        if value is not None:
            return self.kind(self.name, text, value=value)
        return self.kind(self.name, text, labels=list(self.labels))


C, G, H = CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

BUILD_INFO = Family(G, "kcmp_monitor_build_info", "Versions, always 1",
                    ("version", "bcc_version", "kernel"))
ATTACHED = Family(G, "kcmp_monitor_program_attached",
                  "1 if the program on this hook is attached (the label names a tracepoint, "
                  "or fentry:/fexit: and a kernel function)", ("tracepoint",))
PROGRAM_RUNS = Family(C, "kcmp_monitor_program_runs", "Runs of each of the monitor's BPF "
                      "programs, as they count themselves (the raw_syscalls ones: for 32-bit "
                      "kcmp only; the __secure_computing one: for refused kcmp only)",
                      ("program",))
PROGRAM_SECONDS = Family(C, "kcmp_monitor_program_run_seconds", "Time spent in each of the "
                         "monitor's BPF programs, estimated from one run in "
                         f"{1 << SAMPLE_SHIFT} timed", ("program",))
BPF_SECONDS = Family(C, "kcmp_monitor_bpf_run_seconds", "Time the kernel spent in each BPF "
                     "program (while kernel.bpf_stats_enabled is 1)", ("program",))
BPF_RUNS = Family(C, "kcmp_monitor_bpf_runs", "Runs of each BPF program (while "
                  "kernel.bpf_stats_enabled is 1)", ("program",))
SCRAPE_ERROR = Family(G, "kcmp_monitor_scrape_error",
                      "1 if the kernel counters could not be read")
CALLS = Family(C, "kcmp_calls", "kcmp calls by type and outcome", ("kcmp_type", "outcome"))
ERRORS = Family(C, "kcmp_errors", "Failed kcmp calls by type and errno", ("kcmp_type", "errno"))
DURATION = Family(H, "kcmp_call_duration_seconds", "Time spent in kcmp, entry to exit",
                  ("kcmp_type",))
SECCOMP = Family(C, "kcmp_seccomp_refused", "kcmp calls refused before entry by the caller's "
                 "seccomp filter, by type (read from the saved registers)", ("kcmp_type",))
NAMESPACED = Family(C, "kcmp_namespaced_calls", "kcmp calls made from outside the monitor's "
                    "pid, mount or network namespace (a container's), by namespace kind, type "
                    "and outcome", ("namespace", "kcmp_type", "outcome"))
DENIED = Family(C, "kcmp_permission_denied", "kcmp calls refused with EPERM, by type and caller "
                "uid", ("kcmp_type", "uid"))
COMPAT = Family(C, "kcmp_compat_calls", "kcmp calls from 32-bit callers")
DROPPED = Family(C, "kcmp_events_dropped", "Events the stream lost (ring buffer full), by lane: "
                 f"priority ({PRIORITY_LANE}) or bulk; counts stay exact", ("lane",))
UNPAIRED = Family(C, "kcmp_monitor_unpaired_exits", "Entries the in-flight map could not keep: "
                  "their calls count as unseen")
CALLER_CALLS = Family(C, "kcmp_caller_calls", "kcmp calls by process name (the first {top} "
                      "names seen; the rest under other)", ("comm",))
CALLER_DENIED = Family(C, "kcmp_caller_permission_denied", "kcmp calls refused with EPERM by "
                       "process name (the first {top} names refused; the rest under other)",
                       ("comm",))
KCMP = (BUILD_INFO, ATTACHED, PROGRAM_RUNS, PROGRAM_SECONDS, BPF_SECONDS, BPF_RUNS,
        SCRAPE_ERROR, CALLS, ERRORS, DURATION, SECCOMP, NAMESPACED, DENIED, COMPAT, DROPPED,
        UNPAIRED, CALLER_CALLS, CALLER_DENIED)

CONTEXT_EVENTS = Family(C, "kcmp_context_events", "Streamed kcmp calls given context")
CROSSINGS = Family(C, "kcmp_boundary_crossings", "Streamed kcmp calls whose caller and a target "
                   "sat in different pid, mount or network namespaces or containers, by kind",
                   ("kind",))
UNRESOLVED = Family(C, "kcmp_context_unresolved", "Streamed kcmp calls whose caller or a target "
                    "could not be found in /proc or the process table")
CONTEXT = (CONTEXT_EVENTS, CROSSINGS, UNRESOLVED)

CONTAINERS_KNOWN = Family(G, "kcmp_monitor_containers_known", "Containers whose names the "
                          "runtimes have told (remembered after they are gone)")
CONTAINER_MISSES = Family(C, "kcmp_monitor_container_misses", "Container ids met in a streamed "
                          "event before their runtime had named them (then looked up on the "
                          "side)")
RUNTIME = (CONTAINERS_KNOWN, CONTAINER_MISSES)

DETECTIONS = Family(C, "kcmp_detections", "Findings of the kcmp signatures",
                    ("signature", "severity"))
KEYS_EVICTED = Family(C, "kcmp_detection_keys_evicted", "Callers or pairs a signature stopped "
                      "following to stay within its bound (the least recently seen): a "
                      "behaviour spread over more may go unseen", ("signature",))
DETECTION = (DETECTIONS, KEYS_EVICTED)
WEB_REFUSED = Family(C, "kcmp_monitor_web_refused", "Connections and requests to /metrics the "
                     "web configuration refused, by reason (tls_handshake, plain_http, "
                     "client_san, unauthorized, rate_limited)", ("reason",))

ENFORCED = Family(C, "kcmp_enforced", "kcmp calls a rule of the policy matched, counted in the "
                  "kernel: applied=\"true\" stopped (denied or the caller killed), "
                  "applied=\"false\" only marked (a dry run, a log rule)",
                  ("rule", "action", "applied"))


def described(families: tuple[Family, ...], **help_values: Any) -> list[Metric]:
    """The families without samples: what a collector says it serves (help_values fill the
    helps that have fields; the others ignore them)."""
    return [f.make(**help_values) for f in families]
