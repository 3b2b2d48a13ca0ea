"""Runs of identical calls folded in the kernel (the `folds` map of bpf/kcmp.bpf.c, struct
kcmp_fold): the kernel streams a run when its thread's next call or exit ends it; a run whose
thread went quiet with the window shut is streamed from here, as the kernel would have.

FOLD_TAIL mirrors what follows the record in struct kcmp_fold; tests/unit/test_events.py
compiles the header to hold it to the same contract.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from .events import EV_FOLDED, EV_PRIORITY, FILES_RECORD_SIZE, OFFSETS, RECORD_SIZE
from .kinds import names_files, urgent_call

# run_ns, first_ns, last_ns, duration_ns, repeat, outside.
FOLD_TAIL = struct.Struct("<QQQQII")
FOLD_SIZE = FILES_RECORD_SIZE + FOLD_TAIL.size
DEFAULT_WINDOW_S = 1.0
# A record's repeat is 32 bits: a minute of one thread's calls fits many times over.
MAX_WINDOW_S = 60.0
# A run is taken this long after its window shut: a call that began before the window shut
# may still be counting into it until then.
MARGIN_NS = 100_000_000
_SWEPT_MAX = 65536
_S64 = struct.Struct("<q")
_S32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


def folded(record: bytes, repeat: int, first_ns: int, last_ns: int, duration_ns: int,
           priority: bool) -> bytes:
    """The folded record of a run, from its first call's record (with its files, if any):
    what the kernel streams when it ends the run itself."""
    out = bytearray(record)
    flags = _U32.unpack_from(out, OFFSETS["flags"])[0] & ~EV_PRIORITY
    _U32.pack_into(out, OFFSETS["flags"], flags | EV_FOLDED | (EV_PRIORITY if priority else 0))
    _U32.pack_into(out, OFFSETS["repeat"], repeat)
    for name, value in (("ts_ns", first_ns), ("last_ns", last_ns),
                        ("duration_ns", duration_ns)):
        _U64.pack_into(out, OFFSETS[name], value)
    return bytes(out)


class Folds:
    """The maps as BCC opened them: folds, and fold_swept (tid -> first_ns), where the runs
    streamed from here are marked so that the kernel streams them not."""

    def __init__(self, runs, swept, window_ns: int, files: bool) -> None:
        """files: whether the program records the caller's own fds (KERNEL_FILES)."""
        self._runs = runs
        self.files = files
        self._marks = swept
        self.window_ns = window_ns
        self._swept: dict[int, int] = {}  # tid -> first_ns of each run streamed from here

    def sweep(self, now_ns: int, final: bool = False) -> list[bytes]:
        """Folded records of the runs whose window shut while their thread was quiet (final:
        of every run with calls folded, as the monitor stops)."""
        records = []
        marks = self._marks
        for tid, value in self._runs.items_lookup_batch():  # BCC gives a u32 key as an int
            raw = bytes(value)
            run_ns, first_ns, last_ns, duration_ns, repeat, outside = FOLD_TAIL.unpack_from(
                raw, FILES_RECORD_SIZE)
            if not repeat or self._swept.get(tid) == first_ns:
                continue
            if not final and now_ns - run_ns < self.window_ns + MARGIN_NS:
                continue
            # Marked first: the kernel, ending the run after this, then leaves it to us.
            marks[marks.Key(tid)] = marks.Leaf(first_ns)
            if len(self._swept) >= _SWEPT_MAX:
                self._swept.clear()
            self._swept[tid] = first_ns
            ret = _S64.unpack_from(raw, OFFSETS["ret"])[0]
            flags = _U32.unpack_from(raw, OFFSETS["flags"])[0]
            urgent = urgent_call(flags, ret, outside)
            record = raw[:self._size(raw, flags)]
            records.append(folded(record, repeat, first_ns, last_ns, duration_ns, urgent))
        return records

    def _size(self, raw: bytes, flags: int) -> int:
        """A files record's where the program records files and the call names them."""
        kcmp_type = _S32.unpack_from(raw, OFFSETS["type"])[0]
        return FILES_RECORD_SIZE if self.files and names_files(flags, kcmp_type) \
            else RECORD_SIZE

    def unswept(self, records: Iterable[bytes]) -> list[bytes]:
        """The records but the kernel's folded ones of runs streamed from here already (the
        kernel ended them as they were swept)."""
        if not self._swept:
            return list(records)
        return [r for r in records if not self._duplicate(r)]

    def _duplicate(self, record: bytes) -> bool:
        if not _U32.unpack_from(record, OFFSETS["flags"])[0] & EV_FOLDED:
            return False
        tid = _U32.unpack_from(record, OFFSETS["tid"])[0]
        if self._swept.get(tid) != _U64.unpack_from(record, OFFSETS["ts_ns"])[0]:
            return False
        del self._swept[tid]
        return True
