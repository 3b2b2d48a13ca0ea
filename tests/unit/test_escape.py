import pytest

from kcmp_monitor.escape import escape, escape_bytes, escape_word


@pytest.mark.parametrize("text, shown", [
    ("plain/path.txt", "plain/path.txt"),
    ("caf\u00e9 \u65e5\u672c", "caf\u00e9 \u65e5\u672c"),  # printable Unicode stays readable
    ("\x1b[31mred", "\\x1b[31mred"),
    ("title\x1b]0;pwn\x07", "title\\x1b]0;pwn\\x07"),
    ("a\nb\tc\rd", "a\\nb\\tc\\rd"),
    ("back\\slash", "back\\\\slash"),
    ("\x7f", "\\x7f"),
    ("\x9b31m", "\\u009b31m"),  # C1 CSI: a character, not the byte 0x9b
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


def _unescape(text: str) -> bytes:
    """The bytes escape_bytes() was given: what makes it one-to-one."""
    out, i = bytearray(), 0
    named = {"\\": b"\\", "n": b"\n", "t": b"\t", "r": b"\r"}
    while i < len(text):
        ch = text[i]
        if ch != "\\":
            out += ch.encode()
            i += 1
            continue
        kind = text[i + 1]
        if kind in named:
            out += named[kind]
            i += 2
        elif kind == "x":
            out.append(int(text[i + 2:i + 4], 16))  # below 0x80 a character, above a byte
            i += 4
        else:
            width = 4 if kind == "u" else 8
            out += chr(int(text[i + 2:i + 2 + width], 16)).encode()
            i += 2 + width
    return bytes(out)


TRICKY = [b"c\x9b", b"c\xc2\x9b", b"\\xff", b"\xff", b"\\\\", b"\\", b"\xc2\xad", b"\\u00ad",
          b"other", b"(other processes)", b"a\n", b"a", b"z msg=hi uid=0", b"\x1b[31m",
          b"\\x1b[31m", b"\xe2\x80\xae", b"\xed\xa0\x80", b"\xf0\x9f\x98\x80", b"\x7f", b"\x00"]


def test_escaping_is_one_to_one():
    import random

    rng = random.Random(23)
    samples = TRICKY + [bytes(rng.choice(b"\\x\x00\x1b\x7f\x80\x9b\xc2\xad\xe2\xffa ")
                              for _ in range(rng.randrange(1, 9))) for _ in range(5000)]
    seen = {}
    for raw in samples:
        text = escape_bytes(raw)
        assert _unescape(text) == raw, (raw, text)
        assert seen.setdefault(text, raw) == raw, (raw, seen[text])
        assert text.isprintable()


def test_a_word_has_no_spaces_and_stays_one_to_one():
    assert escape_word(b"z msg=hi uid=0") == "z\\x20msg=hi\\x20uid=0"
    assert escape_word(b"z\\x20msg") == "z\\\\x20msg"
