"""Help and usage texts, laid out as etcdctl lays out its own (tab-aligned NAME/USAGE/OPTIONS).

Also cobra's plain usage block, which etcdctl writes to stderr when a request
line of a txn has a flag it does not know.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from synod.ctl.flags import Flag
from synod.ctl.gostrconv import quote


@dataclass(frozen=True)
class CommandHelp:
    """What the help text says about one command."""

    name: str
    use: str
    short: str
    long: str = ""


def tabwrite(text: str, tabwidth: int = 8, padding: int = 1) -> str:
    """Go's text/tabwriter with tabs as padding (etcdctl's help layout): aligns tab-separated cells.

    A cell is text ended by a tab; consecutive lines with a cell in the same
    column form a block whose cells are padded (with tabs) to the block's widest.
    """
    lines = [line.split("\t") for line in text.split("\n")]
    widths: list[list[int]] = [[0] * (len(cells) - 1) for cells in lines]

    def layout(first: int, last: int, column: int) -> None:
        line = first
        while line < last:
            if column >= len(lines[line]) - 1:
                line += 1
                continue
            start = line
            width = 0
            while line < last and column < len(lines[line]) - 1:
                width = max(width, len(lines[line][column]) + padding)
                line += 1
            for i in range(start, line):
                widths[i][column] = width
            layout(start, line, column + 1)

    layout(0, len(lines), 0)
    out = []
    for cells, cell_widths in zip(lines, widths, strict=True):
        parts = []
        for cell, width in zip(cells, cell_widths, strict=False):
            cellw = (width + tabwidth - 1) // tabwidth * tabwidth
            parts.append(cell + "\t" * ((cellw - len(cell) + tabwidth - 1) // tabwidth))
        parts.append(cells[-1])
        out.append("".join(parts))
    return "\n".join(out)


def etcd_flag_usages(flags: Sequence[Flag]) -> str:
    """etcdctl's option lines: ``      --limit=0<TAB>Maximum number of results``."""
    out = []
    for f in sorted(flags, key=lambda f: f.name):
        head = f"  -{f.shorthand}, --{f.name}" if f.shorthand else f"      --{f.name}"
        default = quote(f.default) if f.kind == "string" else f.default
        value = f"[={default}]" if not f.takes_value else f"={default}"
        out.append(f"{head}{value}\t{f.usage}\n")
    return "".join(out)


def command_usage(
    command: CommandHelp | None,
    root: CommandHelp,
    subcommands: Sequence[CommandHelp],
    local_flags: Sequence[Flag],
    global_flags: Sequence[Flag],
    version: str,
    api_version: str,
) -> str:
    """The usage text etcdctl prints for ``--help``, a bare invocation, or a flag it does not accept."""
    parts: list[str] = []
    if command is None:
        parts += ["NAME:\n", f"\t{root.name} - {root.short}\n", "\nUSAGE:\n", f"\t{root.use} [flags]\n"]
        parts += [
            "\nVERSION:\n",
            f"\t{version}\n",
            "\nAPI VERSION:\n",
            f"\t{api_version}\n",
            "\n\nCOMMANDS:\n",
        ]
        parts += [f"\t{c.name}\t{c.short}\n" for c in sorted(subcommands, key=lambda c: c.name)]
        parts += ["\nOPTIONS:\n", etcd_flag_usages(local_flags)]
    else:
        use = f"{root.name} {command.use}"
        if "[flags]" not in use:
            use += " [flags]"
        parts += ["NAME:\n", f"\t{command.name} - {command.short}\n", "\nUSAGE:\n", f"\t{use}\n"]
        if subcommands:
            # A command with subcommands (``lease``) lists them, as the root does.
            parts += ["\nAPI VERSION:\n", f"\t{api_version}\n", "\n\nCOMMANDS:\n"]
            prefix = command.name + " "
            parts += [
                f"\t{c.name.removeprefix(prefix)}\t{c.short}\n"
                for c in sorted(subcommands, key=lambda c: c.name)
            ]
        if command.long:
            parts.append("\nDESCRIPTION:\n")
            parts += [f"\t{line}\n" for line in command.long.strip("\n\t ").split("\n")]
        parts += ["\nOPTIONS:\n", etcd_flag_usages(local_flags)]
        parts += ["\nGLOBAL OPTIONS:\n", etcd_flag_usages(global_flags)]
    return tabwrite("".join(parts)) + "\n"


def flag_defaults(flags: Sequence[Flag]) -> str:
    """pflag's PrintDefaults text (what a bare flag set prints before failing with ErrHelp)."""
    return _flag_usages(flags)


def _flag_usages(flags: Sequence[Flag]) -> str:
    """pflag's FlagUsages: one aligned line per flag, with its type and non-zero default."""
    lines = []
    for f in sorted(flags, key=lambda f: f.name):
        line = f"  -{f.shorthand}, --{f.name}" if f.shorthand else f"      --{f.name}"
        type_name = {"int64": "int", "stringSlice": "strings", "bool": ""}.get(f.type_name, f.type_name)
        if type_name:
            line += " " + type_name
        line += "\x00"
        usage = f.usage
        if not f.is_zero_default():
            usage += f" (default {quote(f.default)})" if f.kind == "string" else f" (default {f.default})"
        lines.append((line, usage))
    width = max(len(line) for line, _ in lines)
    return "".join(f"{line[:-1]} {' ' * (width - len(line) + 1)} {usage}\n" for line, usage in lines)


def cobra_usage(use: str, flags: Sequence[Flag]) -> str:
    """cobra's default usage block for a command without a parent name (as txn request lines get)."""
    line = f" {use}"
    if "[flags]" not in line:
        line += " [flags]"
    return f"Usage:\n  {line}\n\nFlags:\n{_flag_usages(flags).rstrip()}\n"
