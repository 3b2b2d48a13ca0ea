"""The policy: the rule file's `policy:` checked whole (every bad one a line naming the key, exit
2, nothing loaded), its table as the kernel reads it (against the C header), and what the
outputs say of a call it matched."""

import json
import logging
import os
import shutil

import pytest

from kcmp_monitor import abi, cli, parsers, plan
from kcmp_monitor.context.types import Context
from kcmp_monitor.detect import rules
from kcmp_monitor.kernel import kcmp as loader, policy as table
from kcmp_monitor.kernel.events import EV_APPLIED, EV_KILLED, EV_POLICY, Args, Event
from kcmp_monitor.policy.types import Action, Enforcement, Policy, Target
from kcmp_monitor.sinks.console import enforcement_mark
from kcmp_monitor.sinks.permlog import EnforcementLog
from kcmp_monitor.wiring import kernel_options
from tests.helpers import ROOT, c_facts
from tests.records import json_record

RULE = "policy:\n  rules:\n    - name: r\n      match: {uids: [65534]}\n      action: deny\n"

# (the policy's text, what the error names)
BAD = [
    ("policy: [1]\n", "policy: expected a mapping"),
    ("policy:\n  rule: []\n", "policy.rule: unknown key"),
    (RULE.replace("deny", "block"), "policy.rules[0].action: expected deny, kill or log"),
    (RULE + "      errno: EFOO\n", "errno: unknown errno (leave it out, or say EPERM)"),
    (RULE + "      errno: ENOENT\n", "errno: kcmp refuses with EPERM alone"),
    (RULE.replace("deny", "kill") + "      errno: EPERM\n",
     "errno: an errno is deny's answer; this rule does not deny"),
    (RULE.replace("{uids: [65534]}", "{}"), "policy.rules[0].match: it matches every caller"),
    (RULE.replace("{uids: [65534]}", "{types: [KCMP_FILE]}"), "it matches every caller"),
    (RULE.replace("uids: [65534]", "uids: [65534], types: [KCMP_FDS]"),
     "policy.rules[0].match.types: unknown kcmp type 'KCMP_FDS'"),
    (RULE.replace("uids: [65534]", "uids: [65534], targets: [elsewhere]"),
     "match.targets: unknown 'elsewhere' (expected outside_container, other_user)"),
    (RULE.replace("uids: [65534]", "pids: [1]"), "policy.rules[0].match.pids: unknown key"),
    (RULE.replace("uids: [65534]", "uids: [root]"), "match.uids: expected a list of numbers"),
    (RULE.replace("name: r", "name: 'a b'"), "policy.rules[0].name: expected a name"),
    (RULE + "    - name: r\n      match: {uids: [1]}\n      action: log\n",
     "policy.rules[1].name: 'r' names an earlier rule too"),
    (RULE + "      allow_all: yes please\n", "allow_all: expected true or false"),
    (RULE + "      when: always\n", "policy.rules[0].when: unknown key"),
    (RULE + "  allow: {images: [shop/tool]}\n", "policy.allow.images: a container's image is "
     "not known in the kernel"),
    ("policy:\n  rules:\n" + "".join(f"    - {{name: r{i}, match: {{uids: [1]}}, action: log}}\n"
                                     for i in range(17)),
     "policy.rules: 17 rules; the kernel's table holds 16"),
]


