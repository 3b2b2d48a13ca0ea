"""The rule file: which signatures run, their parameters and allowlists (one global, one a
signature), checked whole at start: a bad file is one error naming the key and the fix."""

from __future__ import annotations

from importlib import resources
from typing import Any

from .. import yamlfile
from ..errors import UsageError
from ..flags import flag
from ..policy import parse as policy
from ..policy.types import Allow as PolicyAllow, Policy
from .signature import Allow, Signature
from .signatures import ALL

DEFAULT = "rules.yaml"  # package data beside this module
_ALLOW_KEYS = {"executables": str, "comms": str, "images": str, "uids": int}


def default_text() -> str:
    return resources.files(__package__).joinpath(DEFAULT).read_text()


def load(path: str | None = None) -> list[Signature]:
    """The signatures the file enables, configured; None: the shipped defaults."""
    return load_all(path)[0]


def load_all(path: str | None = None) -> tuple[list[Signature], Policy]:
    """The signatures and the policy of a rule file (None: the shipped one)."""
    where = path or "the default rules"
    try:
        if path is None:
            text = default_text()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"{flag('rules')} {path}: {getattr(exc, 'strerror', None) or exc}") from None
    doc = yamlfile.parse(text, f"{flag('rules')} {where}")
    signatures = parse(doc, where)  # which checks that doc is a mapping, or nothing
    doc = doc or {}
    common = _allow(doc.get("allow"), "allow", _bad(where))
    return signatures, policy.parse(
        doc.get("policy"), PolicyAllow(common.executables, common.comms, common.uids),
        _bad(where))


def _bad(where: str):
    def bad(key: str, what: str) -> UsageError:
        return UsageError(f"{flag('rules')} {where}: {key}: {what}")
    return bad


def parse(doc: Any, where: str) -> list[Signature]:
    bad = _bad(where)
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise bad("the file", "expected a mapping with 'allow', 'signatures' and 'policy'")
    unknown = set(doc) - {"allow", "signatures", "policy"}
    if unknown:
        raise bad(sorted(map(str, unknown))[0],
                  "unknown key (expected allow, signatures, policy)")
    common = _allow(doc.get("allow"), "allow", bad)
    by_id = {s.META.id: s for s in ALL}
    configured = doc.get("signatures") or {}
    if not isinstance(configured, dict):
        raise bad("signatures", "expected a mapping of signature ids")
    for sid in configured:
        if sid not in by_id:
            raise bad(f"signatures.{sid}", f"no such signature (known: {', '.join(by_id)})")
    found: list[Signature] = []
    for sid, cls in by_id.items():
        conf = configured.get(sid) or {}
        key = f"signatures.{sid}"
        if not isinstance(conf, dict):
            raise bad(key, "expected a mapping (enabled, allow, parameters)")
        enabled = conf.get("enabled", True)
        if not isinstance(enabled, bool):
            raise bad(f"{key}.enabled", "expected true or false")
        params = {}
        for name, value in conf.items():
            if name in ("enabled", "allow"):
                continue
            if name not in cls.PARAMS:
                raise bad(f"{key}.{name}", "unknown parameter (known: "
                          f"{', '.join(['enabled', 'allow', *cls.PARAMS])})")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not 0 < value <= 1e9:
                raise bad(f"{key}.{name}", f"expected a positive number ({cls.PARAMS[name][1]})")
            params[name] = value
        if enabled:
            own = _allow(conf.get("allow"), f"{key}.allow", bad)
            found.append(cls(params, common.merged(own)))
    return found


def _allow(conf: Any, key: str, bad) -> Allow:
    if conf is None:
        return Allow()
    if not isinstance(conf, dict):
        raise bad(key, "expected a mapping of executables, comms, images, uids")
    lists = {}
    for name, value in conf.items():
        kind = _ALLOW_KEYS.get(name)
        if kind is None:
            raise bad(f"{key}.{name}", "unknown key (expected executables, comms, images, uids)")
        if value is None:
            value = []
        if not isinstance(value, list) or not all(
                isinstance(v, kind) and not isinstance(v, bool) for v in value):
            what = "numbers" if kind is int else "strings"
            raise bad(f"{key}.{name}", f"expected a list of {what}")
        lists[name] = frozenset(value)
    return Allow(**lists)
