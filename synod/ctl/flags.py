"""Command-line syntax as etcdctl's pflag/cobra read it: flags, their values, and the command word.

etcdctl accepts ``--flag value``, ``--flag=value``, ``-w json``, ``-wjson``,
``--bool``/``--bool=false``, flags before or after the command and its
arguments, ``--`` to end flags, and a unique prefix of a command's name. This
module reads argv that way and reports mistakes with pflag's and cobra's words
(click only dispatches to the commands, which read their argv with it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from synod.ctl.gostrconv import parse_bool, parse_int, quote, quote_rune
from synod.duration import format_duration, parse_duration

Kind = Literal["bool", "string", "int64", "duration", "strings"]
FlagValue = bool | str | int | list[str]


class FlagError(Exception):
    """A command line pflag refuses; the message is pflag's."""


@dataclass(frozen=True)
class Flag:
    """One flag, described as pflag describes it (its default is pflag's DefValue text)."""

    name: str
    kind: Kind
    default: str
    usage: str
    shorthand: str = ""

    @property
    def takes_value(self) -> bool:
        return self.kind != "bool"

    @property
    def type_name(self) -> str:
        """pflag's Value.Type()."""
        return {"strings": "stringSlice"}.get(self.kind, self.kind)

    def display_name(self) -> str:
        """How pflag names the flag in 'invalid argument' errors."""
        return f"-{self.shorthand}, --{self.name}" if self.shorthand else f"--{self.name}"

    def convert(self, text: str, previous: FlagValue | None = None) -> FlagValue:
        """pflag's Value.Set: the new value, or ValueError with Go's message."""
        if self.kind == "bool":
            return parse_bool(text)
        if self.kind == "int64":
            return parse_int(text, 0, 64)
        if self.kind == "duration":
            return parse_duration(text)
        if self.kind == "strings":
            items = read_csv(text)
            return [*previous, *items] if isinstance(previous, list) else items
        return text

    def default_value(self) -> FlagValue:
        if self.kind == "strings":
            return read_csv(self.default[1:-1]) if self.default not in ("", "[]") else []
        return self.convert(self.default)

    def is_zero_default(self) -> bool:
        """pflag's defaultIsZeroValue."""
        if self.kind == "bool":
            return self.default == "false"
        if self.kind == "duration":
            return self.default in ("0", "0s")
        if self.kind == "int64":
            return self.default == "0"
        if self.kind == "strings":
            return self.default in ("", "[]")
        return self.default == ""


_QUOTE_ERROR = 'extraneous or missing " in quoted-field'


def read_csv(text: str) -> list[str]:
    """How pflag's string slices split a value: the first record of Go's encoding/csv, with its errors."""
    if text == "":
        return []
    fields: list[str] = []
    line = text.split("\n", 1)[0] if not text.startswith('"') else text
    col = 1
    while True:
        if not line.startswith('"'):
            field, comma, rest = line.partition(",")
            if "\n" in field:
                field = field.split("\n", 1)[0]
                comma = ""
            if '"' in field:
                raise ValueError(
                    f'parse error on line 1, column {col + field.index(chr(34))}: bare " in non-quoted-field'
                )
            fields.append(field)
            if not comma:
                return fields
            line, col = rest, col + len(field) + 1
            continue
        value, line, col = [], line[1:], col + 1
        while True:
            i = line.find('"')
            if i < 0:
                raise ValueError(f"parse error on line 1, column {col + len(line)}: {_QUOTE_ERROR}")
            value.append(line[:i])
            line, col = line[i + 1 :], col + i + 1
            if line.startswith('"'):
                value.append('"')
                line, col = line[1:], col + 1
            elif line.startswith(","):
                fields.append("".join(value))
                line, col = line[1:], col + 1
                break
            elif line in ("", "\n") or line.startswith("\n"):
                fields.append("".join(value))
                return fields
            else:
                raise ValueError(f"parse error on line 1, column {col - 1}: {_QUOTE_ERROR}")


