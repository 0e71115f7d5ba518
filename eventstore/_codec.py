"""The event envelope on disk and the registry of event types.

A stored record is a 4-byte big-endian CRC-32 of the payload followed by the
payload: a MessagePack envelope whose ``data`` stays raw bytes until the
reader asks for it. Event types are registered with a name and a schema
version; records of an older version are lifted by upcasters, one version at
a time, on read. Records of an unregistered type decode to plain data.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from eventstore._errors import DamagedRecordError, UnknownSchemaVersionError
from eventstore._types import EMPTY_METADATA, EventMetadata, NewEvent, StoredEvent

__all__ = [
    "Envelope",
    "EventRegistry",
    "RecordEncoder",
    "Upcaster",
    "decode_envelope",
    "decode_record",
    "default_registry",
    "encode_record",
    "open_envelope",
    "register_event",
]

S = TypeVar("S", bound=msgspec.Struct)
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

_CRC_BYTES = 4


class Envelope(msgspec.Struct, frozen=True, array_like=True):
    """The stored form of one event; ``data`` is its own MessagePack."""

    stream: str
    version: int
    type: str
    schema_version: int
    data: msgspec.Raw
    metadata: EventMetadata
    recorded_at: dt.datetime


class _Registration(msgspec.Struct, frozen=True):
    cls: type[msgspec.Struct]
    version: int
    decoder: msgspec.msgpack.Decoder[Any]


class EventRegistry:
    """Event types by name, each with its schema version and upcasters."""

    def __init__(self) -> None:
        self._by_name: dict[str, _Registration] = {}
        self._by_class: dict[type[msgspec.Struct], str] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(
        self, cls: type[S], *, name: str | None = None, version: int = 1
    ) -> type[S]:
        """Register a frozen struct as the current schema of an event type.

        Args:
            cls: The struct; instances of it are the events' data.
            name: The event type's name; the class name by default.
            version: The current schema version, from 1.

        Returns:
            The class, so that this can serve as a decorator.

        Raises:
            ValueError: If the name is taken by another class, the version is
                below 1, or the struct is not frozen.

        """
        type_name = name or cls.__name__
        if version < 1:
            raise ValueError(f"event type {type_name!r}: version must be >= 1")
        if not cls.__struct_config__.frozen:
            raise ValueError(f"event type {type_name!r}: {cls.__name__} not frozen")
        known = self._by_name.get(type_name)
        if known is not None and known.cls is not cls:
            raise ValueError(
                f"event type {type_name!r} is already registered to "
                f"{known.cls.__qualname__}"
            )
        decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(cls)
        self._by_name[type_name] = _Registration(cls, version, decoder)
        self._by_class[cls] = type_name
        return cls

    def upcaster(
        self, name: str, *, from_version: int
    ) -> Callable[[Upcaster], Upcaster]:
        """Register a function lifting ``name`` from one version to the next.

        The function takes the old data as a dict and returns the data of
        version ``from_version + 1``.
        """

        def decorate(fn: Upcaster) -> Upcaster:
            self._upcasters[name, from_version] = fn
            return fn

        return decorate

    def schema_version(self, name: str) -> int:
        """The current schema version of ``name``; 0 when it is unregistered."""
        known = self._by_name.get(name)
        return 0 if known is None else known.version

    def event_class(self, name: str) -> type[msgspec.Struct] | None:
        """The struct registered for ``name``, if any."""
        known = self._by_name.get(name)
        return None if known is None else known.cls

    def names(self) -> list[str]:
        """Every registered event type's name, sorted."""
        return sorted(self._by_name)

    def prepare_data(self, event: NewEvent) -> tuple[int, Any]:
        """Check an event's data against its type.

        Returns:
            The schema version to store and the data as a reader will see it
            (plain data of a registered type becomes its struct).

        Raises:
            TypeError: If the data is a struct of another registered type.
            msgspec.ValidationError: If plain data does not fit the type.

        """
        known = self._by_name.get(event.type)
        data = event.data
        if known is None:
            return 0, data
        if data.__class__ is not known.cls:
            if isinstance(data, msgspec.Struct) and not isinstance(data, known.cls):
                raise TypeError(
                    f"event type {event.type!r} takes {known.cls.__qualname__}, "
                    f"not {type(data).__qualname__}"
                )
            if not isinstance(data, known.cls):
                data = msgspec.convert(data, known.cls)
        return known.version, data

    def encode_data(self, event: NewEvent) -> tuple[int, bytes, Any]:
        """Check an event's data against its type and encode it.

        Returns:
            The schema version to store, the data's MessagePack, and the data
            as a reader will see it (plain data of a registered type becomes
            its struct).

        Raises:
            TypeError: If the data is a struct of another registered type.
            msgspec.ValidationError: If plain data does not fit the type.

        """
        schema_version, data = self.prepare_data(event)
        return schema_version, _encoder.encode(data), data

    def decode_data(
        self, name: str, schema_version: int, raw: bytes, position: int
    ) -> Any:
        """Decode stored data, lifting it to the current schema if needed.

        Raises:
            UnknownSchemaVersionError: If the stored version is newer than the
                registered one, or an upcaster on the way is missing.

        """
        known = self._by_name.get(name)
        if known is None:
            return _plain_decoder.decode(raw)
        if schema_version == known.version:
            return known.decoder.decode(raw)
        if schema_version > known.version:
            raise UnknownSchemaVersionError(
                f"position {position}: event type {name!r} is stored in schema "
                f"version {schema_version}, newer than the registered "
                f"version {known.version}"
            )
        data: dict[str, Any] = _plain_decoder.decode(raw)
        for version in range(schema_version, known.version):
            upcast = self._upcasters.get((name, version))
            if upcast is None:
                raise UnknownSchemaVersionError(
                    f"position {position}: event type {name!r} is stored in "
                    f"schema version {schema_version} and no upcaster lifts "
                    f"version {version} to {version + 1}"
                )
            data = upcast(data)
        return msgspec.convert(data, known.cls)


