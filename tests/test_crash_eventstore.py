"""Crash tests: real processes appending, killed at random moments."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from eventstore import LmdbEventStore, verify

TIMEOUT_S = 60
ROUNDS = 50

APPENDER = textwrap.dedent(
    """
    import json, sys, threading
    from eventstore import LmdbEventStore, NewEvent

    path, round_ = sys.argv[1], int(sys.argv[2])
    store = LmdbEventStore.open(path)
    print_lock = threading.Lock()
    print("ready", flush=True)

    def batch(round_, thread, n):
        size = 1 + (round_ + thread + n) % 4
        name = f"{round_}-{thread}-{n}"
        return name, [
            NewEvent(
                f"acct-{(round_ * 7 + thread + n + k) % 5}",
                "Moved",
                {"batch": name, "k": k, "size": size},
            )
            for k in range(size)
        ]

    def command(round_, thread, n):
        return f"cmd-{round_}-{thread}-{n}" if n % 2 == 0 else None

    def report(name, result):
        line = json.dumps(
            {
                "batch": name,
                "positions": [e.position for e in result.events],
                "duplicate": result.duplicate,
            }
        )
        with print_lock:
            print(line, flush=True)

    def work(thread):
        # The previous round's first commands again: each lands at most once.
        if round_ > 0:
            for n in (0, 2):
                name, events = batch(round_ - 1, thread, n)
                result = store.append(events, command_id=command(round_ - 1, thread, n))
                report(name, result)
        n = 0
        while True:
            name, events = batch(round_, thread, n)
            report(name, store.append(events, command_id=command(round_, thread, n)))
            n += 1

    for thread in range(4):
        threading.Thread(target=work, args=(thread,), daemon=True).start()
    threading.Event().wait()
    """
)


def acknowledged(stdout: str) -> list[dict[str, Any]]:
    # The last line may be cut by the kill: only whole lines count.
    whole = stdout.split("\n")[:-1]
    return [json.loads(line) for line in whole if line != "ready"]


def check_store(path: Path, acked: dict[str, list[int]]) -> int:
    with LmdbEventStore.open(path, readonly=True) as store:
        events = list(store.read_all())
        report = verify(store)
    batches: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for event in events:
        data = event.data
        batches[data["batch"]].append((event.position, data["k"], data["size"]))

    assert report.ok, report.problems
    assert [e.position for e in events] == list(range(1, len(events) + 1))
    for name, parts in batches.items():
        size = parts[0][2]
        assert [k for _, k, _ in parts] == list(range(size)), f"partial {name}"
    for name, positions in acked.items():
        assert [p for p, _, _ in batches[name]] == positions, f"lost {name}"
    return len(events)


class Lane:
    """One store, appended to by a child process killed every round."""

    def __init__(self, path: Path) -> None:
        self.path = path
        LmdbEventStore.open(path).close()
        self.acked: dict[str, list[int]] = {}
        self.duplicates = 0
        self.total = 0
        self.child: subprocess.Popen[str] | None = None
        self.early = ""

    def start(self, round_: int) -> None:
        self.child = subprocess.Popen(
            [sys.executable, "-c", APPENDER, str(self.path), str(round_)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self) -> None:
        assert self.child is not None
        assert self.child.stdout is not None
        self.early = self.child.stdout.readline()
        assert self.early == "ready\n", self.early

    def kill_and_check(self, seed: int) -> None:
        assert self.child is not None
        self.child.send_signal(signal.SIGKILL)
        self.child.wait(TIMEOUT_S)
        # Read through the same buffered files as readline() did:
        # communicate() would skip what they hold already.
        assert self.child.stdout is not None
        assert self.child.stderr is not None
        stdout = self.child.stdout.read()
        stderr = self.child.stderr.read()
        self.child.stdout.close()
        self.child.stderr.close()
        assert self.child.returncode == -signal.SIGKILL, stderr
        for ack in acknowledged(self.early + stdout):
            first = self.acked.setdefault(ack["batch"], ack["positions"])
            assert first == ack["positions"], f"seed {seed}: {ack}"
            self.duplicates += ack["duplicate"]
        self.early = ""
        self.total = check_store(self.path, self.acked)


@pytest.mark.slow
def test_acknowledged_appends_survive_sigkill_at_random_moments(
    tmp_path: Path,
) -> None:
    # Two stores side by side, so that 50 kills take half the time.
    lanes = [Lane(tmp_path / "one"), Lane(tmp_path / "two")]
    seed = int.from_bytes(os.urandom(4), "big")
    chance = random.Random(seed)

    for round_ in range(ROUNDS // len(lanes)):
        for lane in lanes:
            lane.start(round_)
        if round_ % 5:
            # Most rounds die while appending; every fifth at any moment,
            # opening the store included.
            for lane in lanes:
                lane.wait_ready()
        time.sleep(chance.uniform(0.0, 0.3))
        for lane in lanes:
            lane.kill_and_check(seed)

    for lane in lanes:
        assert len(lane.acked) > ROUNDS // len(lanes)
        assert lane.duplicates > 0, f"seed {seed}: no command re-sent after a kill"
        assert lane.total >= sum(len(p) for p in lane.acked.values())


CONTENDER = textwrap.dedent(
    """
    import sys
    from eventstore import ConcurrencyError, LmdbEventStore, NewEvent

    path, me, target = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = LmdbEventStore.open(path)
    print("ready", flush=True)
    sys.stdin.readline()
    while (version := store.stream_version("contested")) < target:
        try:
            store.append(
                [NewEvent("contested", "Claimed", {"by": me, "version": version + 1})],
                expected_versions={"contested": version},
            )
        except ConcurrencyError as exc:
            assert exc.stream == "contested" and exc.expected == version
            assert exc.actual > version
            print(f"lost {version + 1}", flush=True)
        else:
            print(f"won {version + 1}", flush=True)
    store.close()
    """
)


def test_two_processes_appending_with_expected_versions_win_each_version_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store"
    LmdbEventStore.open(path).close()
    target = 150
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CONTENDER, str(path), name, str(target)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("p1", "p2")
    ]
    for child in children:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    outputs = [child.communicate(timeout=TIMEOUT_S)[0] for child in children]

    won = [
        {int(line.split()[1]) for line in out.splitlines() if line.startswith("won")}
        for out in outputs
    ]
    lost = sum(out.count("lost") for out in outputs)
    with LmdbEventStore.open(path, readonly=True) as store:
        winners = {e.version: e.data["by"] for e in store.read_stream("contested")}

    assert all(child.returncode == 0 for child in children)
    assert not won[0] & won[1]
    assert won[0] | won[1] == set(range(1, target + 1))
    assert winners == {v: "p1" if v in won[0] else "p2" for v in winners}
    assert lost > 0
