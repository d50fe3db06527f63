"""The y-protocols wire format, sans I/O: lib0 encoding and the sync, awareness and
auth messages that ``y-websocket`` speaks.

Bytes in, typed messages out, and back. Nothing here touches a socket or pycrdt,
so it is fast to test and fuzz, and ``bench/`` reuses it as a client. Every
failure on input is a :class:`MalformedMessage`.

Layout (each message is one WebSocket binary frame):

- sync: ``varuint 0``, then ``varuint 0`` + varbytes state vector (step 1),
  ``varuint 1`` + varbytes update (step 2) or ``varuint 2`` + varbytes update;
- awareness: ``varuint 1`` + varbytes awareness update, which is
  ``varuint count`` then per client ``varuint client id, varuint clock,
  varstring state JSON`` (``"null"`` removes the client);
- auth: ``varuint 2`` + ``varuint 0`` (permission denied) + varstring reason;
- query awareness: ``varuint 3``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from core.errors import InvalidInput

MESSAGE_SYNC: Final = 0
MESSAGE_AWARENESS: Final = 1
MESSAGE_AUTH: Final = 2
MESSAGE_QUERY_AWARENESS: Final = 3

SYNC_STEP1: Final = 0
SYNC_STEP2: Final = 1
SYNC_UPDATE: Final = 2

AUTH_PERMISSION_DENIED: Final = 0

# lib0 numbers are JavaScript numbers: integers past 2**53 are not exact there.
MAX_SAFE_INTEGER: Final = 2**53 - 1
_MAX_VARUINT_BYTES: Final = 8


class MalformedMessage(InvalidInput):
    code = "malformed_message"
    title = "Malformed message"


# --- messages ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SyncStep1:
    state_vector: bytes


@dataclass(frozen=True, slots=True)
class SyncStep2:
    update: bytes


@dataclass(frozen=True, slots=True)
class SyncUpdate:
    update: bytes


@dataclass(frozen=True, slots=True)
class AwarenessMessage:
    payload: bytes  # an awareness update, see decode_awareness


@dataclass(frozen=True, slots=True)
class QueryAwareness:
    pass


@dataclass(frozen=True, slots=True)
class AuthMessage:
    kind: int
    reason: str


Message = SyncStep1 | SyncStep2 | SyncUpdate | AwarenessMessage | QueryAwareness | AuthMessage


@dataclass(frozen=True, slots=True)
class AwarenessEntry:
    client_id: int
    clock: int
    state: str  # JSON text; "null" means the client left

    @property
    def removed(self) -> bool:
        return self.state == "null"


# --- lib0 encoding ------------------------------------------------------------------------


def write_varuint(value: int) -> bytes:
    if not 0 <= value <= MAX_SAFE_INTEGER:
        raise ValueError(f"varuint out of range: {value}")
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def write_varbytes(data: bytes) -> bytes:
    return write_varuint(len(data)) + data


def write_varstring(text: str) -> bytes:
    return write_varbytes(text.encode("utf-8"))


class Reader:
    """A cursor over one message; every read checks bounds."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    @property
    def done(self) -> bool:
        return self._pos >= len(self._data)

    def varuint(self) -> int:
        value = 0
        shift = 0
        for _ in range(_MAX_VARUINT_BYTES):
            if self._pos >= len(self._data):
                raise MalformedMessage("message ends inside a number")
            byte = self._data[self._pos]
            self._pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                if value > MAX_SAFE_INTEGER:
                    raise MalformedMessage("number out of range")
                return value
            shift += 7
        raise MalformedMessage("number too long")

    def varbytes(self) -> bytes:
        length = self.varuint()
        end = self._pos + length
        if end > len(self._data):
            raise MalformedMessage("message ends inside a byte string")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def varstring(self) -> str:
        try:
            return self.varbytes().decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedMessage("string is not UTF-8") from None


# --- messages <-> bytes ---------------------------------------------------------------------


def decode_message(data: bytes) -> Message:
    """One y-websocket frame as a typed message; ``MalformedMessage`` otherwise.

    Trailing bytes are refused: y-websocket sends one message per frame, and
    accepting junk after it would hide a broken client.
    """
    reader = Reader(data)
    kind = reader.varuint()
    message: Message
    if kind == MESSAGE_SYNC:
        step = reader.varuint()
        if step == SYNC_STEP1:
            message = SyncStep1(reader.varbytes())
        elif step == SYNC_STEP2:
            message = SyncStep2(reader.varbytes())
        elif step == SYNC_UPDATE:
            message = SyncUpdate(reader.varbytes())
        else:
            raise MalformedMessage(f"unknown sync message type {step}")
    elif kind == MESSAGE_AWARENESS:
        message = AwarenessMessage(reader.varbytes())
    elif kind == MESSAGE_QUERY_AWARENESS:
        message = QueryAwareness()
    elif kind == MESSAGE_AUTH:
        auth_kind = reader.varuint()
        message = AuthMessage(auth_kind, reader.varstring())
    else:
        raise MalformedMessage(f"unknown message type {kind}")
    if not reader.done:
        raise MalformedMessage("unexpected bytes after the message")
    return message


def encode_message(message: Message) -> bytes:
    match message:
        case SyncStep1(state_vector):
            return bytes((MESSAGE_SYNC, SYNC_STEP1)) + write_varbytes(state_vector)
        case SyncStep2(update):
            return bytes((MESSAGE_SYNC, SYNC_STEP2)) + write_varbytes(update)
        case SyncUpdate(update):
            return bytes((MESSAGE_SYNC, SYNC_UPDATE)) + write_varbytes(update)
        case AwarenessMessage(payload):
            return bytes((MESSAGE_AWARENESS,)) + write_varbytes(payload)
        case QueryAwareness():
            return bytes((MESSAGE_QUERY_AWARENESS,))
        case AuthMessage(kind, reason):
            return bytes((MESSAGE_AUTH,)) + write_varuint(kind) + write_varstring(reason)
    raise TypeError(f"not a message: {message!r}")


def decode_awareness(payload: bytes) -> list[AwarenessEntry]:
    reader = Reader(payload)
    count = reader.varuint()
    entries = []
    for _ in range(count):
        client_id = reader.varuint()
        clock = reader.varuint()
        entries.append(AwarenessEntry(client_id, clock, reader.varstring()))
    if not reader.done:
        raise MalformedMessage("unexpected bytes after the awareness update")
    return entries


def encode_awareness(entries: list[AwarenessEntry]) -> bytes:
    parts = [write_varuint(len(entries))]
    for entry in entries:
        parts += [
            write_varuint(entry.client_id),
            write_varuint(entry.clock),
            write_varstring(entry.state),
        ]
    return b"".join(parts)
