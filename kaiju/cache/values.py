"""How cache values are stored: msgpack, with extension types for what msgpack lacks.

UUID, Decimal, date, datetime (naive or with its time zone) and sets inside plain values
(dicts, lists, tuples) are written as msgpack extensions and read back as the same types,
as kaiju-tools' msgpack did; bytes are msgpack's own. Structs and dataclasses are written
as msgspec writes them (maps), so `type=` reads them back validated.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import Callable
from typing import Any

import msgspec

__all__ = ["ValueCodec"]

_UUID, _DECIMAL, _DATE, _DATETIME, _SET = 1, 2, 3, 4, 5
_PLAIN = frozenset({str, int, float, bool, type(None), bytes})
_Ext = msgspec.msgpack.Ext


class ValueCodec:
    """Encodes and decodes cache values (one per cache: the decoders by `type=` are kept)."""

    __slots__ = ("_encode", "_decode_any", "_decoders", "_tags")

    def __init__(self) -> None:
        self._encode = msgspec.msgpack.Encoder().encode
        self._decode_any = msgspec.msgpack.Decoder(ext_hook=self._untag).decode
        self._decoders: dict[Any, Callable[[bytes], Any]] = {}
        self._tags: dict[type, Callable[[Any], Any]] = {
            uuid.UUID: lambda v: _Ext(_UUID, v.bytes),
            decimal.Decimal: lambda v: _Ext(_DECIMAL, str(v).encode()),
            datetime.date: lambda v: _Ext(_DATE, v.isoformat().encode()),
            datetime.datetime: lambda v: _Ext(_DATETIME, v.isoformat().encode()),
            set: lambda v: _Ext(_SET, self._encode([self._tag(x) for x in v])),
            frozenset: lambda v: _Ext(_SET, self._encode([self._tag(x) for x in v])),
        }

    def encode(self, value: Any) -> bytes:
        """`value` as msgpack; raises TypeError for what msgpack cannot hold."""
        return self._encode(self._tag(value))

    def decode(self, data: bytes, type: Any = None) -> Any:
        """The value `data` holds; with `type`, validated into it (msgspec.ValidationError)."""
        if type is None:
            return self._decode_any(data)
        decode = self._decoders.get(type)
        if decode is None:
            decode = self._decoders[type] = msgspec.msgpack.Decoder(type).decode
        try:
            return decode(data)
        except msgspec.ValidationError:
            # written with extension types (a plain value holding UUIDs, say): read, then convert
            return msgspec.convert(self._decode_any(data), type)

    def _tag(self, value: Any) -> Any:
        kind = type(value)
        if kind in _PLAIN:
            return value
        if kind is dict:
            return {k: self._tag(v) for k, v in value.items()}
        if kind is list or kind is tuple:
            return [self._tag(v) for v in value]
        tag = self._tags.get(kind)
        return value if tag is None else tag(value)  # Structs, dataclasses, ...: msgspec's own

    def _untag(self, code: int, data: memoryview) -> Any:
        if code == _UUID:
            return uuid.UUID(bytes=bytes(data))
        if code == _DECIMAL:
            return decimal.Decimal(bytes(data).decode())
        if code == _DATE:
            return datetime.date.fromisoformat(bytes(data).decode())
        if code == _DATETIME:
            return datetime.datetime.fromisoformat(bytes(data).decode())
        if code == _SET:
            return set(self._decode_any(data))
        return _Ext(code, bytes(data))  # not ours: as msgspec gives it
