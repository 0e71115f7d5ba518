"""``make demo``: write a small sample log to a store and show what it holds."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

from eventstore import (
    NO_STREAM,
    LmdbEventStore,
    NewEvent,
    RecordCreated,
    RecordUpdated,
    record_stream,
)

USERS: list[dict[str, str | int]] = [
    {"name": "Ada Lovelace", "email": "ada@example.com", "age": 36},
    {"name": "Grace Hopper", "email": "grace@example.com", "age": 45},
    {"name": "Alan Turing", "email": "alan@example.com", "age": 41},
]


def main(argv: list[str]) -> int:
    """Append sample records to the store at ``argv[0]`` and print the log."""
    path = Path(argv[0] if argv else "./demo-data")
    with LmdbEventStore.open(path) as store:
        for user in USERS:
            record_id = uuid.uuid5(uuid.NAMESPACE_URL, str(user["email"])).hex[:12]
            stream = record_stream("users", record_id)
            if store.stream_version(stream):
                continue
            store.append(
                [
                    NewEvent(
                        stream, "RecordCreated", RecordCreated("users", record_id, user)
                    ),
                    NewEvent(
                        stream,
                        "RecordUpdated",
                        RecordUpdated("users", record_id, {"verified": True}),
                    ),
                ],
                expected_versions={stream: NO_STREAM},
                command_id=f"demo-create-{record_id}",
            )
        print(f"store {path.resolve()}: head position {store.head_position()}")
        for info in store.streams():
            print(f"  stream {info.stream}: version {info.version}")
        for event in store.read_all():
            print(f"  {event.position:>4} {event.stream} v{event.version} {event.type}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
