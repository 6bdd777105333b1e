"""The Raft core is pure: no clock, randomness, sockets, files or event loop of its own."""

from __future__ import annotations

import ast
from pathlib import Path

import synod.raft

CORE = ["codec", "confchange", "log", "quorum", "raft", "rawnode", "read_only", "storage", "tracker", "types"]
FORBIDDEN = {
    "asyncio",
    "time",
    "random",
    "socket",
    "os",
    "io",
    "threading",
    "selectors",
    "subprocess",
    "pathlib",
}
ALLOWED = {
    "__future__", "abc", "bisect", "collections", "dataclasses", "enum", "functools", "itertools",
    "logging", "math", "struct", "synod", "typing",
}  # fmt: skip


def test_core_modules_import_nothing_that_does_io() -> None:
    root = Path(synod.raft.__file__).parent
    for name in CORE:
        tree = ast.parse((root / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open":
                raise AssertionError(f"synod/raft/{name}.py opens a file")
            else:
                continue
            for mod in mods:
                top = mod.split(".")[0]
                assert top not in FORBIDDEN, f"synod/raft/{name}.py imports {mod}"
                assert top in ALLOWED, f"synod/raft/{name}.py imports {mod}"
                assert top != "synod" or mod.startswith("synod.raft"), f"synod/raft/{name}.py imports {mod}"
