"""The rule file's `policy:` key, checked whole: a bad policy is one error naming the key and the
fix, before anything attaches."""

from __future__ import annotations

import errno as errnos
import re
from typing import Any, Callable

from .. import abi
from ..errors import UsageError
from .types import MAX_RULES, Action, Allow, Match, Policy, Rule, Target

Bad = Callable[[str, str], UsageError]
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_RULE_KEYS = ("name", "match", "action", "errno", "allow_all")
_MATCH_KEYS = ("types", "uids", "executables", "comms", "in_container", "targets")
_ALLOW_KEYS = ("executables", "comms", "uids")


def parse(doc: Any, common: Allow, bad: Bad) -> Policy:
    """The policy of a rule file (doc: its `policy:` value); common: the file's global allow,
    which the policy's own adds to."""
    if doc is None:
        return Policy(allow=common)
    if not isinstance(doc, dict):
        raise bad("policy", "expected a mapping with 'rules' (and 'allow')")
    _known(doc, ("rules", "allow"), "policy", bad)
    own = _allow(doc.get("allow"), "policy.allow", bad)
    rules = doc.get("rules") or []
    if not isinstance(rules, list):
        raise bad("policy.rules", "expected a list of rules (name, match, action)")
    if len(rules) > MAX_RULES:
        raise bad("policy.rules", f"{len(rules)} rules; the kernel's table holds {MAX_RULES}")
    parsed: list[Rule] = []
    for i, conf in enumerate(rules):
        rule = _rule(conf, f"policy.rules[{i}]", bad)
        if any(r.name == rule.name for r in parsed):
            raise bad(f"policy.rules[{i}].name", f"{rule.name!r} names an earlier rule too")
        parsed.append(rule)
    return Policy(tuple(parsed), Allow(common.executables | own.executables,
                                       common.comms | own.comms, common.uids | own.uids))


def _known(conf: dict, keys: tuple[str, ...], where: str, bad: Bad) -> None:
    unknown = sorted(map(str, set(conf) - set(keys)))
    if unknown:
        raise bad(f"{where}.{unknown[0]}", f"unknown key (expected {', '.join(keys)})")


def _rule(conf: Any, key: str, bad: Bad) -> Rule:
    if not isinstance(conf, dict):
        raise bad(key, "expected a mapping (name, match, action)")
    _known(conf, _RULE_KEYS, key, bad)
    name = conf.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise bad(f"{key}.name", "expected a name of letters, digits, '_', '.', '-' "
                                 "(at most 64): it labels the rule's metrics")
    action_text = conf.get("action")
    try:
        action = Action[str(action_text).upper()] if isinstance(action_text, str) else None
    except KeyError:
        action = None
    if action is None:
        raise bad(f"{key}.action", "expected deny, kill or log")
    if "errno" in conf:
        _errno(conf["errno"], action, f"{key}.errno", bad)
    match = _match(conf.get("match"), f"{key}.match", bad)
    allow_all = conf.get("allow_all", False)
    if not isinstance(allow_all, bool):
        raise bad(f"{key}.allow_all", "expected true or false")
    if match.any_caller and not allow_all:
        raise bad(f"{key}.match", "it matches every caller: name uids, executables, comms, "
                                  "in_container or targets, or say allow_all: true")
    return Rule(name, match, action)


def _errno(value: Any, action: Action, key: str, bad: Bad) -> None:
    """deny's answer: kcmp answers a refused access check with EPERM whatever refused it, and
    the kernels users run allow no other way to refuse the call without running it."""
    if action != Action.DENY:
        raise bad(key, "an errno is deny's answer; this rule does not deny")
    if value != "EPERM" and value != abi.EPERM:
        known = isinstance(value, str) and hasattr(errnos, value)
        raise bad(key, ("kcmp refuses with EPERM alone" if known else "unknown errno") +
                  " (leave it out, or say EPERM)")


def _match(conf: Any, key: str, bad: Bad) -> Match:
    if conf is None:
        return Match()
    if not isinstance(conf, dict):
        raise bad(key, f"expected a mapping of {', '.join(_MATCH_KEYS)}")
    _known(conf, _MATCH_KEYS, key, bad)
    types = frozenset(_type(t, f"{key}.types", bad) for t in _list(conf, "types", key, str, bad))
    in_container = conf.get("in_container")
    if in_container is not None and not isinstance(in_container, bool):
        raise bad(f"{key}.in_container", "expected true or false")
    targets = []
    for text in _list(conf, "targets", key, str, bad):
        try:
            targets.append(Target(text))
        except ValueError:
            raise bad(f"{key}.targets", f"unknown {text!r} (expected "
                      f"{', '.join(t.value for t in Target)})") from None
    return Match(types, frozenset(_list(conf, "uids", key, int, bad)),
                 frozenset(_list(conf, "executables", key, str, bad)),
                 frozenset(_list(conf, "comms", key, str, bad)), in_container,
                 frozenset(targets))


def _type(text: str, key: str, bad: Bad) -> int:
    if text.upper() in ("UNKNOWN", "KCMP_UNKNOWN"):
        return abi.KCMP_TYPES
    try:
        return abi.parse_type(text)
    except ValueError as exc:
        raise bad(key, str(exc)) from None


def _list(conf: dict, name: str, key: str, kind: type, bad: Bad) -> list:
    value = conf.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(
            isinstance(v, kind) and not isinstance(v, bool) for v in value):
        raise bad(f"{key}.{name}", f"expected a list of {'numbers' if kind is int else 'strings'}")
    if kind is int and any(not 0 <= v < 2 ** 32 for v in value):
        raise bad(f"{key}.{name}", "expected uids from 0 to 4294967295")
    return value


def _allow(conf: Any, key: str, bad: Bad) -> Allow:
    if conf is None:
        return Allow()
    if not isinstance(conf, dict):
        raise bad(key, f"expected a mapping of {', '.join(_ALLOW_KEYS)}")
    if "images" in conf:
        raise bad(f"{key}.images", "a container's image is not known in the kernel at the "
                                   "call: allow its executables or uids")
    _known(conf, _ALLOW_KEYS, key, bad)
    return Allow(frozenset(_list(conf, "executables", key, str, bad)),
                 frozenset(_list(conf, "comms", key, str, bad)),
                 frozenset(_list(conf, "uids", key, int, bad)))
