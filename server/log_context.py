"""Which connection and room a log line is about, without passing ids to every call.

The WebSocket edge binds the ids of a connection (:func:`bound`) for as long as it
serves it; everything logged in that task, and in tasks it creates (they copy the
context), carries them. :class:`ContextFilter`, on the log handler, copies them onto
each record while the record is made, in the task that logs it; the formatters in
``server/logs.py`` write them out.

Rooms open in the task of the connection that opened them, so a room's own lines may
name that connection too; :func:`room_only` gives a context with the room alone, for
tasks that outlive the connection that started them.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Mapping
from types import MappingProxyType

#: The fields, in the order the formatters write them.
FIELDS: tuple[str, ...] = ("connection_id", "room", "user_id")

_EMPTY: Mapping[str, str] = MappingProxyType({})
_current: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "log_context", default=_EMPTY
)


def current() -> Mapping[str, str]:
    return _current.get()


class bound:  # lower case: used like the function it was, ``with log_context.bound(...)``
    """Add ``fields`` (names from :data:`FIELDS`; None leaves one out) for the block.

    A class, not a generator: it stays alive for a connection's whole life, and a
    suspended generator frame for each of thousands of connections is memory.
    """

    __slots__ = ("_fields", "_token")

    def __init__(self, **fields: str | None) -> None:
        unknown = set(fields) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown log context fields: {sorted(unknown)}")
        merged = dict(_current.get())
        merged.update({name: value for name, value in fields.items() if value is not None})
        self._fields: Mapping[str, str] = MappingProxyType(merged)
        self._token: contextvars.Token[Mapping[str, str]] | None = None

    def __enter__(self) -> None:
        self._token = _current.set(self._fields)

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _current.reset(self._token)
            self._token = None


def room_only(room: str) -> contextvars.Context:
    """A copy of the current context naming only ``room``: pass it as ``context=`` to
    ``create_task`` for a room's task, so its lines do not name the connection that
    happened to open it."""
    context = contextvars.copy_context()
    context.run(_current.set, MappingProxyType({"room": room}))
    return context


class ContextFilter(logging.Filter):
    """Copy the bound fields onto each record (as attributes named as in :data:`FIELDS`).

    A field the call set itself (``extra={"room": ...}``) is kept. Put it on the handler,
    not on a logger, so it sees records from every logger.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _current.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def fields_of(record: logging.LogRecord) -> dict[str, str]:
    """The context fields a record carries, in :data:`FIELDS` order."""
    found: dict[str, str] = {}
    for name in FIELDS:
        value = getattr(record, name, None)
        if value is not None:
            found[name] = str(value)
    return found
