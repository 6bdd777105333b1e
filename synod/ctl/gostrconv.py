"""Go string semantics synodctl must reproduce: strconv quoting and number parsing, unicode spaces.

etcdctl's messages quote keys and flag values with Go's ``%q`` and parse
numbers with ``strconv``; its errors quote those functions' own texts. Byte
strings are Go strings here: any bytes, UTF-8 where they decode.
"""

from __future__ import annotations

import unicodedata

RUNE_ERROR = 0xFFFD
MAX_RUNE = 0x10FFFF

# unicode.IsSpace: the Latin-1 spaces plus the White_Space characters above U+00FF.
_SPACES = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
_SIMPLE_ESCAPES = {0x07: "\\a", 0x08: "\\b", 0x0C: "\\f", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x0B: "\\v"}
_UNESCAPES = {"a": 0x07, "b": 0x08, "f": 0x0C, "n": 0x0A, "r": 0x0D, "t": 0x09, "v": 0x0B, "\\": 0x5C}


class GoSyntaxError(ValueError):
    """strconv.ErrSyntax."""

    def __init__(self) -> None:
        super().__init__("invalid syntax")


class NumError(ValueError):
    """strconv.NumError: ``strconv.ParseInt: parsing "x": invalid syntax``."""

    def __init__(self, func: str, text: str, reason: str) -> None:
        super().__init__(f"strconv.{func}: parsing {quote(text)}: {reason}")


def decode_rune(data: bytes, i: int) -> tuple[int, int]:
    """utf8.DecodeRune at ``data[i:]``: (rune, size); (RUNE_ERROR, 1) on an invalid byte."""
    b = data[i]
    if b < 0x80:
        return b, 1
    if 0xC2 <= b <= 0xDF:
        n = 2
    elif 0xE0 <= b <= 0xEF:
        n = 3
    elif 0xF0 <= b <= 0xF4:
        n = 4
    else:
        return RUNE_ERROR, 1
    try:
        text = data[i : i + n].decode("utf-8")
    except UnicodeDecodeError:
        return RUNE_ERROR, 1
    return ord(text), n


def runes(data: bytes) -> list[tuple[int, int]]:
    """(rune, size) for each rune of ``data``, as a Go ``range`` over a string sees them."""
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(data):
        r, n = decode_rune(data, i)
        out.append((r, n))
        i += n
    return out


def is_space(r: int) -> bool:
    """unicode.IsSpace."""
    return chr(r) in _SPACES


def is_print(r: int) -> bool:
    """strconv.IsPrint: letters, marks, numbers, punctuation, symbols and the ASCII space."""
    if r == 0x20:
        return True
    if r > MAX_RUNE or 0xD800 <= r <= 0xDFFF:
        return False
    return unicodedata.category(chr(r))[0] in "LMNPS"


def trim_space(data: bytes) -> bytes:
    """strings.TrimSpace."""
    start, end = 0, len(data)
    while start < end:
        r, n = decode_rune(data, start)
        if not (n == 1 and r == RUNE_ERROR) and is_space(r):
            start += n
        else:
            break
    while end > start:
        # Find the start of the last rune.
        j = end - 1
        while j > start and end - j < 4 and (data[j] & 0xC0) == 0x80:
            j -= 1
        r, n = decode_rune(data, j)
        if j + n != end:
            j, r = end - 1, RUNE_ERROR
        if r != RUNE_ERROR and is_space(r):
            end = j
        else:
            break
    return data[start:end]


def quote(value: bytes | str) -> str:
    """strconv.Quote (what ``%q`` prints for a string)."""
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    out = ['"']
    i = 0
    while i < len(data):
        r, n = decode_rune(data, i)
        if n == 1 and r == RUNE_ERROR:
            out.append(f"\\x{data[i]:02x}")
        elif r in (0x22, 0x5C):
            out.append("\\" + chr(r))
        elif is_print(r):
            out.append(chr(r))
        elif r in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[r])
        elif r < 0x20 or r == 0x7F:
            out.append(f"\\x{r:02x}")
        elif r < 0x10000:
            out.append(f"\\u{r:04x}")
        else:
            out.append(f"\\U{r:08x}")
        i += n
    out.append('"')
    return "".join(out)


def quote_rune(r: int) -> str:
    """strconv.QuoteRune (what ``%q`` prints for a byte or rune)."""
    if r == 0x27:
        return "'\\''"
    if r == 0x5C:
        return "'\\\\'"
    if is_print(r):
        return f"'{chr(r)}'"
    if r in _SIMPLE_ESCAPES:
        return f"'{_SIMPLE_ESCAPES[r]}'"
    if r < 0x20 or r == 0x7F:
        return f"'\\x{r:02x}'"
    if r < 0x10000:
        return f"'\\u{r:04x}'"
    return f"'\\U{r:08x}'"


def _encode_rune(r: int) -> bytes:
    if r > MAX_RUNE or 0xD800 <= r <= 0xDFFF:
        r = RUNE_ERROR
    return chr(r).encode("utf-8")


