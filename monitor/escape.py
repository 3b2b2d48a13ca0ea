"""Terminal-safe text: what the kernel hands us (process names, paths) may hold escapes."""

from __future__ import annotations

_NAMED = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape_char(ch: str, backslash: bool = True) -> str:
    named = _NAMED.get(ch)
    if named is not None and (backslash or ch != "\\"):
        return named
    if ch.isprintable():
        return ch
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x80:  # \xNN of 0x80 and above is a byte that was not UTF-8: never a character
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape(text: str, backslash: bool = True) -> str:
    """Text with backslashes, control, format and other non-printable characters escaped.

    Reversible (a backslash becomes two; \\xNN is an ASCII control below 0x80 and a byte that
    was not UTF-8 above, \\uNNNN and \\UNNNNNNNN other characters), so distinct inputs stay
    distinct. With
    backslash=False, text that is escaped already passes unchanged: only what could still
    reach the terminal raw is escaped (for messages whose parts were escaped before).
    """
    if text.isprintable() and (not backslash or "\\" not in text):
        return text
    return "".join(_escape_char(ch, backslash) for ch in text)


def escape_bytes(raw: bytes) -> str:
    """escape() of bytes that are UTF-8 where they can be and raw bytes where not."""
    return escape(raw.decode("utf-8", "surrogateescape"))


def escape_word(raw: bytes) -> str:
    """escape_bytes() with spaces escaped too (\x20): a word of a line of words, which no
    name can make look like the words after it."""
    return escape_bytes(raw).replace(" ", "\\x20")


def json_text(raw: bytes) -> str:
    """Bytes as JSON carries them as text: a byte that is not UTF-8 becomes a visible \\xNN,
    and a backslash two, so that no name can pass for another."""
    return raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")
