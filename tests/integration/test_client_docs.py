"""Every Python example of docs/client.md runs, as written, against a synod (its endpoint swapped in)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.servers import ServerProcess

DOC = Path(__file__).resolve().parents[2] / "docs" / "client.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)


def test_the_doc_has_examples() -> None:
    assert len(EXAMPLES) >= 6


@pytest.mark.parametrize("n", range(len(EXAMPLES)))
def test_example_runs(n: int, synod: ServerProcess) -> None:
    code = EXAMPLES[n].replace("127.0.0.1:2379", synod.endpoint)
    assert synod.endpoint in code, "every example connects to the documented endpoint"
    exec(compile(code, f"docs/client.md example {n + 1}", "exec"), {"__name__": "__doc_example__"})