def unquote(data: bytes) -> bytes:
    """strconv.Unquote for a double-quoted or back-quoted string; GoSyntaxError if malformed."""
    if len(data) < 2 or data[0] != data[-1] or data[0] not in b'"`':
        raise GoSyntaxError
    body = data[1:-1]
    if data[0] == 0x60:  # back-quoted: raw, but no back quote and no carriage return
        if b"`" in body:
            raise GoSyntaxError
        return body.replace(b"\r", b"")
    out = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        if c == 0x22 or c == 0x0A:
            raise GoSyntaxError
        if c != 0x5C:
            r, n = decode_rune(body, i)
            out += body[i : i + n] if not (n == 1 and r == RUNE_ERROR) else _encode_rune(RUNE_ERROR)
            i += n
            continue
        i += 1
        if i >= len(body):
            raise GoSyntaxError
        e = chr(body[i])
        i += 1
        if e in _UNESCAPES:
            out.append(_UNESCAPES[e])
        elif e == '"':
            out.append(0x22)
        elif e in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[e]
            digits = body[i : i + width]
            if len(digits) < width or not all(chr(d) in "0123456789abcdefABCDEF" for d in digits):
                raise GoSyntaxError
            value = int(digits, 16)
            i += width
            if e == "x":
                out.append(value)
            elif value > MAX_RUNE or 0xD800 <= value <= 0xDFFF:
                raise GoSyntaxError
            else:
                out += _encode_rune(value)
        elif e in "01234567":
            digits = body[i - 1 : i + 2]
            if len(digits) < 3 or not all(chr(d) in "01234567" for d in digits):
                raise GoSyntaxError
            value = int(digits, 8)
            if value > 255:
                raise GoSyntaxError
            out.append(value)
            i += 2
        else:
            raise GoSyntaxError
    return bytes(out)


def _underscore_ok(s: str) -> bool:
    """Go's rule for '_' in base-prefixed literals: only between digits or after the prefix."""
    saw = "^"
    i = 0
    hexadecimal = False
    if len(s) >= 1 and s[0] in "+-":
        s = s[1:]
    if len(s) >= 2 and s[0] == "0" and s[1].lower() in "bxo":
        hexadecimal = s[1].lower() == "x"
        i = 2
        saw = "0"
    while i < len(s):
        ch = s[i]
        if ch.isdigit() or (hexadecimal and ch.lower() in "abcdef"):
            saw = "0"
        elif ch == "_":
            if saw != "0":
                return False
            saw = "_"
        else:
            if saw == "_":
                return False
            saw = "!"
        i += 1
    return saw != "_"


def parse_uint(text: str, base: int, bits: int, func: str = "ParseUint") -> int:
    """strconv.ParseUint (base 0 means: from the literal's prefix, underscores allowed)."""
    if text == "":
        raise NumError(func, text, "invalid syntax")
    s = text
    base0 = base == 0
    if base0:
        base = 10
        if s[0] == "0":
            if len(s) >= 3 and s[1].lower() == "b":
                base, s = 2, s[2:]
            elif len(s) >= 3 and s[1].lower() == "o":
                base, s = 8, s[2:]
            elif len(s) >= 3 and s[1].lower() == "x":
                base, s = 16, s[2:]
            else:
                base, s = 8, s[1:]
    limit = (1 << bits) - 1
    value = 0
    underscores = False
    for ch in s:
        if ch == "_" and base0:
            underscores = True
            continue
        if "0" <= ch <= "9":
            d = ord(ch) - ord("0")
        elif "a" <= ch.lower() <= "z":
            d = ord(ch.lower()) - ord("a") + 10
        else:
            raise NumError(func, text, "invalid syntax")
        if d >= base:
            raise NumError(func, text, "invalid syntax")
        value = value * base + d
        if value > limit:
            raise NumError(func, text, "value out of range")
    if underscores and not _underscore_ok(text):
        raise NumError(func, text, "invalid syntax")
    return value


def parse_int(text: str, base: int = 10, bits: int = 64) -> int:
    """strconv.ParseInt, with its error texts."""
    if text == "":
        raise NumError("ParseInt", text, "invalid syntax")
    negative = text[0] == "-"
    body = text[1:] if text[0] in "+-" else text
    try:
        magnitude = parse_uint(body, base, bits, "ParseInt")
    except NumError as e:
        reason = "value out of range" if str(e).endswith("value out of range") else "invalid syntax"
        raise NumError("ParseInt", text, reason) from None
    cutoff = 1 << (bits - 1)
    if (not negative and magnitude >= cutoff) or (negative and magnitude > cutoff):
        raise NumError("ParseInt", text, "value out of range")
    return -magnitude if negative else magnitude


def parse_bool(text: str) -> bool:
    """strconv.ParseBool."""
    if text in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if text in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise NumError("ParseBool", text, "invalid syntax")
