"""``make demo`` runs the specification's scenario and shows it through the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from actors import _demo
from eventstore import LmdbEventStore, NewEvent


def test_the_demo_runs_both_workflows_and_prints_what_the_cli_shows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "demo-data"

    assert _demo.main([str(path)]) == 0

    out = capsys.readouterr().out
    assert "loaded 3 users from _demo_data/users.json" in out
    assert "user-registration Edsger Dijkstra: welcome mail queued" in out
    assert "user-registration Nobody: failed at validate" in out
    assert "data-sync products: saved 5 records; fetch took 2 attempt(s)" in out
    assert "attempt 1 of fetch failed (ConnectionError: products API: 503" in out
    assert "data-sync files: saved 3 records; fetch took 1 attempt(s)" in out
    assert "in stock under 50: Braided Cable, Usb-C Hub" in out
    listing, records = out.split("$ actorlog")[1:3]
    assert listing.count("user-registration") == 3
    assert listing.count("data-sync") == 2
    assert listing.count("completed") == 4
    assert listing.count("failed") == 1
    assert "projections show records --collection users" in records
    assert records.count("│ users ") == 5
    assert "Katherine" in records
    assert "Nobody" not in records


def test_the_demo_starts_afresh_on_its_own_store_and_refuses_other_folders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "demo-data"
    _demo.main([str(path)])
    capsys.readouterr()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")

    assert _demo.main([str(path)]) == 0
    out = capsys.readouterr().out
    with pytest.raises(SystemExit, match="holds other files"):
        _demo.main([str(other)])

    listing = out.split("$ actorlog")[1]
    assert listing.count("user-registration") == 3
    assert (other / "precious.txt").read_text() == "keep me"


def test_make_demo_runs_the_module_on_demo_data_even_without_the_marker(
    tmp_path: Path,
) -> None:
    old = tmp_path / "demo-data"
    with LmdbEventStore.open(old) as store:
        store.append([NewEvent("records/users/1", "Greeted", {"n": 1})])

    done = subprocess.run(
        [sys.executable, "-m", "actors._demo"],
        check=True,
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
    )

    assert "demo finished in" in done.stdout
    assert (old / ".actorlog-demo").is_file()
