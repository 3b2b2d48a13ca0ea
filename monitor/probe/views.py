"""What the probe found, as a table for people or as JSON (schema in the README)."""

from __future__ import annotations

from typing import Any

from .. import abi
from ..escape import escape
from ..flags import flag
from ..sinks.jsonout import path_text
from .logic import EpollReport, FdReport, PairReport, SharedFiles

SNAPSHOT = f"a snapshot: the processes ran during the probe; {flag('freeze')} for an exact answer"
EXACT = "exact: the processes were stopped during the probe"


def _err(err: int | None) -> dict[str, Any]:
    if err is None:
        return {"errno": None, "error": None}
    return {"errno": abi.errno_name(err), "error": abi.errno_message(err)}


def _path(path: str | None) -> str | None:
    return None if path is None else escape(path)


def _json_path(path: str | None) -> str | None:
    return None if path is None else path_text(path)


def pair_json(r: PairReport, frozen: bool) -> dict[str, Any]:
    return {
        "pid1": r.task1.pid, "pid2": r.task2.pid,
        "comm1": r.task1.name, "comm2": r.task2.name,
        "exact": frozen,
        "resources": [{"resource": a.resource, "kcmpType": abi.type_name(a.kcmp_type),
                       "shared": a.shared, "result": a.result, **_err(a.errno),
                       "caveat": a.caveat} for a in r.answers],
        "notes": r.notes,
    }


def pair_table(r: PairReport, frozen: bool) -> str:
    lines = [f"kcmp probe {r.task1.pid} ({escape(r.task1.name)}) and {r.task2.pid} "
             f"({escape(r.task2.name)}): {EXACT if frozen else SNAPSHOT}",
             f"{'kcmp type':<15} {'resource':<27} {'shared':<7} note"]
    for a in r.answers:
        if a.errno is not None:
            shared = "error"
            note = f"{abi.errno_name(a.errno)} ({abi.errno_message(a.errno)})"
        else:
            shared = "yes" if a.shared else "no"
            note = a.caveat or ""
        lines.append(f"{abi.type_name(a.kcmp_type):<15} {a.resource:<27} {shared:<7} "
                     f"{note}".rstrip())
    lines += [f"note: {n}" for n in r.notes]
    return "\n".join(lines)


def fd_json(r: FdReport, frozen: bool) -> dict[str, Any]:
    return {"pid1": r.pid1, "fd1": r.fd1, "path1": _json_path(r.path1),
            "pid2": r.pid2, "fd2": r.fd2, "path2": _json_path(r.path2),
            "same": r.result == 0, "result": r.result, "exact": frozen}


def fd_table(r: FdReport, frozen: bool) -> str:
    verdict = ("the same open file description" if r.result == 0
               else "different open file descriptions")
    return (f"{r.pid1}:{r.fd1} <{_path(r.path1) or '?'}> and {r.pid2}:{r.fd2} "
            f"<{_path(r.path2) or '?'}>: {verdict}\n{EXACT if frozen else SNAPSHOT}")


def epoll_json(r: EpollReport, frozen: bool) -> dict[str, Any]:
    return {"pid1": r.pid1, "fd": r.fd, "path": _json_path(r.path), "pid2": r.pid2,
            "efd": r.efd, "tfd": r.tfd, "toff": r.toff, "targetPath": _json_path(r.target_path),
            "registered": r.errno is None, "same": r.result == 0, "result": r.result,
            **_err(r.errno), "exact": frozen}


def epoll_table(r: EpollReport, frozen: bool) -> str:
    where = f"epoll {r.pid2}:{r.efd} target {r.tfd} (toff {r.toff})"
    if r.errno is not None:
        verdict = f"{where} is not registered (ENOENT)"
    elif r.result == 0:
        verdict = f"{r.pid1}:{r.fd} <{_path(r.path) or '?'}> is the target of {where}"
    else:
        verdict = (f"{r.pid1}:{r.fd} <{_path(r.path) or '?'}> is not the target of {where}, "
                   f"which is <{_path(r.target_path) or '?'}>")
    return f"{verdict}\n{EXACT if frozen else SNAPSHOT}"


def shared_json(r: SharedFiles, frozen: bool) -> dict[str, Any]:
    return {
        "pids": r.pids, "exact": frozen,
        "groups": [{"path": path_text(g.path),
                    "members": [{"pid": m.pid, "fd": m.fd} for m in g.members]}
                   for g in r.groups],
        "gone": [{"pid": ref.pid, "fd": ref.fd, "reason": reason} for ref, reason in r.gone],
        "skipped": [{"pid": pid, "reason": reason} for pid, reason in r.skipped],
        "fds": r.fds, "kcmpCalls": r.calls, "naivePairs": r.naive_pairs,
    }


def shared_table(r: SharedFiles, frozen: bool) -> str:
    lines = [f"open file descriptions shared among {len(r.pids)} processes: "
             f"{EXACT if frozen else SNAPSHOT}"]
    for g in r.groups:
        members = " ".join(f"{m.pid}:{m.fd}" for m in g.members)
        lines.append(f"{escape(g.path)}: {members}")
    for ref, reason in r.gone:
        lines.append(f"gone during the probe: {ref.pid}:{ref.fd} ({reason})")
    for pid, reason in r.skipped:
        lines.append(f"skipped: {pid} ({reason})")
    lines.append(f"{len(r.groups)} shared descriptions; {r.fds} fds; {r.calls} kcmp calls "
                 f"(a pairwise scan: {r.naive_pairs})")
    return "\n".join(lines)

