"""The basic usage example runs and shows what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "basic_usage.py"


def test_the_basic_usage_example_runs(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), str(tmp_path / "data")],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )

    out = done.stdout
    assert "'email': 'ada@example.com'" in out
    assert "updated to version 2" in out
    assert "refused: record users/" in out
    assert "invalid: users/" in out
    assert "adults: ['Ada', 'Alan', 'Grace']" in out
    assert "ages over time: [0, 36, 37]" in out
    assert "after delete: None" in out
    assert "[middleware] transaction" in out
