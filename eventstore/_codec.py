"""The event envelope on disk and the registry of event types.

A stored record is one MessagePack array, the envelope, whose last element
is a 32-bit integer holding the CRC-32 of every byte before it (in
little-endian order). The CRC-32 of a whole sound record is then a fixed
residue, and the record decodes as it is: one call checks it and one
decodes it, with no slicing. The envelope's ``data`` stays raw bytes until
the reader asks for it. Event types
are registered with a name and a schema version; records of an older
version are lifted by upcasters, one version at a time, on read. Records
of an unregistered type decode to plain data.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Callable, Collection, Iterable, Sequence
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
    "decode_records",
    "default_registry",
    "encode_record",
    "open_envelope",
    "register_event",
]

S = TypeVar("S", bound=msgspec.Struct)
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

_CRC_BYTES = 4
# The CRC-32 of any message followed by its own CRC-32, little-endian.
_CRC_RESIDUE = 0x2144DF1C
_CRC_PLACEHOLDER = 0xFFFFFFFF
_SLOW = object()


class Envelope(msgspec.Struct, frozen=True, array_like=True):
    """The stored form of one event; ``data`` is its own MessagePack."""

    stream: str
    version: int
    type: str
    schema_version: int
    data: msgspec.Raw
    metadata: EventMetadata
    recorded_at: dt.datetime
    check: int = 0


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
# The envelope as a tuple, its metadata and commit time left raw: most
# events carry no metadata and a commit shares one time, so a bulk reader
# decodes each only when it differs from the last.
_envelope_tuple_decoder = msgspec.msgpack.Decoder(
    tuple[str, int, str, int, msgspec.Raw, msgspec.Raw, msgspec.Raw, int]
)
_metadata_decoder = msgspec.msgpack.Decoder(EventMetadata)
_datetime_decoder = msgspec.msgpack.Decoder(dt.datetime)

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
                _CRC_PLACEHOLDER,
            )
        )
        # The placeholder encodes as 0xce and 4 bytes: put the CRC there.
        head = payload[:-_CRC_BYTES]
        return head + zlib.crc32(head).to_bytes(_CRC_BYTES, "little"), data

    def encode_many(
        self, events: Sequence[NewEvent], versions: Sequence[int]
    ) -> tuple[list[bytes], list[Any]]:
        """:meth:`encode` for many events: their records and data, in order."""
        registry = self._registry
        by_name = registry._by_name  # noqa: SLF001 - the registry's own module
        encode = _encoder.encode
        crc32 = zlib.crc32
        recorded_at = self._recorded_at
        records: list[bytes] = []
        values: list[Any] = []
        kinds: dict[str, tuple[int, type | None]] = {}
        for event, version in zip(events, versions, strict=True):
            kind = kinds.get(event.type)
            if kind is None:
                known = by_name.get(event.type)
                kind = kinds[event.type] = (
                    (0, None) if known is None else (known.version, known.cls)
                )
            data = event.data
            if kind[1] is not None and data.__class__ is not kind[1]:
                data = registry.prepare_data(event)[1]
            metadata = event.metadata
            head = encode(
                (
                    event.stream,
                    version,
                    event.type,
                    kind[0],
                    data,
                    _EMPTY_METADATA if metadata is EMPTY_METADATA else metadata,
                    recorded_at,
                    _CRC_PLACEHOLDER,
                )
            )[:-_CRC_BYTES]
            records.append(head + crc32(head).to_bytes(_CRC_BYTES, "little"))
            values.append(data)
        return records, values


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
    if len(record) <= _CRC_BYTES:
        raise DamagedRecordError(position, f"only {len(record)} bytes")
    if zlib.crc32(record) != _CRC_RESIDUE:
        raise DamagedRecordError(position, "checksum mismatch")
    payload = record
    try:
        return _envelope_decoder.decode(payload)
    except msgspec.DecodeError as exc:
        raise DamagedRecordError(position, f"envelope: {exc}") from exc


def decode_records(
    chunk: Iterable[tuple[bytes, bytes]],
    registry: EventRegistry,
    types: Collection[str] | None = None,
) -> list[StoredEvent]:
    """Decode ``(position key, record)`` pairs: :func:`decode_record` in bulk.

    With ``types``, records of other types are checked but left out, their
    data not decoded.

    The common case (a sound record in its type's current schema, or of an
    unregistered type) runs inline; anything else goes through
    :func:`decode_record`, which raises the precise error.

    Raises:
        DamagedRecordError: If a record is damaged (naming its position).
        UnknownSchemaVersionError: If its schema version cannot be lifted.

    """
    events: list[StoredEvent] = []
    append = events.append
    from_bytes = int.from_bytes
    crc32 = zlib.crc32
    decode_envelope = _envelope_tuple_decoder.decode
    # type name -> (schema version, decode): looked up once per chunk.
    decoders: dict[str, tuple[int, Callable[[Any], Any]]] = {}
    last_at_raw = last_metadata_raw = _EMPTY_METADATA
    last_at: Any = None
    last_metadata = EMPTY_METADATA
    for key, record in chunk:
        position = from_bytes(key, "big")
        data: Any = _SLOW
        if crc32(record) == _CRC_RESIDUE:
            try:
                stream, version, kind, schema, raw, metadata, at, _ = decode_envelope(
                    record
                )
                if types is not None and kind not in types:
                    continue
                decoder = decoders.get(kind)
                if decoder is None:
                    decoder = decoders[kind] = _decoder_of(registry, kind)
                if schema == decoder[0]:
                    data = decoder[1](raw)
                if at != last_at_raw:
                    last_at = _datetime_decoder.decode(at)
                    last_at_raw = at
                if metadata != last_metadata_raw:
                    last_metadata = _metadata_decoder.decode(metadata)
                    last_metadata_raw = metadata
            except msgspec.MsgspecError:
                data = _SLOW
        if data is _SLOW:
            events.extend(_decode_slowly(record, position, registry, types))
            continue
        append(
            StoredEvent(position, stream, version, kind, data, last_metadata, last_at)
        )
    return events


def _decode_slowly(
    record: bytes,
    position: int,
    registry: EventRegistry,
    types: Collection[str] | None,
) -> list[StoredEvent]:
    """:func:`decode_record`, filtered: it raises the precise error if any."""
    event = decode_record(record, position, registry)
    return [event] if types is None or event.type in types else []


def _decoder_of(registry: EventRegistry, name: str) -> tuple[int, Callable[[Any], Any]]:
    known = registry._by_name.get(name)  # noqa: SLF001 - the registry's own module
    if known is None:
        return 0, _plain_decoder.decode
    return known.version, known.decoder.decode


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
