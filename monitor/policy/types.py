"""The policy as values: its rules, what they match and do, and what the kernel did with a
call one matched."""

from __future__ import annotations

import enum
from typing import NamedTuple

# The rules the kernel's table holds (a bit each in its masks, bpf/policy.h).
MAX_RULES = 16
# What --enforce may say: mark what would be stopped, or stop it.
MODES = ("dry-run", "on")


class Action(enum.IntEnum):
    """A rule's action; its value is the kernel's (enum kcmp_action)."""

    LOG = 0  # the call is marked, never stopped
    DENY = 1  # the call is refused (EPERM), or its caller killed where it cannot be
    KILL = 2  # the caller is killed (SIGKILL) before the call's result reaches it


class Target(enum.Enum):
    """What a rule may ask of the processes a call names (either of them)."""

    OUTSIDE_CONTAINER = "outside_container"  # not in the caller's mount namespace
    OTHER_USER = "other_user"  # its real uid is not the caller's


class Match(NamedTuple):
    """A rule's conditions, all of which must hold (empty: any)."""

    types: frozenset[int] = frozenset()  # kcmp types, and abi.KCMP_TYPES for unknown ones
    uids: frozenset[int] = frozenset()  # the caller's real uid
    executables: frozenset[str] = frozenset()  # the caller's executable: paths or names
    comms: frozenset[str] = frozenset()
    in_container: bool | None = None  # the caller in a container (True) or not (False)
    targets: frozenset[Target] = frozenset()

    @property
    def any_caller(self) -> bool:
        """Nothing narrows whom it stops."""
        return not (self.uids or self.executables or self.comms or self.targets) and \
            self.in_container is None


class Rule(NamedTuple):
    name: str
    match: Match
    action: Action


class Allow(NamedTuple):
    """Callers no rule acts on."""

    executables: frozenset[str] = frozenset()
    comms: frozenset[str] = frozenset()
    uids: frozenset[int] = frozenset()


class Policy(NamedTuple):
    rules: tuple[Rule, ...] = ()
    allow: Allow = Allow()

    @property
    def denies(self) -> bool:
        return any(r.action == Action.DENY for r in self.rules)

    @property
    def needs_targets(self) -> bool:
        return any(r.match.targets for r in self.rules)


class Mechanism(enum.Enum):
    """How the kernel stops a call."""

    NONE = "none"  # dry run: nothing is stopped
    ACCESS_CHECK = "access_check"  # kcmp's access check refuses it: EPERM, the call not run
    SIGKILL = "sigkill"  # the caller is killed at the call's entry


class Enforcement(NamedTuple):
    """What a rule made of one call, as the outputs say it."""

    rule: str
    action: str  # deny, kill, log
    applied: bool  # stopped (False: dry run, a log rule, or a deny the kernel never asked for)
    mechanism: str | None  # Mechanism's value where applied

    def record(self) -> dict[str, object]:
        return {"rule": self.rule, "action": self.action, "applied": self.applied,
                "mechanism": self.mechanism}
