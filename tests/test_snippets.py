"""Every snippet in tests/snippets assembles, runs and meets its expectations."""

from pathlib import Path

import pytest

from osvemu.snippets import Snippet, check_expectations, run_snippet

SNIPPETS = sorted((Path(__file__).parent / "snippets").glob("*.s"))


def test_there_are_enough_snippets():
    assert len(SNIPPETS) >= 30


@pytest.mark.parametrize("path", SNIPPETS, ids=lambda p: p.stem)
def test_snippet(path: Path):
    run = run_snippet(Snippet.load(path))
    problems = check_expectations(run)
    assert not problems, f"{path.name} ({run.result.reason}):\n" + "\n".join(problems)


@pytest.mark.parametrize("path", [p for p in SNIPPETS if "spinlock" in p.stem or "ipi" in p.stem][:3], ids=lambda p: p.stem)
def test_snippet_is_deterministic(path: Path):
    first, second = (run_snippet(Snippet.load(path)) for _ in range(2))
    assert [c.instructions for c in first.machine.cores] == [c.instructions for c in second.machine.cores]
    assert first.machine.kernels[0].uart.console.text == second.machine.kernels[0].uart.console.text
