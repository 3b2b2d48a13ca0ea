"""The policy's table in the kernel (bpf/policy.h): the rules' conditions as masks with a bit per
rule, the caller uids, comms and executables they name (and the allowlisted ones) in maps,
written once after attach; and the counts of what the rules matched, read at scrape time."""

from __future__ import annotations

import os
import shutil
import struct
from typing import Any, NamedTuple

from .. import abi
from ..policy.types import Action, Enforcement, Mechanism, Policy, Target

TYPE_SLOTS = 16  # KCMP_POLICY_TYPES
ALLOW = 1 << 31  # KCMP_POLICY_ALLOW
APPLY_NONE, APPLY_CHECK, APPLY_KILL = range(3)  # enum kcmp_apply
# struct kcmp_policy: types[16], then uids, exes, comms, in_container, on_host, outside,
# other_user, apply; action[16].
TABLE = struct.Struct(f"<{TYPE_SLOTS}I8I16B")
EXE_KEY = struct.Struct("<QII")  # struct kcmp_policy_exe
# Where an executable named without a path is looked for.
SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def executable(name: str) -> tuple[int, int] | None:
    """(dev_t, inode) of an executable path or name as the kernel holds its file (the
    superblock's s_dev and the inode's i_ino, which stat() may not give: btrfs reports a
    subvolume's device, overlayfs the layer's inode); None where there is none."""
    path = name if "/" in name else shutil.which(name, path=SEARCH_PATH)
    if not path:
        return None
    try:
        fd = os.open(path, os.O_PATH)
    except OSError:
        return None
    try:
        with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as f:
            info = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
        ino = int(info["ino"]) if "ino" in info else os.fstat(fd).st_ino  # ino: Linux 5.14
    finally:
        os.close(fd)
    return _superblock_dev(int(info["mnt_id"])), ino


def _superblock_dev(mount_id: int) -> int:
    """The s_dev of a mount's superblock, as /proc/self/mountinfo numbers it."""
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split(" ", 3)
            if int(fields[0]) == mount_id:
                major, minor = map(int, fields[2].split(":"))
                return major << 20 | minor
    raise OSError(f"mount {mount_id} is not in /proc/self/mountinfo")


def _types(policy: Policy) -> list[int]:
    """Per type slot: the rules that take it."""
    types = [0] * TYPE_SLOTS
    for i, rule in enumerate(policy.rules):
        for slot in rule.match.types or range(abi.KCMP_TYPES + 1):
            types[slot] |= 1 << i
    return types


def _named(policy: Policy) -> tuple[dict[int, int], dict[bytes, int],
                                    dict[tuple[int, int], int]]:
    """Per uid, comm and executable: the rules that name it (ALLOW: allowlisted)."""
    uids: dict[int, int] = {}
    comms: dict[bytes, int] = {}
    exes: dict[tuple[int, int], int] = {}

    def add(table: dict, key: Any, bit: int) -> None:
        if key is not None:
            table[key] = table.get(key, 0) | bit

    allow = policy.allow
    for bit, match in [(1 << i, r.match) for i, r in enumerate(policy.rules)] + [(ALLOW, allow)]:
        for uid in match.uids:
            add(uids, uid, bit)
        for comm in match.comms:
            add(comms, comm.encode()[:15], bit)
        for exe in match.executables:
            add(exes, executable(exe), bit)
    return uids, comms, exes


def _bits(policy: Policy, holds) -> int:
    return sum(1 << i for i, rule in enumerate(policy.rules) if holds(rule))


def table(policy: Policy, apply: int) -> bytes:
    """struct kcmp_policy of a policy."""
    types = _types(policy)
    actions = [r.action.value for r in policy.rules]
    return TABLE.pack(
        *types, _bits(policy, lambda r: r.match.uids), _bits(policy, lambda r: r.match.executables),
        _bits(policy, lambda r: r.match.comms),
        _bits(policy, lambda r: r.match.in_container is True),
        _bits(policy, lambda r: r.match.in_container is False),
        _bits(policy, lambda r: Target.OUTSIDE_CONTAINER in r.match.targets),
        _bits(policy, lambda r: Target.OTHER_USER in r.match.targets),
        apply, *actions, *[0] * (16 - len(actions)))


def _put(bpf_table: Any, key: bytes, value: bytes) -> None:
    bpf_table[bpf_table.Key.from_buffer_copy(key)] = bpf_table.Leaf.from_buffer_copy(value)


class PolicyTable(NamedTuple):
    """The policy as the kernel holds it, and how its actions are carried out."""

    bpf: Any
    policy: Policy
    enforce: bool  # else a dry run
    deny: Mechanism  # how a deny is carried out (NONE: in a dry run)
    deny_note: str | None  # why a deny is a kill here, where it is

    @classmethod
    def write(cls, bpf: Any, policy: Policy, enforce: bool, check: bool,
              check_off: str | None) -> PolicyTable:
        """The table written into the program's maps: from then on the kernel decides."""
        deny = Mechanism.NONE if not enforce else (
            Mechanism.ACCESS_CHECK if check else Mechanism.SIGKILL)
        apply = {Mechanism.NONE: APPLY_NONE, Mechanism.ACCESS_CHECK: APPLY_CHECK,
                 Mechanism.SIGKILL: APPLY_KILL}[deny]
        uids, comms, exes = _named(policy)  # each executable looked up once
        u32 = struct.Struct("<I")
        for uid, bits in uids.items():
            _put(bpf["policy_uids"], u32.pack(uid), u32.pack(bits))
        for comm, bits in comms.items():
            _put(bpf["policy_comms"], comm.ljust(16, b"\0"), u32.pack(bits))
        for (dev, ino), bits in exes.items():
            _put(bpf["policy_exes"], EXE_KEY.pack(ino, dev, 0), u32.pack(bits))
        # Last: until the table is in, no type takes a rule.
        _put(bpf["policy"], u32.pack(0), table(policy, apply))
        note = None
        if enforce and policy.denies and not check:
            note = f"denials are kills here ({check_off or 'no trampolines'})"
        return cls(bpf, policy, enforce, deny, note)

    def counts(self) -> dict[tuple[str, str, bool], int]:
        """Calls each rule matched: (rule, action, applied) -> calls, summed over CPUs."""
        t = self.bpf["enforced"]
        found = {}
        for i, rule in enumerate(self.policy.rules):
            for applied in (False, True):
                found[(rule.name, rule.action.name.lower(), applied)] = int(
                    t.sum(t.Key(i * 2 + applied)).value)
        return found

    def enforcement(self, rule: int, applied: bool, killed: bool) -> Enforcement | None:
        """What a record's rule index and flags say, named."""
        if not 0 <= rule < len(self.policy.rules):
            return None
        r = self.policy.rules[rule]
        mechanism = None if not applied else (
            Mechanism.SIGKILL if killed else Mechanism.ACCESS_CHECK).value
        return Enforcement(r.name, r.action.name.lower(), applied, mechanism)

    def describe(self) -> str:
        """The policy as the start line and --check say it."""
        rules = len(self.policy.rules)
        mode = "on" if self.enforce else "dry run (nothing stopped)"
        by = {Action.DENY: ("deny at kcmp's access check" if self.deny == Mechanism.ACCESS_CHECK
                            else "deny by SIGKILL"),
              Action.KILL: "kill by SIGKILL"}
        how = sorted({by[r.action] for r in self.policy.rules if r.action in by})
        line = f"{rules} rule{'s' if rules != 1 else ''}, {mode}"
        if self.enforce and how:
            line += f" ({', '.join(how)})"
        return line + (f"; {self.deny_note}" if self.deny_note else "")
