"""Dashboard hygiene, the rules Grafana's dashboard linter checks (no Go toolchain here):
a datasource variable, job and instance variables, every panel titled, described and with a
unit, every query on the chosen data source and targets, $__rate_interval in every rate() and
increase(), and counters only inside rate(), irate() or increase().

Usage: python dashboards/lint.py FILE.json ...   (exit 1 and one line per problem)
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator

COUNTER = re.compile(r"_(total|bucket|count|sum)$")
RATE_FUNCS = {"rate", "irate", "increase"}
IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
DATASOURCE = "${datasource}"


def panels(board: dict) -> Iterator[dict]:
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # a collapsed row keeps its panels inside


def _skip_enclosed(expr: str, i: int) -> int:
    """The index after the {...} or [...] or "..." starting at i (quotes respected)."""
    close = {"{": "}", "[": "]", '"': '"'}[expr[i]]
    i += 1
    while i < len(expr) and expr[i] != close:
        if expr[i] == '"' and close != '"':
            i = _skip_enclosed(expr, i) - 1
        elif expr[i] == "\\":
            i += 1
        i += 1
    return i + 1


def counters_outside_rate(expr: str) -> list[str]:
    """Counter series read raw: a _total/_bucket/_count/_sum not under rate/irate/increase."""
    stack: list[str] = []
    found, pending, i = [], "", 0
    while i < len(expr):
        c = expr[i]
        if c in '{["':
            i = _skip_enclosed(expr, i)
            continue
        if c == "(":
            stack.append(pending)
            pending = ""
        elif c == ")":
            if stack:
                stack.pop()
        elif m := IDENT.match(expr, i):
            word = m.group(0)
            rest = expr[m.end():].lstrip()
            if rest.startswith("("):
                pending = word
            elif COUNTER.search(word) and not RATE_FUNCS & set(stack):
                found.append(word)
            i = m.end()
            continue
        i += 1
    return found


def rate_intervals(expr: str) -> list[str]:
    """The range of each rate()/irate()/increase() that is not [$__rate_interval]."""
    bad = []
    for m in re.finditer(r"\b(rate|irate|increase)\(", expr):
        depth, j = 1, m.end()
        while j < len(expr) and depth:
            depth += {"(": 1, ")": -1}.get(expr[j], 0)
            j += 1
        ranges = re.findall(r"\[([^\]]*)\]", expr[m.end():j])
        if ranges != ["$__rate_interval"]:
            bad.append(f"{m.group(1)}(...{ranges})")
    return bad


def lint(board: dict) -> list[str]:
    problems = []
    variables = {v.get("name"): v for v in board.get("templating", {}).get("list", [])}
    ds = variables.get("datasource", {})
    if ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problems.append("no datasource variable of type prometheus")
    for name in ("job", "instance"):
        if variables.get(name, {}).get("type") != "query":
            problems.append(f"no {name} query variable")
    for panel in panels(board):
        if panel.get("type") == "row":
            continue
        title = panel.get("title") or f"panel {panel.get('id')}"
        if not panel.get("title"):
            problems.append(f"{title}: no title")
        if not panel.get("description"):
            problems.append(f"{title}: no description")
        if not panel.get("fieldConfig", {}).get("defaults", {}).get("unit"):
            problems.append(f"{title}: no unit")
        if panel.get("datasource", {}).get("uid") != DATASOURCE:
            problems.append(f"{title}: not on the {DATASOURCE} variable")
        targets = panel.get("targets", [])
        if not targets:
            problems.append(f"{title}: no query")
        for target in targets:
            expr = target.get("expr", "")
            if target.get("datasource", {}).get("uid") != DATASOURCE:
                problems.append(f"{title}: a query not on the {DATASOURCE} variable")
            if 'job=~"$job"' not in expr or 'instance=~"$instance"' not in expr:
                problems.append(f"{title}: a query not scoped to $job and $instance")
            for bad in rate_intervals(expr):
                problems.append(f"{title}: {bad} without $__rate_interval")
            for counter in counters_outside_rate(expr):
                problems.append(f"{title}: counter {counter} outside rate/increase")
    return problems


def main(paths: list[str]) -> int:
    failed = False
    for path in paths:
        with open(path) as f:
            for problem in lint(json.load(f)):
                print(f"{path}: {problem}")
                failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
