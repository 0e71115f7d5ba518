"""Where a projection keeps its view, its checkpoint and its parked events.

Every projection owns two view tables, its *slots* (``view:<name>#0`` and
``view:<name>#1``); its state in the control table ``view:projections``
says which slot is live and up to which position the live view has folded
the log (its checkpoint). A rebuild fills the other slot and switches the
live slot in one transaction, so readers see the old view or the new one,
never a half-built one. Events a handler could not fold are parked in
``view:projections.parked`` under the projection's name and the position.
"""

from __future__ import annotations

import datetime as dt

import msgspec

from eventstore import ViewReader, ViewTxn, view_table
from eventstore._tables import pack_position

__all__ = [
    "CONTROL",
    "PARKED",
    "SETTINGS_PREFIX",
    "ParkedEvent",
    "ProjectionState",
    "delete_parked",
    "other_slot",
    "parked_events",
    "put_parked",
    "read_state",
    "slot_table",
    "write_state",
]

CONTROL = view_table("projections")
PARKED = view_table("projections.parked")
_STATE_PREFIX = b"state:"
# Settings (such as declared indexes) live in the control table under this
# prefix: they are not derived from the log, so rebuilds and replays keep them.
SETTINGS_PREFIX = b"setting:"


class ProjectionState(msgspec.Struct, frozen=True, omit_defaults=True):
    """What the control table knows of one projection.

    Attributes:
        slot: The live slot (0 or 1).
        checkpoint: The last position folded into the live view.
        building: True while a rebuild fills the other slot.
        building_checkpoint: The last position folded into the other slot.
        last_error: The last handler error, if any.
        updated_at: When the live view last moved (UTC).
        events_per_s: The fold rate of the last batch.

    """

    slot: int = 0
    checkpoint: int = 0
    building: bool = False
    building_checkpoint: int = 0
    last_error: str | None = None
    updated_at: dt.datetime | None = None
    events_per_s: float = 0.0


class ParkedEvent(msgspec.Struct, frozen=True):
    """An event a projection's handler failed on, kept to retry by hand.

    Attributes:
        projection: The projection's name.
        position: The event's position.
        stream: The event's stream.
        type: The event's type.
        error: The handler's error, as ``Type: message``.
        attempts: How many times the handler was tried.
        parked_at: When it was parked (UTC).
        slot: The slot whose fold parked it.

    """

    projection: str
    position: int
    stream: str
    type: str
    error: str
    attempts: int
    parked_at: dt.datetime
    slot: int = 0


_state_decoder = msgspec.msgpack.Decoder(ProjectionState)
_parked_decoder = msgspec.msgpack.Decoder(ParkedEvent)
_encoder = msgspec.msgpack.Encoder()


def slot_table(name: str, slot: int) -> str:
    """The table of slot ``slot`` of projection ``name``."""
    return view_table(f"{name}#{slot}")


def other_slot(slot: int) -> int:
    """The slot a rebuild fills."""
    return 1 - slot


def read_state(reader: ViewReader, name: str) -> ProjectionState:
    """The state of ``name``; a fresh state if it never ran."""
    raw = reader.get(CONTROL, _STATE_PREFIX + name.encode())
    return ProjectionState() if raw is None else _state_decoder.decode(raw)


def write_state(txn: ViewTxn, name: str, state: ProjectionState) -> None:
    """Store the state of ``name``."""
    txn.put(CONTROL, _STATE_PREFIX + name.encode(), _encoder.encode(state))


def _parked_key(name: str, position: int) -> bytes:
    return name.encode() + b"\x00" + pack_position(position)


def put_parked(txn: ViewTxn, event: ParkedEvent) -> None:
    """Park an event (replacing an earlier parking at its position)."""
    txn.put(
        PARKED, _parked_key(event.projection, event.position), _encoder.encode(event)
    )


def delete_parked(txn: ViewTxn, name: str, position: int) -> bool:
    """Remove a parked event; True if it was parked."""
    return txn.delete(PARKED, _parked_key(name, position))


def parked_events(reader: ViewReader, name: str) -> list[ParkedEvent]:
    """Every parked event of ``name``, by position."""
    prefix = name.encode() + b"\x00"
    stop = name.encode() + b"\x01"
    return [_parked_decoder.decode(raw) for _, raw in reader.scan(PARKED, prefix, stop)]
