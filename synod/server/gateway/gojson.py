"""Go's encoding/json, where its words reach etcd's gateway clients: syntax errors and base64 errors.

``syntax_error(text)`` finds the first thing wrong in a JSON text and says it as
Go's scanner says it ("invalid character 'o' in literal null (expecting 'u')",
"unexpected EOF", ...); Python's parser reads the same texts but words (and
sometimes places) the errors differently. ``base64_error(data)`` is the offset
Go's ``base64.StdEncoding`` reports for data it refuses, or None.

``top_level`` says how the text is read: as ``json.Decoder.Decode`` reads a body
(one value; what follows it is not looked at; a text cut short is "unexpected EOF")
or as ``json.Unmarshal`` reads a field (the whole text; "unexpected end of JSON
input", and "after top-level value" for anything after the value).
"""

from __future__ import annotations

_SPACE = " \t\r\n"
_B64 = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


class _Cut(Exception):
    """The text ended inside a value."""


class _Bad(Exception):
    def __init__(self, message: str) -> None:
        self.message = message


def quote_char(c: str) -> str:
    """Go's quoting of the offending character in its scanner's messages."""
    if c == "'":
        return "'\\''"
    if c == '"':
        return "'\"'"
    if c.isprintable():
        return f"'{c}'"
    code = ord(c)
    if code < 0x80:
        return f"'\\x{code:02x}'"
    return f"'\\u{code:04x}'"


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        if self.pos >= len(self.text):
            raise _Cut
        return self.text[self.pos]

    def space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _SPACE:
            self.pos += 1

    def bad(self, context: str) -> _Bad:
        return _Bad(f"invalid character {quote_char(self.text[self.pos])} {context}")

    def value(self) -> None:
        self.space()
        c = self.peek()
        if c == "{":
            self.pos += 1
            self.obj()
        elif c == "[":
            self.pos += 1
            self.array()
        elif c == '"':
            self.pos += 1
            self.string()
        elif c == "-" or c.isdigit():
            self.number()
        elif c in "tfn":
            self.literal({"t": "true", "f": "false", "n": "null"}[c])
        else:
            raise self.bad("looking for beginning of value")

    def obj(self) -> None:
        self.space()
        if self.peek() == "}":
            self.pos += 1
            return
        while True:
            self.space()
            if self.peek() != '"':
                raise self.bad("looking for beginning of object key string")
            self.pos += 1
            self.string()
            self.space()
            if self.peek() != ":":
                raise self.bad("after object key")
            self.pos += 1
            self.value()
            self.space()
            c = self.peek()
            if c == "}":
                self.pos += 1
                return
            if c != ",":
                raise self.bad("after object key:value pair")
            self.pos += 1

    def array(self) -> None:
        self.space()
        if self.peek() == "]":
            self.pos += 1
            return
        while True:
            self.value()
            self.space()
            c = self.peek()
            if c == "]":
                self.pos += 1
                return
            if c != ",":
                raise self.bad("after array element")
            self.pos += 1

    def string(self) -> None:
        while True:
            c = self.peek()
            self.pos += 1
            if c == '"':
                return
            if c == "\\":
                e = self.peek()
                if e == "u":
                    self.pos += 1
                    for _ in range(4):
                        if self.peek() not in "0123456789abcdefABCDEF":
                            raise self.bad("in \\u hexadecimal character escape")
                        self.pos += 1
                elif e in '"\\/bfnrt':
                    self.pos += 1
                else:
                    raise self.bad("in string escape code")
            elif ord(c) < 0x20:
                self.pos -= 1
                raise self.bad("in string literal")

    def number(self) -> None:
        if self.peek() == "-":
            self.pos += 1
            if not self.peek().isdigit():
                raise self.bad("in numeric literal")
        if self.peek() == "0":
            self.pos += 1
        else:
            self.digits()
        if self.pos < len(self.text) and self.text[self.pos] == ".":
            self.pos += 1
            if not self.peek().isdigit():
                raise self.bad("after decimal point in numeric literal")
            self.digits()
        if self.pos < len(self.text) and self.text[self.pos] in "eE":
            self.pos += 1
            if self.peek() in "+-":
                self.pos += 1
            if not self.peek().isdigit():
                raise self.bad("in exponent of numeric literal")
            self.digits()

    def digits(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isdigit():
            self.pos += 1

    def literal(self, word: str) -> None:
        self.pos += 1
        for expected in word[1:]:
            if self.peek() != expected:
                raise self.bad(f"in literal {word} (expecting '{expected}')")
            self.pos += 1


class Truncated(Exception):
    """The text ends inside a value: more may complete it."""


class SyntaxError_(ValueError):
    """What Go's scanner says of a text it refuses."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def value_end(text: str, pos: int = 0) -> int:
    """Where the JSON value starting at ``pos`` (after any whitespace) ends; Truncated or SyntaxError_."""
    scanner = _Scanner(text)
    scanner.pos = pos
    try:
        scanner.value()
    except _Cut:
        raise Truncated from None
    except _Bad as e:
        raise SyntaxError_(e.message) from None
    return scanner.pos


def syntax_error(text: str, *, top_level: bool = False) -> str | None:
    """Go's message for what is wrong in ``text`` (None: nothing)."""
    scanner = _Scanner(text)
    try:
        scanner.value()
    except _Cut:
        return "unexpected end of JSON input" if top_level else "unexpected EOF"
    except _Bad as e:
        return e.message
    if top_level:
        scanner.space()
        if scanner.pos < len(text):
            return scanner.bad("after top-level value").message
    return None


def base64_error(data: bytes) -> int | None:
    """Where Go's ``base64.StdEncoding.DecodeString`` fails on ``data`` (None: it decodes)."""
    si, n = 0, len(data)
    while si < n:
        j = 0
        while j < 4:
            if si == n:
                return None if j == 0 else si - j
            c = data[si]
            si += 1
            if c in _B64:
                j += 1
                continue
            if c in b"\r\n":
                continue
            if c != ord("="):
                return si - 1
            # Padding: only after two or three characters of a quantum, then nothing but newlines.
            if j < 2:
                return si - 1
            if j == 2:
                while si < n and data[si] in b"\r\n":
                    si += 1
                if si == n:
                    return n
                if data[si] != ord("="):
                    return si - 1
                si += 1
            while si < n and data[si] in b"\r\n":
                si += 1
            return si if si < n else None
    return None
