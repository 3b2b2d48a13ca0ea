"""The JSON event schema, once: each field of a kcmp event record (Tracee's v0.24 names where
Tracee has the field) with the JSON types it may take, a target's, and a container's names.
The JSON sink writes exactly these (tests/unit/test_jsonout.py holds it, and the README's
table, to them); the offline reader checks what it reads against them."""

from __future__ import annotations

from typing import Any

NULL = type(None)
OPTIONAL_INT = (int, NULL)
OPTIONAL_STR = (str, NULL)

# A container's names from its runtime (null where none is known), the caller's and each
# target's alike.
CONTAINER: dict[str, tuple[type, ...]] = dict.fromkeys(
    ("containerName", "containerImage", "containerImageId", "podName", "podNamespace",
     "podUID"), OPTIONAL_STR)

TARGET: dict[str, tuple[type, ...]] = {
    "pid": (int,), "hostPid": OPTIONAL_INT, "processName": OPTIONAL_STR,
    "userId": OPTIONAL_INT, "hostParentProcessId": OPTIONAL_INT, "pidNamespace": OPTIONAL_INT,
    "mountNamespace": OPTIONAL_INT, "networkNamespace": (dict, NULL),
    "containerId": OPTIONAL_STR, "exited": (bool, NULL), "exiting": (bool, NULL),
    "realUserId": OPTIONAL_INT, **CONTAINER,
}

EVENT: dict[str, tuple[type, ...]] = {
    "timestamp": (int,), "processId": (int,), "threadId": OPTIONAL_INT,
    "hostProcessId": (int,), "hostThreadId": (int,), "parentProcessId": OPTIONAL_INT,
    "hostParentProcessId": OPTIONAL_INT, "pidNamespace": OPTIONAL_INT,
    "mountNamespace": OPTIONAL_INT, "networkNamespace": (dict, NULL),
    "userNamespace": OPTIONAL_INT, "utsNamespace": OPTIONAL_INT, "ipcNamespace": OPTIONAL_INT,
    "cgroupNamespace": OPTIONAL_INT, "effectiveUserId": OPTIONAL_INT,
    "effectiveGroupId": OPTIONAL_INT, "capabilities": (dict, NULL),
    "containerId": OPTIONAL_STR, "executable": (dict, NULL), "callerExited": (bool,),
    "callerContext": (str,), **CONTAINER,
    "cgroupId": (int,), "userId": (int,), "groupId": (int,), "processName": (str,),
    "eventName": (str,), "syscall": (str,), "returnValue": (int,), "argsNum": (int,),
    "args": (list,), "kcmpType": OPTIONAL_STR, "result": (str,), "errno": OPTIONAL_STR,
    "errnoMessage": OPTIONAL_STR, "permissionDenied": (bool,), "compat": (bool,),
    "argsKnown": (bool,), "refusedBySeccomp": (bool,), "lane": (str,),
    "epollSlot": (dict, NULL), "epollSlotFault": (bool,), "durationNs": OPTIONAL_INT,
    "repeat": (int,), "fdSweep": (bool,), "lastTimestamp": OPTIONAL_INT, "fdPaths": (dict,),
    "fdFiles": (dict,), "callerPidNamespace": OPTIONAL_STR, "targets": (list, NULL),
    "crossesBoundary": (list,), "contextUnresolved": (list,), "enforcement": (dict, NULL),
}


def mistyped(record: dict[str, Any], names: tuple[str, ...],
             fields: dict[str, tuple[type, ...]] = EVENT) -> list[str]:
    """Which of the fields named a record lacks or holds as another type than the schema's
    (a bool is no int here, though Python's bool is one)."""
    return [name for name in names if name not in record
            or not _typed(record[name], fields[name])]


def _typed(value: Any, types: tuple[type, ...]) -> bool:
    return isinstance(value, types) and (bool in types or not isinstance(value, bool))


def nulls(fields: dict[str, tuple[type, ...]]) -> str:
    """The fields, each null, as the JSON text inside an object."""
    return ",".join(f'"{name}":null' for name in fields)
