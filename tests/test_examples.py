"""Every script in docs/examples runs to the end and shows what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"

EXPECTED: dict[str, list[str]] = {
    "basic_usage.py": [
        "updated to version 2",
        "adults: ['Ada', 'Alan', 'Grace']",
        "after delete: None",
    ],
    "workflows_basic.py": [
        "user-registration: welcome mail for user",
        "data-sync: {'fetch': [3, 1, 2], 'transform': [1, 2, 3], 'save': 3}",
        "data-sync executions by state: {'completed': 1}",
    ],
    "advanced_workflows.py": [
        "diamond: {'split': 7, 'left': 14, 'right': 49, 'join': 63}",
        "retrying: answered after 3 attempts",
        "paused: paused",
        "while paused: {'first': 'succeeded', 'second': 'pending'}",
        "resumed: running",
        "two-stage: {'first': 'opened', 'second': 1}",
        "order failed at charge: card declined for order A-17",
        "order: {'charge': 'paid by hand', 'ship': 'shipped (paid by hand)'}",
        "order events: Started StepStarted StepFailed Failed Resumed StepSkipped",
        "retrying metrics: retries 2",
    ],
    "real_world.py": [
        "refused: OutOfStockError: Lamp: 0 left",
        "refused: ['o-",
        "stock: {'Desk': 7, 'Lamp': 0}",
        "charged: 620.0",
        "a stale write is refused: record products/lamp is at version 4",
    ],
}


def test_every_example_has_expectations() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_example_runs_and_prints_what_it_should(name: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    for line in EXPECTED[name]:
        assert line in done.stdout, f"{name} did not print {line!r}"
