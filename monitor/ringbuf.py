"""A BPF ring buffer read straight from its mapped pages, a batch at a time.

BCC hands each record to a Python callback through ctypes, which costs more than decoding the
record; reading the pages ourselves turns that into a slice per record. The layout is the
kernel's (kernel/bpf/ringbuf.c): a consumer page we write, then a producer page and the data
pages mapped twice in a row, so that a record that wraps around is contiguous. Each record
has an 8-byte header: its length, with a busy and a discard bit, and a page offset.

x86_64 only: plain loads and stores give the ordering the protocol needs there (TSO); other
machines use BCC's reader.
"""

from __future__ import annotations

import mmap
import platform
import select
import struct

BUSY = 1 << 31
DISCARD = 1 << 30
HEADER = struct.Struct("<II")
POS = struct.Struct("<Q")


def supported() -> bool:
    return platform.machine() == "x86_64"


class RingReader:
    def __init__(self, map_fd: int, size: int) -> None:
        page = mmap.PAGESIZE
        self._page = page
        self._mask = size - 1
        self._consumer = mmap.mmap(map_fd, page, mmap.MAP_SHARED,
                                   mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._data = mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ,
                               offset=page)
        self._epoll = select.epoll()
        self._epoll.register(map_fd, select.EPOLLIN)

    def read(self, timeout_ms: int) -> list[bytes]:
        """The records available now, after waiting up to timeout_ms for the first one."""
        cons = POS.unpack_from(self._consumer)[0]
        if POS.unpack_from(self._data)[0] == cons and timeout_ms:
            try:
                self._epoll.poll(timeout_ms / 1000)
            except InterruptedError:
                pass
        prod = POS.unpack_from(self._data)[0]
        data, base, mask, out = self._data, self._page, self._mask, []
        while cons < prod:
            at = base + (cons & mask)
            length, _ = HEADER.unpack_from(data, at)
            if length & BUSY:  # reserved, not yet submitted: the rest waits for next time
                break
            size = length & ~(BUSY | DISCARD)
            if not length & DISCARD:
                out.append(data[at + 8:at + 8 + size])
            cons += (size + 8 + 7) & ~7
        POS.pack_into(self._consumer, 0, cons)
        return out

    def close(self) -> None:
        self._epoll.close()
        self._consumer.close()
        self._data.close()