_encoder = msgspec.msgpack.Encoder()
_plain_decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder()
_envelope_decoder = msgspec.msgpack.Decoder(Envelope)
_EMPTY_METADATA = msgspec.Raw(_encoder.encode(EMPTY_METADATA))

default_registry = EventRegistry()


def register_event(
    name: str | None = None, *, version: int = 1
) -> Callable[[type[S]], type[S]]:
    """Register a struct as an event type in the default registry (a decorator)."""

    def decorate(cls: type[S]) -> type[S]:
        return default_registry.register(cls, name=name, version=version)

    return decorate


class RecordEncoder:
    """Encodes the records of one commit, which share their commit time.

    An :class:`Envelope` is a MessagePack array, so a tuple of its fields
    encodes to the same bytes; the data is encoded in the same pass, and
    the parts every record shares are encoded once.
    """

    __slots__ = ("_recorded_at", "_registry", "at")

    def __init__(self, registry: EventRegistry, recorded_at: dt.datetime) -> None:
        self._registry = registry
        self._recorded_at = msgspec.Raw(_encoder.encode(recorded_at))
        self.at = recorded_at

    def encode(self, event: NewEvent, version: int) -> tuple[bytes, Any]:
        """Encode one event as a checksummed stored record.

        Returns:
            The record, and the event's data as a reader will see it.

        Raises:
            TypeError: If the data cannot be encoded or is a struct of
                another registered type.
            msgspec.ValidationError: If plain data does not fit its type.

        """
        schema_version, data = self._registry.prepare_data(event)
        metadata = event.metadata
        payload = _encoder.encode(
            (
                event.stream,
                version,
                event.type,
                schema_version,
                data,
                _EMPTY_METADATA if metadata is EMPTY_METADATA else metadata,
                self._recorded_at,
            )
        )
        return zlib.crc32(payload).to_bytes(_CRC_BYTES, "big") + payload, data


def encode_record(
    event: NewEvent,
    version: int,
    recorded_at: dt.datetime,
    registry: EventRegistry,
) -> tuple[bytes, Any]:
    """Encode one event as a checksummed stored record.

    Returns:
        The record, and the event's data as a reader will see it.

    """
    return RecordEncoder(registry, recorded_at).encode(event, version)


def decode_envelope(record: bytes, position: int) -> Envelope:
    """Check a stored record's checksum and decode its envelope.

    Raises:
        DamagedRecordError: If the checksum fails or the envelope is malformed.

    """
    view = memoryview(record)
    if len(view) <= _CRC_BYTES:
        raise DamagedRecordError(position, f"only {len(view)} bytes")
    payload = view[_CRC_BYTES:]
    if zlib.crc32(payload) != int.from_bytes(view[:_CRC_BYTES], "big"):
        raise DamagedRecordError(position, "checksum mismatch")
    try:
        return _envelope_decoder.decode(payload)
    except msgspec.DecodeError as exc:
        raise DamagedRecordError(position, f"envelope: {exc}") from exc


def decode_record(record: bytes, position: int, registry: EventRegistry) -> StoredEvent:
    """Decode a stored record into a :class:`StoredEvent`.

    Raises:
        DamagedRecordError: If the checksum fails or the record is malformed.
        UnknownSchemaVersionError: If its schema version cannot be lifted.

    """
    return open_envelope(decode_envelope(record, position), position, registry)


def open_envelope(env: Envelope, position: int, registry: EventRegistry) -> StoredEvent:
    """The stored event an envelope holds, its data decoded.

    Raises:
        DamagedRecordError: If the data is malformed.
        UnknownSchemaVersionError: If its schema version cannot be lifted.

    """
    try:
        data = registry.decode_data(env.type, env.schema_version, env.data, position)
    except msgspec.ValidationError as exc:
        raise DamagedRecordError(
            position, f"data does not fit {env.type!r}: {exc}"
        ) from exc
    except msgspec.DecodeError as exc:
        raise DamagedRecordError(position, f"data: {exc}") from exc
    return StoredEvent(
        position,
        env.stream,
        env.version,
        env.type,
        data,
        env.metadata,
        env.recorded_at,
    )
