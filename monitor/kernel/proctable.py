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
# struct kcmp_nspid, the key of the table of pid numbers: pid namespace inode, number.
NSPID_KEY = struct.Struct("<II")


class ProcessTable:
    """The maps as BCC opened them: procs, and nspids where the program keeps it."""

    def __init__(self, table, nspids=None) -> None:
        self._table = table
        self._nspids = nspids

    def host_pid(self, pidns: int, nr: int) -> int | None:
        """The host pid of the task a pid namespace numbered nr, as it last did."""
        if self._nspids is None:
            return None
        table = self._nspids
        try:
            return int(table[table.Key.from_buffer_copy(NSPID_KEY.pack(pidns, nr))].value)
        except KeyError:
            return None

    def process(self, pid: int) -> tuple[int, bytes] | None:
        """(parent, name) of a process or thread as the kernel's table last knew it."""
        table = self._table
        try:
            ppid, comm = PROC_ENTRY.unpack(bytes(table[table.Key(pid)]))
        except (KeyError, ValueError):
            return None
        return ppid, comm.split(b"\0", 1)[0]

    def remember_numbers(self, numbers: Iterable[tuple[int, int, int]]) -> None:
        """Add (pid namespace inode, number there, host pid) rows for processes that started
        before the program."""
        table = self._nspids
        if table is None:
            return
        for pidns, nr, host in numbers:
            table[table.Key.from_buffer_copy(NSPID_KEY.pack(pidns, nr))] = table.Leaf(host)

    def remember(self, processes: Iterable[tuple[int, int, bytes]]) -> None:
        """Add (pid, parent, name) rows for processes that started before the program."""
        table = self._table
        for pid, ppid, comm in processes:
            table[table.Key(pid)] = table.Leaf.from_buffer_copy(
                PROC_ENTRY.pack(ppid, comm[:16]))
