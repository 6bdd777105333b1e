"""Golden transcripts of Raft interactions: ``testdata/*.txt`` run through ``interaction.InteractionEnv``.

A transcript is a sequence of blocks, each a command line, a line ``----``,
the expected output and a blank line. Lines starting with ``#`` and blank
lines between blocks are comments. Each command runs in order against one
environment; on any mismatch the test fails with a unified diff of the whole
file (expected against actual). ``pytest tests/raft --rewrite`` writes the
actual output into the files instead, so that changes are reviewed as a diff.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.raft.interaction import InteractionEnv

TESTDATA = Path(__file__).parent / "testdata"
SEPARATOR = "----"


@dataclass
class Block:
    line_no: int  # 1-based, of the command
    command: str
    expected: list[str]
    start: int  # 0-based line range of the expected output in the file
    end: int


def parse(lines: list[str], path: Path) -> list[Block]:
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            i += 1
            continue
        if i + 1 >= len(lines) or lines[i + 1] != SEPARATOR:
            raise ValueError(f"{path.name}:{i + 1}: expected {SEPARATOR!r} after the command {line!r}")
        j = i + 2
        while j < len(lines) and lines[j] != "":
            j += 1
        blocks.append(Block(i + 1, line, lines[i + 2 : j], i + 2, j))
        i = j
    return blocks


def run(path: Path) -> tuple[list[str], list[str]]:
    """(the file's lines, the lines the file should have given the actual output)."""
    lines = path.read_text().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    blocks = parse(lines, path)
    actual = list(lines)
    with InteractionEnv() as env:
        outputs = []
        for block in blocks:
            try:
                text = env.run(block.command)
            except Exception as e:
                raise AssertionError(f"{path.name}:{block.line_no}: {block.command!r} raised {e!r}") from e
            assert "\n\n" not in text and text.strip(), f"{path.name}:{block.line_no}: blank output lines"
            outputs.append(text.split("\n"))
    # Replace from the end so that the line ranges of earlier blocks stay valid.
    for block, out in reversed(list(zip(blocks, outputs, strict=True))):
        actual[block.start : block.end] = out
    return lines, actual


@pytest.mark.parametrize("path", sorted(TESTDATA.glob("*.txt")), ids=lambda p: p.stem)
def test_interaction(path: Path, request: pytest.FixtureRequest) -> None:
    expected, actual = run(path)
    if actual == expected:
        return
    if request.config.getoption("--rewrite", default=False):
        path.write_text("\n".join(actual) + "\n")
        return
    diff = difflib.unified_diff(
        expected, actual, fromfile=f"{path.name} (expected)", tofile=f"{path.name} (actual)", lineterm=""
    )
    pytest.fail("transcript differs (rerun with --rewrite to accept):\n" + "\n".join(diff), pytrace=False)


def test_there_are_transcripts() -> None:
    assert len(list(TESTDATA.glob("*.txt"))) >= 10


def test_a_wrong_transcript_is_reported_and_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("# comment\nadd-nodes 1 voters=(1)\n----\nwrong\n\nraft-state\n----\n")
    expected, actual = run(path)
    assert expected[:4] == ["# comment", "add-nodes 1 voters=(1)", "----", "wrong"]
    assert actual == [
        "# comment",
        "add-nodes 1 voters=(1)",
        "----",
        "INFO 1 became follower at term 0",
        "",
        "raft-state",
        "----",
        "1: StateFollower (Voter) Term:0 Vote:0 Lead:0",
    ]


def test_a_malformed_transcript_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("raft-state\nok\n")
    with pytest.raises(ValueError, match="expected '----'"):
        run(path)
    path.write_text("no-such-command 1\n----\n")
    with pytest.raises(AssertionError, match="unknown command"):
        run(path)
