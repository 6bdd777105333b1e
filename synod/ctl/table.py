"""``-w table`` and byte sizes, laid out as etcdctl 3.4 lays them out.

etcdctl renders tables with the 2017 version of olekukonko/tablewriter it
vendors: borders of ``+``, ``-`` and ``|``, headers upper-cased and centred
(the odd space on the right), cells aligned right, one space of padding on
each side. A cell wider than 30 columns is wrapped at its spaces into lines
of the column's width as it stands when the cell is added (so wrapping
depends on the rows before it), with the fewest ragged lines; a single word
longer than that widens the column instead. Sizes are go-humanize's
``Bytes``: SI units, one decimal below 10 (``20 kB``, ``1.2 MB``, ``7 B``).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence

MAX_CELL_WIDTH = 30  # tablewriter's MAX_ROW_WIDTH: cells wider than this are wrapped
_TOO_LONG_PENALTY = 100_000
_SIZES = ("B", "kB", "MB", "GB", "TB", "PB", "EB")


def display_width(text: str) -> int:
    """Terminal columns of ``text`` (wide East Asian characters take two, combining marks none)."""
    width = 0
    for ch in text:
        code = ord(ch)
        if code < 0x20 or 0x7F <= code < 0xA0 or unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def _wrap_words(words: list[str], limit: int) -> list[list[str]]:
    """Lines of words with the least raggedness (the square of each line's shortfall, summed)."""
    n = len(words)
    sizes = [len(w) for w in words]
    cost = [0] * (n + 1)
    breaks = [n] * n
    for i in range(n - 1, -1, -1):
        length = sum(sizes[i:]) + (n - 1 - i)
        if length <= limit:
            cost[i], breaks[i] = 0, n
            continue
        best = math.inf
        line = -1  # the length of words[i:j], spaces included
        for j in range(i + 1, n):
            line += sizes[j - 1] + 1
            shortfall = limit - line
            c = shortfall * shortfall + cost[j] + (_TOO_LONG_PENALTY if line > limit else 0)
            if c < best:
                best, breaks[i] = c, j
        cost[i] = int(best)
    lines = []
    i = 0
    while i < n:
        lines.append(words[i : breaks[i]])
        i = breaks[i]
    return lines


def wrap_cell(text: str, limit: int) -> list[str]:
    """A cell's lines: split at single spaces (newlines count as spaces)."""
    words = text.replace("\n", " ").split(" ")
    for w in words:
        limit = max(limit, len(w.encode("utf-8", "surrogateescape")))
    return [" ".join(line) for line in _wrap_words(words, limit)]


def _centre(text: str, width: int) -> str:
    gap = width - display_width(text)
    if gap <= 0:
        return text
    return " " * (gap // 2) + text + " " * (gap - gap // 2)


def _right(text: str, width: int) -> str:
    gap = width - display_width(text)
    return " " * gap + text if gap > 0 else text


def _title(header: str) -> str:
    return header.replace("_", " ").replace(".", " ").strip().upper()


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The table etcdctl prints for ``-w table``."""
    widths = [min(display_width(h), MAX_CELL_WIDTH) for h in header]
    cells: list[list[list[str]]] = []
    for row in rows:
        lines_of_row = []
        for col, text in enumerate(row):
            widths[col] = max(widths[col], min(display_width(text), MAX_CELL_WIDTH))
            lines = wrap_cell(text, widths[col])
            widths[col] = max(widths[col], *(display_width(line) for line in lines))
            lines_of_row.append(lines)
        cells.append(lines_of_row)
    rule = "+" + "".join("-" * (w + 2) + "+" for w in widths) + "\n"
    out = [rule, "|" + "".join(f" {_centre(_title(h), w)} |" for h, w in zip(header, widths, strict=True))]
    out += ["\n", rule]
    for lines_of_row in cells:
        height = max(len(lines) for lines in lines_of_row)
        padded = [lines + ["  "] * (height - len(lines)) for lines in lines_of_row]
        for i in range(height):
            out.append(
                "|" + "".join(f" {_right(c[i], w)} |" for c, w in zip(padded, widths, strict=True)) + "\n"
            )
    out.append(rule)
    return "".join(out)


def human_bytes(size: int) -> str:
    """go-humanize's ``Bytes`` (of the value as a uint64)."""
    size &= (1 << 64) - 1
    if size < 10:
        return f"{size} B"
    exponent = math.floor(math.log(size) / math.log(1000))
    value = math.floor(size / 1000.0**exponent * 10 + 0.5) / 10
    return f"{value:.1f} {_SIZES[exponent]}" if value < 10 else f"{value:.0f} {_SIZES[exponent]}"