@pytest.mark.parametrize("text, named", BAD, ids=[b[1][:40] for b in BAD])
def test_a_bad_policy_is_one_line_exit_2_and_nothing_loaded(
        text, named, tmp_path, capsys, monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("a program was loaded before the bad policy was said")

    monkeypatch.setattr(loader.KcmpProgram, "__init__", refuse)
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    assert cli.main(["--rules", str(path), "--enforce", "on"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"kcmp-monitor: error: --rules {path}: ") and named in err, err


@pytest.mark.parametrize("argv, named", [
    (["--enforce", "on"], "--enforce applies the policy of a rule file: give --rules FILE"),
    (["--rules", "{file}", "--enforce", "on", "--no-compat"],
     "--enforce on stops 32-bit calls too, which --no-compat leaves uncaught"),
    (["--rules", "{empty}", "--enforce", "dry-run"], "has no policy rules to apply"),
    (["--rules", "{empty}"], "configures the signatures, which do not run here, and has no "
     "policy"),
])
def test_enforce_needs_a_policy_and_every_32_bit_call(argv, named, tmp_path, capsys,
                                                       monkeypatch):
    monkeypatch.setattr(loader.KcmpProgram, "__init__", lambda *a, **k: 1 / 0)
    (tmp_path / "p.yaml").write_text(RULE)
    (tmp_path / "e.yaml").write_text("signatures: {}\n")
    argv = [a.format(file=tmp_path / "p.yaml", empty=tmp_path / "e.yaml") for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err, err


def _options(argv, text):
    the_plan = plan.from_flags(vars(parsers.build_parser().parse_args(argv)))
    signatures, policy = rules.load_all(text)
    return kernel_options(the_plan, None, policy)


def test_a_policy_is_a_dry_run_unless_enforce_on_and_hooks_32_bit_entries(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(RULE)
    dry = _options(["--trace", "--rules", str(path)], str(path))
    assert dry.policy is not None and not dry.enforce and dry.compat_entry and dry.streams
    on = _options(["--rules", str(path), "--enforce", "on"], str(path))
    assert on.enforce and on.denies and on.count
    assert not _options(["--rules", str(path)], str(path)).enforce  # the exporter's too
    assert _options(["--trace"], None).policy is None  # the shipped rules have none


def test_the_shipped_example_parses_and_leaves_the_known_tools_alone(tmp_path):
    _, policy = rules.load_all(None)
    assert policy is not None and policy.rules == ()  # none is on unless given
    text = rules.default_text()
    block = text[text.index("# policy:"):]
    path = tmp_path / "example.yaml"
    path.write_text(text[:text.index("# policy:")] + "\n".join(
        line[2:] for line in block.splitlines()) + "\n")
    _, example = rules.load_all(str(path))
    assert [r.name for r in example.rules] == ["no-container-crossing", "nobody-reads-others"]
    assert {"criu", "gdb", "rr", "lldb", "strace", "systemd"} <= example.allow.executables
    assert all(not r.match.any_caller for r in example.rules)


def test_the_table_gives_each_condition_its_rules(tmp_path):
    exe = tmp_path / "tool"
    shutil.copy("/bin/true", exe)
    _, policy = rules.load_all(_write(tmp_path, {"allow": {"executables": [str(exe)],
                                                           "uids": [7]}, "rules": [
        {"name": "a", "match": {"types": ["KCMP_FILE"], "uids": [1000]}, "action": "kill"},
        {"name": "b", "match": {"in_container": True, "targets": ["outside_container"]},
         "action": "deny"},
        {"name": "c", "match": {"in_container": False, "targets": ["other_user"],
                                "comms": ["x"]}, "action": "log"}]}))
    values = table.TABLE.unpack(table.table(policy, table.APPLY_CHECK))
    types, (uids, exes, comms, inside, host, outside, other, apply), actions = \
        values[:16], values[16:24], values[24:]
    kcmp_file = abi.KcmpType.KCMP_FILE.value
    assert types[kcmp_file] == 0b111 and types[abi.KcmpType.KCMP_VM] == 0b110
    assert types[abi.KCMP_TYPES] == 0b110 and types[abi.KCMP_TYPES + 1] == 0  # unknown; unseen
    assert (uids, exes, comms, inside, host, outside, other, apply) == (
        0b001, 0, 0b100, 0b010, 0b100, 0b010, 0b100, table.APPLY_CHECK)
    assert actions[:4] == (Action.KILL, Action.DENY, Action.LOG, 0)
    by_uid, by_comm, by_exe = table._named(policy)
    st = os.stat(exe)
    assert by_uid == {1000: 0b001, 7: table.ALLOW} and by_comm == {b"x": 0b100}
    # stat() and the kernel agree on this machine's file systems (ext4, tmpfs).
    assert by_exe[(os.major(st.st_dev) << 20 | os.minor(st.st_dev), st.st_ino)] == table.ALLOW
    assert table.executable("sh") == table.executable(shutil.which("sh", path=table.SEARCH_PATH))
    assert table.executable(str(tmp_path / "none")) is None
    assert policy.needs_targets and policy.denies
    assert Target.OTHER_USER in policy.rules[2].match.targets


def _write(tmp_path, doc):
    path = tmp_path / "rules.yaml"
    path.write_text(json.dumps({"policy": doc}))
    return str(path)


def test_the_table_and_flags_are_the_c_headers(tmp_path):
    facts = c_facts(tmp_path, [f'"{ROOT / "bpf" / "kcmp.h"}"'], [
        ("sizeof", "sizeof(struct kcmp_policy)"),
        ("apply", "offsetof(struct kcmp_policy, apply)"),
        ("action", "offsetof(struct kcmp_policy, action)"),
        ("exe", "sizeof(struct kcmp_policy_exe)"), ("dev", "offsetof(struct kcmp_policy_exe, dev)"),
        ("rules", "KCMP_POLICY_RULES"), ("types", "KCMP_POLICY_TYPES"),
        ("allow", "KCMP_POLICY_ALLOW"), ("kill", "KCMP_ACTION_KILL"),
        ("deny", "KCMP_ACTION_DENY"), ("check", "KCMP_APPLY_CHECK"),
        ("by_kill", "KCMP_APPLY_KILL"), ("policy", "KCMP_EV_POLICY"),
        ("applied", "KCMP_EV_APPLIED"), ("killed", "KCMP_EV_KILLED")])
    assert facts["sizeof"] == table.TABLE.size and facts["action"] == table.TABLE.size - 16
    assert facts["apply"] == 4 * (table.TYPE_SLOTS + 7) and facts["types"] == table.TYPE_SLOTS
    assert (facts["exe"], facts["dev"]) == (table.EXE_KEY.size, 8)
    assert facts["allow"] == table.ALLOW and facts["rules"] == 16
    assert (facts["kill"], facts["deny"]) == (Action.KILL, Action.DENY)
    assert (facts["check"], facts["by_kill"]) == (table.APPLY_CHECK, table.APPLY_KILL)
    assert (facts["policy"], facts["applied"], facts["killed"]) == (
        EV_POLICY, EV_APPLIED, EV_KILLED)


def _event():
    return Event(ts_ns=0, duration_ns=1, cgroup_id=1, tgid=7, tid=7, uid=65534, gid=65534,
                 comm=b"evil\x1b[2J", ret=-1, compat=False,
                 args=Args(pid1=7, pid2=1, type=0, idx1=0, idx2=0, slot=None,
                           slot_fault=False))


@pytest.mark.parametrize("enforcement, mark", [
    (Enforcement("r", "deny", False, None), "!! WOULD DENY rule=r"),
    (Enforcement("r", "kill", False, None), "!! WOULD KILL rule=r"),
    (Enforcement("r", "log", False, None), "!! POLICY rule=r"),
    (Enforcement("r", "deny", True, "access_check"), "!! DENIED BY POLICY rule=r"),
    (Enforcement("r", "kill", True, "sigkill"), "!! KILLED BY POLICY rule=r"),
    (Enforcement("r", "deny", True, "sigkill"), "!! KILLED BY POLICY rule=r (deny by SIGKILL)"),
])
def test_the_console_says_what_was_done_or_would_be(enforcement, mark):
    assert enforcement_mark(enforcement) == mark


def test_json_and_the_log_carry_the_enforcement(caplog):
    e = Enforcement("no-crossing", "deny", True, "access_check")
    record = json_record(_event(), Context(enforcement=e), 1)
    assert record["enforcement"] == {"rule": "no-crossing", "action": "deny", "applied": True,
                                     "mechanism": "access_check"}
    assert json_record(_event(), Context(), 1)["enforcement"] is None
    with caplog.at_level(logging.WARNING):
        EnforcementLog().event(_event(), Context(enforcement=e))
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith('msg="kcmp call stopped" rule=no-crossing action=deny '
                           'mechanism=access_check ret=-1 kcmp_type=KCMP_FILE')
    assert "\x1b" not in line


def test_a_records_rule_is_named_by_the_policy_table():
    policy = Policy((rules_rule("a", Action.LOG), rules_rule("b", Action.DENY)))
    t = table.PolicyTable(None, policy, True, table.Mechanism.ACCESS_CHECK, None)
    assert t.enforcement(1, True, False) == Enforcement("b", "deny", True, "access_check")
    assert t.enforcement(1, True, True).mechanism == "sigkill"
    assert t.enforcement(0, False, False) == Enforcement("a", "log", False, None)
    assert t.enforcement(5, True, False) is None
    assert t.describe() == "2 rules, on (deny at kcmp's access check)"


def rules_rule(name, action):
    from kcmp_monitor.policy.types import Match, Rule
    return Rule(name, Match(uids=frozenset({1})), action)
