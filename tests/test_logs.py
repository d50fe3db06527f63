"""Log lines name the connection, room and user they are about, in JSON and plain text."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from server import log_context
from server.documents import room_key
from server.logs import log_handler
from tests.fixtures.live_server import make_settings, run_server
from tests.fixtures.ypeer import joined, room_token
from tests.test_ws_e2e import expect_refusal, new_diagram, org_of, rename, task_ids

_LOGGERS = ("server", "rooms")


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """The production handler (JSON) on the root logger, writing to a buffer."""
    buffer = io.StringIO()
    handler = log_handler(json_lines=True, stream=buffer)
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in _LOGGERS}
    root.addHandler(handler)
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def entries(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in buffer.getvalue().splitlines()]


def one(found: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    hits = [e for e in found if all(e.get(k) == v for k, v in match.items())]
    assert len(hits) == 1, (match, found)
    return hits[0]


async def test_a_websocket_session_logs_its_ids_as_json(
    tmp_path: Path, json_lines: io.StringIO
) -> None:
    async with run_server(make_settings(tmp_path / "data")) as live:
        async with live.user_client(user="ada") as client:
            diagram_id = await new_diagram(client)
            url, token = await room_token(client, diagram_id)
            key = room_key(org_of(client), diagram_id, 0)
        await expect_refusal(url, diagram_id, "not-a-jwt", 4401)
        async with joined(url, diagram_id, token) as peer:
            await peer.edit(rename(task_ids(peer)[0], "Logged"))
    # The server has stopped: every connection's handler, and its last line, is done.
    found = entries(json_lines)
    opened = one(found, logger="server.ws", message="connection open (editor)")
    assert opened["room"] == key
    assert opened["user_id"] == "ada"
    connection = opened["connection_id"]
    assert len(connection) == 12
    closed = one(found, logger="server.ws", message="connection closed")
    assert (closed["connection_id"], closed["room"], closed["user_id"]) == (connection, key, "ada")
    # The room opened inside the connection: its lines name the room.
    room_opened = one(found, logger="rooms.registry", message=f"room {key} opened")
    assert room_opened["room"] == key
    # A refused socket has a connection id of its own, and no room or user yet.
    refused = [e for e in found if e["message"].startswith("refused on")]
    assert len(refused) == 1
    assert refused[0]["connection_id"] not in ("", connection)
    assert "room" not in refused[0] and "user_id" not in refused[0]
    # Everything is one JSON object per line, with the usual fields.
    assert {"time", "level", "logger", "message"} <= set(opened)


async def test_room_tokens_in_websocket_urls_never_reach_the_log(
    tmp_path: Path, json_lines: io.StringIO
) -> None:
    uvicorn_lines = logging.getLogger("uvicorn.error")
    async with run_server(make_settings(tmp_path / "data")) as live:
        # The test server logs uvicorn at WARNING; production at INFO, where URLs show.
        level = uvicorn_lines.level
        uvicorn_lines.setLevel(logging.INFO)
        try:
            async with live.user_client(user="ada") as client:
                diagram_id = await new_diagram(client)
                url, token = await room_token(client, diagram_id)
            async with joined(url, diagram_id, token) as peer:
                await peer.edit(rename(task_ids(peer)[0], "Secret kept"))
        finally:
            uvicorn_lines.setLevel(level)
    written = json_lines.getvalue()
    assert "token=[redacted]" in written
    assert token not in written


def test_token_values_are_redacted_from_query_strings_only() -> None:
    def written(message: str, *args: object) -> str:
        buffer = io.StringIO()
        log_handler(json_lines=False, stream=buffer).handle(
            logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, message, args, None)
        )
        return buffer.getvalue().rstrip("\n")

    url = "/collab/d1?a=1&token=eyJ.x-y.z&b=2"
    assert written('%s - "WebSocket %s" %d', "127.0.0.1:5", url, 101).endswith(
        '127.0.0.1:5 - "WebSocket /collab/d1?a=1&token=[redacted]&b=2" 101'
    )
    assert written("token=abc ?access_token=s3").endswith("token=abc ?access_token=[redacted]")


def record(message: str = "hello") -> logging.LogRecord:
    made = logging.LogRecord("test", logging.INFO, __file__, 1, message, None, None)
    log_context.ContextFilter().filter(made)
    return made


def test_plain_lines_carry_the_ids_compactly() -> None:
    plain = log_handler(json_lines=False).formatter
    assert plain is not None
    with log_context.bound(connection_id="c1", room="org/d/0", user_id="ada"):
        line = plain.format(record())
    assert line.endswith(" INFO test [conn=c1 room=org/d/0 user=ada]: hello")
    assert plain.format(record()).endswith(" INFO test: hello")


def test_bound_fields_nest_and_end_with_their_block() -> None:
    with log_context.bound(connection_id="c1"):
        with log_context.bound(room="r1", user_id=None):
            assert dict(log_context.current()) == {"connection_id": "c1", "room": "r1"}
        assert dict(log_context.current()) == {"connection_id": "c1"}
    assert dict(log_context.current()) == {}
    with pytest.raises(ValueError, match="unknown"), log_context.bound(diagram="d1"):
        pass


async def test_tasks_inherit_the_ids_and_room_only_drops_the_connection() -> None:
    async def fields() -> dict[str, str]:
        return dict(log_context.current())

    with log_context.bound(connection_id="c1", room="r1", user_id="ada"):
        inherited = await asyncio.create_task(fields())
        alone = await asyncio.get_running_loop().create_task(
            fields(), context=log_context.room_only("r2")
        )
    assert inherited == {"connection_id": "c1", "room": "r1", "user_id": "ada"}
    assert alone == {"room": "r2"}


def test_a_field_given_to_the_call_wins() -> None:
    with log_context.bound(room="bound"):
        made = logging.LogRecord("test", logging.INFO, __file__, 1, "m", None, None)
        made.room = "explicit"
        log_context.ContextFilter().filter(made)
    assert made.room == "explicit"
