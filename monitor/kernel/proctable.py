"""The kernel's process table (the `procs` map of bpf/kcmp.bpf.c): the parent and name of every
task it saw start or rename, so that one gone before its event is decoded is still known.

PROC_ENTRY mirrors struct kcmp_proc in bpf/kcmp.h; tests/unit/test_events.py compiles the
header to hold it to the same contract.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

# Tasks remembered (20-byte entries, LRU).
PROC_TABLE_SIZE = 65536

# struct kcmp_proc: ppid, comm.
PROC_ENTRY = struct.Struct("<I16s")


class ProcessTable:
    """The map as BCC opened it."""

    def __init__(self, table) -> None:
        self._table = table

    def process(self, pid: int) -> tuple[int, bytes] | None:
        """(parent, name) of a process or thread as the kernel's table last knew it."""
        table = self._table
        try:
            ppid, comm = PROC_ENTRY.unpack(bytes(table[table.Key(pid)]))
        except (KeyError, ValueError):
            return None
        return ppid, comm.split(b"\0", 1)[0]

    def remember(self, processes: Iterable[tuple[int, int, bytes]]) -> None:
        """Add (pid, parent, name) rows for processes that started before the program."""
        table = self._table
        for pid, ppid, comm in processes:
            table[table.Key(pid)] = table.Leaf.from_buffer_copy(
                PROC_ENTRY.pack(ppid, comm[:16]))
