"""A process killed with SIGKILL loses no acknowledged record."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from actors import DataManager

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from actors import DataManager

    async def main(path):
        async with DataManager.open(path) as dm:
            dm.add_data_source("notes", snapshot_every=50)
            n = 0
            while True:
                recs = await asyncio.gather(
                    *(dm.create("notes", {"n": n + i}) for i in range(8))
                )
                for rec in recs:
                    print(rec.id, rec.data["n"], flush=True)
                n += 8

    asyncio.run(main(sys.argv[1]))
    """
)


def test_every_acknowledged_record_survives_a_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "store"
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    acknowledged: dict[str, int] = {}
    deadline = time.monotonic() + 60
    try:
        assert process.stdout is not None
        while len(acknowledged) < 400:
            assert time.monotonic() < deadline, "the writer made no progress"
            line = process.stdout.readline()
            assert line, "the writer exited early"
            record_id, number = line.split()
            acknowledged[record_id] = int(number)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(10)

    async def reopen() -> list[int | None]:
        async with DataManager.open(path) as dm:
            dm.add_data_source("notes")
            found = await dm.batch_read("notes", list(acknowledged))
            assert len(await dm.query("notes")) >= len(acknowledged)
        return [None if r is None else r.data["n"] for r in found]

    numbers = asyncio.run(reopen())

    assert numbers == list(acknowledged.values())
