"""Every enabled signature over each call, and the findings they make, counted by signature
and severity (bounded labels: the signatures are a fixed set)."""

from __future__ import annotations

from .signature import Signature
from .types import SEVERITIES, Finding, Observation


class Detector:
    def __init__(self, signatures: list[Signature]) -> None:
        self.signatures = signatures
        # (signature id, severity name) -> findings: kcmp_detections_total's series
        self.counts = {(s.META.id, SEVERITIES[s.META.severity]): 0 for s in signatures}

    @property
    def evicted(self) -> dict[str, int]:
        """Keys (callers, pairs) each signature let go of to stay within its bound."""
        return {s.META.id: s.state.evicted for s in self.signatures}

    def observe(self, obs: Observation) -> list[Finding]:
        found = []
        for s in self.signatures:
            finding = s.look(obs)
            if finding is not None:
                self.counts[s.META.id, SEVERITIES[s.META.severity]] += 1
                found.append(finding)
        return found
