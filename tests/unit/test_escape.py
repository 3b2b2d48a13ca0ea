import pytest

from kcmp_monitor.escape import escape, escape_bytes


@pytest.mark.parametrize("text, shown", [
    ("plain/path.txt", "plain/path.txt"),
    ("caf\u00e9 \u65e5\u672c", "caf\u00e9 \u65e5\u672c"),  # printable Unicode stays readable
    ("\x1b[31mred", "\\x1b[31mred"),
    ("title\x1b]0;pwn\x07", "title\\x1b]0;pwn\\x07"),
    ("a\nb\tc\rd", "a\\nb\\tc\\rd"),
    ("back\\slash", "back\\\\slash"),
    ("\x7f", "\\x7f"),
    ("\x9b31m", "\\x9b31m"),  # C1 CSI
    ("\u202eevil", "\\u202eevil"),  # right-to-left override
    ("\u200b", "\\u200b"),  # zero-width space
    ("\U000e0001", "\\U000e0001"),  # language tag (format character)
])
def test_escape(text, shown):
    assert escape(text) == shown


def test_escape_is_reversible_where_a_backslash_is_involved():
    assert escape("\\x1b") != escape("\x1b")


@pytest.mark.parametrize("raw, shown", [
    (b"kcmpload", "kcmpload"),
    (b"\xff\xfe", "\\xff\\xfe"),
    (b"ok\xc3\xa9", "ok\u00e9"),
    (b"\xc3", "\\xc3"),  # a truncated UTF-8 sequence
])
def test_escape_bytes(raw, shown):
    assert escape_bytes(raw) == shown


def test_escaped_output_holds_no_control_byte():
    nasty = "".join(chr(c) for c in range(0x00, 0xA0)) + "\u2028\u2029\u202e\ufeff"
    out = escape(nasty).encode("utf-8")
    assert not any(b < 0x20 or b == 0x7F for b in out)
    assert "\u202e" not in escape(nasty) and "\x9b" not in escape(nasty)


def test_escape_without_backslash_leaves_escaped_text_alone():
    once = escape("a\x1b\\b")
    assert escape(once, backslash=False) == once
    assert escape("raw\x07 and \\x07", backslash=False) == "raw\\x07 and \\x07"
