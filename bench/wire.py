"""How a benchmark client frames Yjs messages for the server under test: one small codec per
kind of server, so the clients (:mod:`bench.clients`) keep one logic for all of them.

- :class:`YWire`: y-websocket's frames (:mod:`rooms.protocol`), spoken by our server, the
  reference y-websocket server and pycrdt-websocket; the room is the URL's path.
- :class:`HocuspocusWire`: Hocuspocus frames (:mod:`bench.hocuspocus`) for one document: the
  document's name before every message, a token sent first, and the server's acknowledgements
  (sync status) and "authenticated" answer, which mean nothing to a client that only times
  edits and are dropped.
"""

from __future__ import annotations

from typing import Final, Protocol

from bench import hocuspocus
from core.errors import PermissionDenied
from rooms.protocol import (
    AuthMessage,
    AwarenessMessage,
    MalformedMessage,
    Message,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_message,
    encode_message,
)

# The first bytes of a y-websocket sync update frame: message sync, step "update".
UPDATE_PREFIX: Final = b"\x00\x02"


class Refused(PermissionDenied):
    """The server said no, or ended the connection, in the protocol itself rather than with a
    close code; ``kind`` is how it is counted among errors (``auth_denied``,
    ``update_refused``, ``closed_by_server``)."""

    code = "bench_refused"
    title = "Refused by the server"

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail, kind=kind)
        self.kind = kind


class Wire(Protocol):
    @property
    def update_prefix(self) -> bytes:
        """Every frame carrying a sync update starts with these bytes, and no other frame
        does: observers that only count updates test this instead of decoding."""
        ...

    def hello(self) -> list[bytes]:
        """Frames to send right after connecting, before sync step 1."""
        ...

    def encode(self, message: Message) -> bytes: ...

    def decode(self, frame: bytes) -> Message | None:
        """The Yjs message in ``frame``; None for the server's own chatter. A refusal raises
        :class:`Refused`, bytes that are no frame ``MalformedMessage``."""
        ...


class YWire:
    """y-websocket frames: one stateless instance serves every connection."""

    __slots__ = ()

    @property
    def update_prefix(self) -> bytes:
        return UPDATE_PREFIX

    def hello(self) -> list[bytes]:
        return []

    def encode(self, message: Message) -> bytes:
        return encode_message(message)

    def decode(self, frame: bytes) -> Message | None:
        message = decode_message(frame)
        if isinstance(message, AuthMessage):
            # y-protocols' only auth message is "permission denied".
            raise Refused("auth_denied", message.reason or "permission denied")
        return message


Y_WIRE: Final = YWire()


class HocuspocusWire:
    """Hocuspocus frames of one document (one per connection, as the provider uses them)."""

    __slots__ = ("_prefix", "_token", "_update_prefix", "document")

    def __init__(self, document: str, *, token: str = "") -> None:
        self.document = document
        self._token = token  # the provider sends "" when it has none
        self._prefix = hocuspocus.document_prefix(document)
        self._update_prefix = self._prefix + hocuspocus.encode_body(SyncUpdate(b""))[:2]

    @property
    def update_prefix(self) -> bytes:
        return self._update_prefix

    def hello(self) -> list[bytes]:
        return [self._prefix + hocuspocus.encode_body(hocuspocus.Token(self._token))]

    def encode(self, message: Message) -> bytes:
        if not isinstance(message, SyncStep1 | SyncStep2 | SyncUpdate | AwarenessMessage):
            raise TypeError(f"a bench client does not send {message!r} to Hocuspocus")
        return self._prefix + hocuspocus.encode_body(message)

    def decode(self, frame: bytes) -> Message | None:
        decoded = hocuspocus.decode_frame(frame)
        if decoded.document != self.document:
            raise MalformedMessage(f"a frame for another document: {decoded.document!r}")
        match decoded.message:
            case SyncStep1() | SyncStep2() | SyncUpdate() | AwarenessMessage() | QueryAwareness():
                return decoded.message
            case hocuspocus.SyncReply(inner):
                return inner
            case hocuspocus.PermissionDenied(reason):
                raise Refused("auth_denied", reason or "permission denied")
            case hocuspocus.SyncStatus(applied=False):
                raise Refused("update_refused", "the server did not apply an update (read-only)")
            case hocuspocus.Close(reason):
                # The document's connection is over even if the socket stays open.
                raise Refused("closed_by_server", reason or "closed")
        return None  # authenticated, token request, stateless, sync status "applied"
