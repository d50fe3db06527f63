"""The Hocuspocus provider protocol (``@hocuspocus/server`` and ``@hocuspocus/provider`` 3.x),
sans I/O: bytes in, typed frames out, and back.

Hocuspocus multiplexes documents over one WebSocket, so every frame starts with the document's
name. Layout (lib0 encoding, one frame per WebSocket binary message):

``varstring document``, ``varuint type``, then by type:

- 0 sync: y-protocols' sync message (``varuint step`` + varbytes), exactly as in
  :mod:`rooms.protocol`; the server answers a sync step 1 with its own step 1, then step 2;
- 1 awareness: varbytes awareness update; 3 query awareness: nothing;
- 2 auth, then ``varuint`` sub-type (numbered unlike y-protocols' auth message):
  0 token (client -> server: ``varstring token``, sent before anything else, even when the
  server checks nothing; server -> client: nothing, a request for a fresh token),
  1 permission denied + ``varstring reason``, 2 authenticated + ``varstring scope``
  (``"read-write"`` or ``"readonly"``);
- 4 sync reply: a sync message like 0, after which the receiver sends no step 1 of its own;
- 5 stateless, 6 broadcast stateless: ``varstring payload``;
- 7 close: ``varstring reason`` from the server, nothing from the provider;
- 8 sync status: ``varuint`` 1 when the server applied the client's update (it acknowledges
  every step 2 and update that way), 0 when it refused it (a read-only connection).

Sync, awareness and query awareness therefore read, after the document name, exactly as a
y-websocket frame. Every failure on input is a :class:`~rooms.protocol.MalformedMessage`:
unknown types and sub-types, truncated frames and trailing bytes alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from rooms.protocol import (
    SYNC_STEP1,
    SYNC_STEP2,
    SYNC_UPDATE,
    AwarenessMessage,
    MalformedMessage,
    QueryAwareness,
    Reader,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    write_varbytes,
    write_varstring,
    write_varuint,
)

SYNC: Final = 0
AWARENESS: Final = 1
AUTH: Final = 2
QUERY_AWARENESS: Final = 3
SYNC_REPLY: Final = 4
STATELESS: Final = 5
BROADCAST_STATELESS: Final = 6
CLOSE: Final = 7
SYNC_STATUS: Final = 8

AUTH_TOKEN: Final = 0
AUTH_PERMISSION_DENIED: Final = 1
AUTH_AUTHENTICATED: Final = 2

SyncMessage = SyncStep1 | SyncStep2 | SyncUpdate


@dataclass(frozen=True, slots=True)
class SyncReply:
    message: SyncMessage


@dataclass(frozen=True, slots=True)
class Token:
    token: str | None  # None: the server asks for a fresh token


@dataclass(frozen=True, slots=True)
class PermissionDenied:
    reason: str


@dataclass(frozen=True, slots=True)
class Authenticated:
    scope: str


@dataclass(frozen=True, slots=True)
class Stateless:
    payload: str


@dataclass(frozen=True, slots=True)
class BroadcastStateless:
    payload: str


@dataclass(frozen=True, slots=True)
class Close:
    reason: str | None  # None as the provider sends it


@dataclass(frozen=True, slots=True)
class SyncStatus:
    applied: bool


Message = (
    SyncMessage
    | SyncReply
    | AwarenessMessage
    | QueryAwareness
    | Token
    | PermissionDenied
    | Authenticated
    | Stateless
    | BroadcastStateless
    | Close
    | SyncStatus
)


@dataclass(frozen=True, slots=True)
class Frame:
    document: str
    message: Message


# --- bytes -> frames ------------------------------------------------------------------------


def decode_frame(data: bytes) -> Frame:
    """One Hocuspocus frame, typed; ``MalformedMessage`` otherwise (trailing bytes too)."""
    reader = Reader(data)
    document = reader.varstring()
    kind = reader.varuint()
    message: Message
    if kind == SYNC:
        message = _sync(reader)
    elif kind == SYNC_REPLY:
        message = SyncReply(_sync(reader))
    elif kind == AWARENESS:
        message = AwarenessMessage(reader.varbytes())
    elif kind == QUERY_AWARENESS:
        message = QueryAwareness()
    elif kind == AUTH:
        message = _auth(reader)
    elif kind == STATELESS:
        message = Stateless(reader.varstring())
    elif kind == BROADCAST_STATELESS:
        message = BroadcastStateless(reader.varstring())
    elif kind == CLOSE:
        message = Close(None if reader.done else reader.varstring())
    elif kind == SYNC_STATUS:
        status = reader.varuint()
        if status > 1:
            raise MalformedMessage(f"sync status must be 0 or 1, not {status}")
        message = SyncStatus(status == 1)
    else:
        raise MalformedMessage(f"unknown Hocuspocus message type {kind}")
    if not reader.done:
        raise MalformedMessage("unexpected bytes after the message")
    return Frame(document, message)


def _sync(reader: Reader) -> SyncMessage:
    step = reader.varuint()
    if step == SYNC_STEP1:
        return SyncStep1(reader.varbytes())
    if step == SYNC_STEP2:
        return SyncStep2(reader.varbytes())
    if step == SYNC_UPDATE:
        return SyncUpdate(reader.varbytes())
    raise MalformedMessage(f"unknown sync message type {step}")


def _auth(reader: Reader) -> Message:
    kind = reader.varuint()
    if kind == AUTH_TOKEN:
        return Token(None if reader.done else reader.varstring())
    if kind == AUTH_PERMISSION_DENIED:
        return PermissionDenied(reader.varstring())
    if kind == AUTH_AUTHENTICATED:
        return Authenticated(reader.varstring())
    raise MalformedMessage(f"unknown auth message type {kind}")


# --- frames -> bytes ------------------------------------------------------------------------


def encode_frame(frame: Frame) -> bytes:
    return document_prefix(frame.document) + encode_body(frame.message)


def document_prefix(document: str) -> bytes:
    """What every frame of ``document`` starts with (computed once per connection)."""
    return write_varstring(document)


def encode_body(message: Message) -> bytes:
    """A frame without its document prefix."""
    match message:
        case SyncStep1() | SyncStep2() | SyncUpdate():
            return write_varuint(SYNC) + _sync_body(message)
        case SyncReply(inner):
            return write_varuint(SYNC_REPLY) + _sync_body(inner)
        case AwarenessMessage(payload):
            return write_varuint(AWARENESS) + write_varbytes(payload)
        case QueryAwareness():
            return write_varuint(QUERY_AWARENESS)
        case Token(token):
            rest = b"" if token is None else write_varstring(token)
            return bytes((AUTH, AUTH_TOKEN)) + rest
        case PermissionDenied(reason):
            return bytes((AUTH, AUTH_PERMISSION_DENIED)) + write_varstring(reason)
        case Authenticated(scope):
            return bytes((AUTH, AUTH_AUTHENTICATED)) + write_varstring(scope)
        case Stateless(payload):
            return write_varuint(STATELESS) + write_varstring(payload)
        case BroadcastStateless(payload):
            return write_varuint(BROADCAST_STATELESS) + write_varstring(payload)
        case Close(reason):
            return write_varuint(CLOSE) + (b"" if reason is None else write_varstring(reason))
        case SyncStatus(applied):
            return bytes((SYNC_STATUS, 1 if applied else 0))
    raise TypeError(f"not a Hocuspocus message: {message!r}")


def _sync_body(message: SyncMessage) -> bytes:
    match message:
        case SyncStep1(state_vector):
            return write_varuint(SYNC_STEP1) + write_varbytes(state_vector)
        case SyncStep2(update):
            return write_varuint(SYNC_STEP2) + write_varbytes(update)
        case SyncUpdate(update):
            return write_varuint(SYNC_UPDATE) + write_varbytes(update)
    raise TypeError(f"not a sync message: {message!r}")
