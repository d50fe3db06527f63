"""Logging set-up: plain lines for people, one JSON object per line in production.

Both formats carry the connection, room and user a line is about when one is bound
(``server/log_context.py``): JSON as fields, plain lines as a short ``[...]`` tag.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import IO

import orjson

from server.log_context import ContextFilter, fields_of

# Short names in plain lines: people read them next to the message.
_PLAIN_NAMES = {"connection_id": "conn", "room": "room", "user_id": "user"}


# y-websocket sends the room token as a query parameter (its `params`), and uvicorn logs
# every WebSocket's URL: a token in a log is a credential anyone with the logs can use.
_SECRET_QUERY_VALUE = re.compile(r"([?&](?:access_)?token=)[^&\s\"']+")


class RedactSecrets(logging.Filter):
    """Replaces token values in query strings with ``[redacted]``, whoever logs them."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Formatted once here: the formatters then find no arguments left to apply.
        message = record.getMessage()
        record.msg = _SECRET_QUERY_VALUE.sub(r"\1[redacted]", message)
        record.args = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **fields_of(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


class PlainFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        fields = fields_of(record)
        record.context = (
            " [" + " ".join(f"{_PLAIN_NAMES[k]}={v}" for k, v in fields.items()) + "]"
            if fields
            else ""
        )
        return super().format(record)


def log_handler(*, json_lines: bool, stream: IO[str] | None = None) -> logging.Handler:
    """A handler writing to ``stream`` (stderr) in the chosen format, context included."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else PlainFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactSecrets())
    return handler


def configure_logging(level: str, *, json_lines: bool) -> None:
    root = logging.getLogger()
    root.handlers[:] = [log_handler(json_lines=json_lines)]
    root.setLevel(level.upper())
