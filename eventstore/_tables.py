"""The key-value tables a store is made of, and the keys it writes.

Both backends keep the same tables, so that one piece of code appends to
either: ``events`` (position -> record), ``streams`` (stream key -> info),
``stream_index`` (stream key + version -> position), ``commands`` (command
key -> append result) and ``meta``. Views kept by projections live in tables
of their own, named ``view:<name>``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Protocol

__all__ = [
    "COMMANDS",
    "EVENTS",
    "KEPT_PREFIX",
    "META",
    "STREAMS",
    "STREAM_INDEX",
    "Tables",
    "ViewReader",
    "ViewTxn",
    "bounded_key",
    "pack_position",
    "unpack_position",
    "view_table",
]

EVENTS = "events"
STREAMS = "streams"
STREAM_INDEX = "stream_index"
COMMANDS = "commands"
META = "meta"
CORE_TABLES = (EVENTS, STREAMS, STREAM_INDEX, COMMANDS, META)

_POSITION_BYTES = 8
# LMDB refuses keys over 511 bytes; the stream index appends 8 bytes to a
# stream key, so longer names keep a prefix and a digest of the whole name.
_MAX_PLAIN_KEY = 400
KEPT_PREFIX = 380


def pack_position(position: int) -> bytes:
    """Eight big-endian bytes, so that keys sort as numbers do."""
    return position.to_bytes(_POSITION_BYTES, "big")


def unpack_position(key: bytes) -> int:
    """The number packed by :func:`pack_position`."""
    return int.from_bytes(key, "big")


def bounded_key(name: str) -> bytes:
    """A key for ``name`` that stays within LMDB's key size.

    Names up to 400 bytes are their UTF-8 bytes, so keys sort by name and a
    prefix scan works. Longer names keep their first 380 bytes, then ``#``
    and a 128-bit digest of the whole name; a name of that form is longer
    than 400 bytes itself, so it cannot collide with a plain one.
    """
    raw = name.encode()
    if len(raw) <= _MAX_PLAIN_KEY:
        return raw
    digest = hashlib.blake2b(raw, digest_size=16).hexdigest()
    return raw[:KEPT_PREFIX] + b"#" + digest.encode()


def view_table(name: str) -> str:
    """The table that holds the view ``name``."""
    return f"view:{name}"


class ViewReader(Protocol):
    """Reads of view tables in one consistent snapshot."""

    def get(self, table: str, key: bytes) -> bytes | None:
        """The value at ``key``, or None."""

    def scan(
        self, table: str, start: bytes = b"", stop: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """Items with ``start <= key < stop`` in key order."""


class ViewTxn(ViewReader, Protocol):
    """Reads and writes of view tables inside one write transaction."""

    def put(self, table: str, key: bytes, value: bytes) -> None:
        """Set ``key`` to ``value``."""

    def delete(self, table: str, key: bytes) -> bool:
        """Remove ``key``; True if it was there."""

    def drop(self, table: str) -> None:
        """Remove every item of ``table``."""


class Tables(ViewTxn, Protocol):
    """A write transaction over every table, as the append path sees it."""

    def last_key(self, table: str) -> bytes | None:
        """The greatest key of ``table``, or None when it is empty."""

    def append_put(self, table: str, key: bytes, value: bytes) -> None:
        """Put a key known to be greater than every key in the table."""

    def get_many(self, table: str, keys: list[bytes]) -> list[bytes | None]:
        """The value of each key, or None, in the order of ``keys``."""

    def append_many(self, table: str, items: list[tuple[bytes, bytes]]) -> None:
        """Put ascending keys, each greater than every key in the table."""

    def put_many(self, table: str, items: list[tuple[bytes, bytes]]) -> None:
        """Put several items."""