def format_value(flag: Flag, value: FlagValue) -> str:
    """pflag's Value.String()."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ",".join(value) + "]"
    if flag.kind == "duration" and isinstance(value, int):
        return format_duration(value)
    return str(value)


def help_flag(command_name: str) -> Flag:
    """The help flag cobra gives every command."""
    return Flag("help", "bool", "false", f"help for {command_name}", "h")


@dataclass
class ParsedFlags:
    """What pflag made of a command line: the flags set, and the arguments."""

    flags: dict[str, Flag]
    values: dict[str, FlagValue] = field(default_factory=dict)  # the flags that were set
    args: list[str] = field(default_factory=list)

    @property
    def changed(self) -> set[str]:
        return set(self.values)

    def value(self, name: str) -> FlagValue:
        if name in self.values:
            return self.values[name]
        return self.flags[name].default_value()

    def get_bool(self, name: str) -> bool:
        value = self.value(name)
        assert isinstance(value, bool)
        return value

    def get_str(self, name: str) -> str:
        value = self.value(name)
        assert isinstance(value, str)
        return value

    def get_int(self, name: str) -> int:
        """An int64 or duration flag (durations in nanoseconds)."""
        value = self.value(name)
        assert isinstance(value, int) and not isinstance(value, bool)
        return value

    def get_strings(self, name: str) -> list[str]:
        value = self.value(name)
        assert isinstance(value, list)
        return value

    def set(self, flag: Flag, text: str) -> None:
        try:
            self.values[flag.name] = flag.convert(text, self.values.get(flag.name))
        except ValueError as e:
            raise FlagError(
                f"invalid argument {quote(text)} for {quote(flag.display_name())} flag: {e}"
            ) from None


def parse_flags(argv: Sequence[str], flags: Iterable[Flag]) -> ParsedFlags:
    """pflag's FlagSet.Parse with interspersed arguments; FlagError as pflag words it."""
    by_name = {f.name: f for f in flags}
    by_short = {f.shorthand: f for f in by_name.values() if f.shorthand}
    parsed = ParsedFlags(by_name)
    rest = list(argv)
    while rest:
        s = rest.pop(0)
        if len(s) < 2 or s[0] != "-":
            parsed.args.append(s)
            continue
        if s[1] == "-":
            if len(s) == 2:
                parsed.args.extend(rest)
                break
            rest = _parse_long(s, rest, by_name, parsed)
        else:
            shorthands = s[1:]
            while shorthands:
                shorthands, rest = _parse_short(shorthands, rest, by_short, parsed)
    return parsed


def _parse_long(s: str, rest: list[str], by_name: dict[str, Flag], parsed: ParsedFlags) -> list[str]:
    name = s[2:]
    if name[0] in "-=":
        raise FlagError(f"bad flag syntax: {s}")
    name, eq, text = name.partition("=")
    flag = by_name.get(name)
    if flag is None:
        raise FlagError(f"unknown flag: --{name}")
    if eq:
        value = text
    elif not flag.takes_value:
        value = "true"
    elif rest:
        value = rest.pop(0)
    else:
        raise FlagError(f"flag needs an argument: {s}")
    parsed.set(flag, value)
    return rest


def _parse_short(
    shorthands: str, rest: list[str], by_short: dict[str, Flag], parsed: ParsedFlags
) -> tuple[str, list[str]]:
    c = shorthands[0]
    flag = by_short.get(c)
    if flag is None:
        raise FlagError(f"unknown shorthand flag: {quote_rune(ord(c))} in -{shorthands}")
    remaining = shorthands[1:]
    if len(shorthands) > 2 and shorthands[1] == "=":
        value, remaining = shorthands[2:], ""
    elif not flag.takes_value:
        value = "true"
    elif len(shorthands) > 1:
        value, remaining = shorthands[1:], ""
    elif rest:
        value = rest.pop(0)
    else:
        raise FlagError(f"flag needs an argument: {quote_rune(ord(c))} in -{shorthands}")
    parsed.set(flag, value)
    return remaining, rest


def strip_flags(argv: Sequence[str], flags: Iterable[Flag]) -> list[str]:
    """cobra's stripFlags: the words of a command line that are not flags (used to find the command)."""
    by_name = {f.name: f for f in flags}
    by_short = {f.shorthand: f for f in by_name.values() if f.shorthand}
    words: list[str] = []
    rest = list(argv)
    while rest:
        s = rest.pop(0)
        if s == "--":
            break
        takes_long = s.startswith("--") and "=" not in s and not _is_bool(by_name.get(s[2:]))
        takes_short = s.startswith("-") and "=" not in s and len(s) == 2 and not _is_bool(by_short.get(s[1:]))
        if takes_long or takes_short:
            if len(rest) <= 1:
                break
            rest.pop(0)
        elif s and not s.startswith("-"):
            words.append(s)
    return words


def _is_bool(flag: Flag | None) -> bool:
    return flag is not None and not flag.takes_value


def without_first(argv: Sequence[str], word: str) -> list[str]:
    """cobra's argsMinusFirstX."""
    out = list(argv)
    if word in out:
        out.remove(word)
    return out


def find_command(word: str, names: Sequence[str]) -> str | None:
    """A command by its name or, as cobra's prefix matching allows, by a unique prefix of it."""
    if word in names:
        return word
    matches = [n for n in names if n.startswith(word)]
    return matches[0] if len(matches) == 1 else None


def _distance(a: str, b: str) -> int:
    a, b = a.lower(), b.lower()
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[len(b)]


def suggestions(word: str, names: Sequence[str]) -> str:
    """cobra's 'Did you mean this?' text for a mistyped command (empty if nothing is close)."""
    close = [n for n in names if _distance(word, n) <= 2 or n.lower().startswith(word.lower())]
    if not close:
        return ""
    return "\n\nDid you mean this?\n" + "".join(f"\t{n}\n" for n in close)
