"""Generate Python protobuf/gRPC modules for every synod/api/**/*.proto.

Usage (paths are resolved against the repository root):

    .venv/bin/python scripts/gen_protos.py          # (re)generate in place
    .venv/bin/python scripts/gen_protos.py --check  # verify committed output is fresh

Each ``foo.proto`` gets ``foo_pb2.py``, ``foo_pb2.pyi`` and ``foo_pb2_grpc.py``
next to it. ``--check`` generates into a temporary directory and exits 1,
listing the differing/missing/stale files, if the tree is out of date.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
API_DIR = "synod/api"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_files() -> list[str]:
    """Repo-relative POSIX paths of all .proto sources, sorted."""
    return sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / API_DIR).rglob("*.proto"))


def generated_names(protos: list[str]) -> list[str]:
    """Repo-relative paths of the modules that protoc produces for ``protos``."""
    return sorted(p[: -len(".proto")] + s for p in protos for s in GENERATED_SUFFIXES)


def generate(out_dir: Path) -> None:
    """Run protoc on every proto, writing output under ``out_dir``."""
    protos = proto_files()
    if not protos:
        raise SystemExit(f"no .proto files under {API_DIR}")
    wkt_include = str(resources.files("grpc_tools") / "_proto")
    args = [
        "grpc_tools.protoc",
        "-I.",
        f"-I{wkt_include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def check() -> int:
    """Compare committed generated modules against a fresh generation."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        generate(tmp_dir)
        expected = generated_names(proto_files())
        problems: list[str] = []
        for rel in expected:
            fresh, committed = tmp_dir / rel, ROOT / rel
            if not fresh.exists():
                problems.append(f"not produced by protoc: {rel}")
            elif not committed.exists():
                problems.append(f"missing: {rel}")
            elif not filecmp.cmp(fresh, committed, shallow=False):
                problems.append(f"differs: {rel}")
        wanted = set(expected)
        for suffix in GENERATED_SUFFIXES:
            for path in (ROOT / API_DIR).rglob("*" + suffix):
                rel = path.relative_to(ROOT).as_posix()
                if rel not in wanted:
                    problems.append(f"stale (no .proto): {rel}")
    for line in sorted(set(problems)):
        print(line, file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify instead of writing")
    ns = parser.parse_args(argv)
    os.chdir(ROOT)  # protoc resolves -I. and the proto paths against the cwd
    if ns.check:
        return check()
    generate(Path("."))
    return 0


if __name__ == "__main__":
    sys.exit(main())
