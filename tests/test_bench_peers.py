"""The load driver against the peer servers: pycrdt-websocket, the reference y-websocket server
and Hocuspocus, each started by ``bench/servers.py`` on a free loopback port, each scenario run
for about two seconds with a handful of clients; plus the pure parts this needs: the Hocuspocus
codec, the per-kind wire, the seeding of a peer's room and the new options.

The Node peers need Node.js 18+ and the packages of ``bench/peers/package-lock.json`` (``npm
ci`` runs once when ``node_modules`` is missing or older than the lockfile); pycrdt-websocket
comes with the ``dev`` extra. Without them these tests skip, and with ``REQUIRE_SERVICES=1``
(CI) they fail instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
from collections.abc import AsyncIterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pycrdt import Doc
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from bench import hocuspocus as hp
from bench.clients import Traffic
from bench.config import BenchConfig, add_arguments, config_from_args
from bench.diagrams import chain_diagram
from bench.edits import find_targets
from bench.main import run_bench, summary
from bench.seed import element_count, seed_from_xml
from bench.servers import (
    NODE_SCRIPTS,
    PEERS_DIR,
    ServerProcess,
    describe,
)
from bench.target import PeerTarget, SetupFailed, TargetRefused
from bench.wire import UPDATE_PREFIX, Y_WIRE, HocuspocusWire, Refused
from bpmn.parse import parse
from rooms.protocol import (
    AuthMessage,
    AwarenessMessage,
    MalformedMessage,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_message,
    encode_message,
)
from tests.fixtures.node import node_tools, npm_ci
from tests.fixtures.services import service_missing

PEERS = ("pycrdt-websocket", "y-websocket", "hocuspocus")

# --- the Hocuspocus codec -------------------------------------------------------------------

blobs = st.binary(max_size=300)
texts = st.text(max_size=40)
sync_messages = st.one_of(
    st.builds(SyncStep1, blobs), st.builds(SyncStep2, blobs), st.builds(SyncUpdate, blobs)
)
# Every message whose frames are invalid when cut short or followed by a byte.
strict_messages = st.one_of(
    sync_messages,
    st.builds(hp.SyncReply, sync_messages),
    st.builds(AwarenessMessage, blobs),
    st.just(QueryAwareness()),
    st.builds(hp.PermissionDenied, texts),
    st.builds(hp.Authenticated, texts),
    st.builds(hp.Stateless, texts),
    st.builds(hp.BroadcastStateless, texts),
    st.builds(hp.SyncStatus, st.booleans()),
)
# A token and a close carry their text only in one direction (server -> client for a close,
# client -> server for a token), so the frame without it is valid too.
messages = st.one_of(
    strict_messages,
    st.builds(hp.Token, st.none() | texts),
    st.builds(hp.Close, st.none() | texts),
)
frames = st.builds(hp.Frame, texts, messages)


@given(frames)
def test_hocuspocus_frames_round_trip(frame: hp.Frame) -> None:
    assert hp.decode_frame(hp.encode_frame(frame)) == frame


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_malformed(data: bytes) -> None:
    with contextlib.suppress(MalformedMessage):
        hp.decode_frame(data)


@given(texts, strict_messages, st.data())
def test_truncated_or_extended_frames_are_malformed(
    document: str, message: hp.Message, data: st.DataObject
) -> None:
    encoded = hp.encode_frame(hp.Frame(document, message))
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(MalformedMessage):
        hp.decode_frame(encoded[:cut])
    with pytest.raises(MalformedMessage):
        hp.decode_frame(encoded + b"\x00")


@given(texts, sync_messages)
def test_sync_frames_are_y_websocket_frames_after_the_name(
    document: str, message: SyncStep1 | SyncStep2 | SyncUpdate
) -> None:
    encoded = hp.encode_frame(hp.Frame(document, message))
    prefix = hp.document_prefix(document)
    assert encoded == prefix + encode_message(message)
    assert decode_message(encoded[len(prefix) :]) == message


def test_known_bytes_of_a_hocuspocus_server() -> None:
    # Captured from @hocuspocus/server 3.4.4: the answer to a token, the server's sync step 1
    # and step 2 of an empty document, and its acknowledgement of an update.
    assert hp.decode_frame(b"\x04doc1\x02\x02\nread-write") == hp.Frame(
        "doc1", hp.Authenticated("read-write")
    )
    assert hp.decode_frame(b"\x04doc1\x00\x00\x01\x00") == hp.Frame("doc1", SyncStep1(b"\x00"))
    assert hp.decode_frame(b"\x04doc1\x00\x01\x02\x00\x00") == hp.Frame(
        "doc1", SyncStep2(b"\x00\x00")
    )
    assert hp.decode_frame(b"\x04doc1\x08\x01") == hp.Frame("doc1", hp.SyncStatus(True))
    # What @hocuspocus/provider sends first when it has no token: an empty one.
    assert hp.encode_frame(hp.Frame("doc1", hp.Token(""))) == b"\x04doc1\x02\x00\x00"
    # A token request from the server carries nothing after the sub-type.
    assert hp.decode_frame(b"\x01d\x02\x00") == hp.Frame("d", hp.Token(None))


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "ends inside"),
        (b"\x01d", "ends inside"),
        (b"\x01d\x09", "unknown Hocuspocus message type 9"),
        (b"\x01d\x02\x03", "unknown auth message type 3"),
        (b"\x01d\x00\x07\x00", "unknown sync message type 7"),
        (b"\x01d\x08\x02", "sync status must be 0 or 1"),
        (b"\x01d\x03\x00", "unexpected bytes"),
        (b"\x01\xff\x03", "not UTF-8"),
        (b"\x05ab", "ends inside a byte string"),
    ],
)
def test_malformed_frames_say_why(data: bytes, why: str) -> None:
    with pytest.raises(MalformedMessage, match=why):
        hp.decode_frame(data)


# --- the wire of each kind ------------------------------------------------------------------


@given(blobs, texts)
def test_only_updates_start_with_the_update_prefix(update: bytes, document: str) -> None:
    hocus = HocuspocusWire(document)
    for wire in (Y_WIRE, hocus):
        assert wire.encode(SyncUpdate(update)).startswith(wire.update_prefix)
        for other in (SyncStep1(update), SyncStep2(update), AwarenessMessage(update)):
            assert not wire.encode(other).startswith(wire.update_prefix)
    for chatter in (hp.Authenticated("read-write"), hp.SyncStatus(True), hp.Close("bye")):
        assert not hp.encode_frame(hp.Frame(document, chatter)).startswith(hocus.update_prefix)


def test_the_y_wire_is_y_websocket() -> None:
    assert Y_WIRE.update_prefix == UPDATE_PREFIX
    assert Y_WIRE.hello() == []
    assert Y_WIRE.encode(SyncStep1(b"\x00")) == b"\x00\x00\x01\x00"
    assert Y_WIRE.decode(b"\x00\x02\x01x") == SyncUpdate(b"x")
    with pytest.raises(Refused) as refused:
        Y_WIRE.decode(encode_message(AuthMessage(0, "no")))
    assert refused.value.kind == "auth_denied"


def test_the_hocuspocus_wire_sends_a_token_first_and_drops_the_chatter() -> None:
    wire = HocuspocusWire("room-1")
    prefix = hp.document_prefix("room-1")
    assert wire.hello() == [prefix + b"\x02\x00\x00"]
    assert wire.encode(SyncUpdate(b"u")) == prefix + b"\x00\x02\x01u"

    def frame(message: hp.Message, document: str = "room-1") -> bytes:
        return hp.encode_frame(hp.Frame(document, message))

    assert wire.decode(frame(SyncStep2(b"s"))) == SyncStep2(b"s")
    assert wire.decode(frame(hp.SyncReply(SyncStep2(b"s")))) == SyncStep2(b"s")
    for chatter in (hp.Authenticated("read-write"), hp.SyncStatus(True), hp.Token(None)):
        assert wire.decode(frame(chatter)) is None
    with pytest.raises(Refused) as denied:
        wire.decode(frame(hp.PermissionDenied("go away")))
    assert (denied.value.kind, denied.value.detail) == ("auth_denied", "go away")
    with pytest.raises(Refused) as refused:
        wire.decode(frame(hp.SyncStatus(False)))
    assert refused.value.kind == "update_refused"
    with pytest.raises(Refused) as closed:
        wire.decode(frame(hp.Close("Server closed the connection")))
    assert closed.value.kind == "closed_by_server"
    with pytest.raises(MalformedMessage, match="another document"):
        wire.decode(frame(SyncStep2(b"s"), document="room-2"))
    with pytest.raises(TypeError):
        wire.encode(QueryAwareness())


# --- seeding a peer's room ------------------------------------------------------------------


def test_a_seed_is_the_document_our_server_would_build() -> None:
    xml = chain_diagram(12)
    seed = seed_from_xml(xml)
    model = parse(xml)
    assert seed.elements == len(model.elements) == 24  # 12 tasks, 11 flows, the process
    assert element_count(seed.state) == seed.elements
    doc: Doc[Any] = Doc()
    doc.apply_update(seed.state)
    assert len(find_targets(doc)) == 12  # every task has its shape: editors find their work
    assert element_count(b"\x00\x00") == 0


class FakeRooms:
    """A y-websocket-style server in this process: rooms by path, sync answered from a pycrdt
    Doc. ``applies=False`` drops every update; ``prefilled`` starts each room with a state."""

    def __init__(self, *, applies: bool = True, prefilled: bytes | None = None) -> None:
        self.applies = applies
        self.prefilled = prefilled
        self.docs: dict[str, Doc[Any]] = {}
        self.updates = 0

    def doc(self, path: str) -> Doc[Any]:
        if path not in self.docs:
            self.docs[path] = Doc()
            if self.prefilled is not None:
                self.docs[path].apply_update(self.prefilled)
        return self.docs[path]

    async def handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        doc = self.doc(ws.request.path)
        await ws.send(encode_message(SyncStep1(doc.get_state())))
        with contextlib.suppress(ConnectionClosed):  # the client going away ends the handler
            async for frame in ws:
                assert isinstance(frame, bytes)
                message = decode_message(frame)
                if isinstance(message, SyncStep1):
                    reply = SyncStep2(doc.get_update(message.state_vector))
                    await ws.send(encode_message(reply))
                elif isinstance(message, SyncUpdate):
                    self.updates += 1
                    if self.applies:
                        doc.apply_update(message.update)


@contextlib.asynccontextmanager
async def fake_peer(rooms: FakeRooms) -> AsyncIterator[PeerTarget]:
    async with serve(rooms.handle, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield PeerTarget("y-websocket", f"http://127.0.0.1:{port}", label="t")


async def test_a_room_is_seeded_once_and_then_holds_the_diagram() -> None:
    rooms = FakeRooms()
    async with fake_peer(rooms) as target:
        (room,) = await target.create_rooms(1, chain_diagram(5))
        traffic = Traffic()
        joined = await asyncio.gather(*(target.open_room(room, "u", traffic) for _ in range(4)))
        try:
            assert rooms.updates == 1  # the others waited for the seed, then just joined
            assert [element_count(state) for _, state in joined] == [10] * 4
            assert all(link.ws.state is State.OPEN for link, _ in joined)
        finally:
            for link, _ in joined:
                await link.ws.close()


async def test_a_server_that_drops_the_seed_fails_the_set_up() -> None:
    rooms = FakeRooms(applies=False)
    async with fake_peer(rooms) as target:
        (room,) = await target.create_rooms(1, chain_diagram(3))
        with pytest.raises(SetupFailed) as failed:
            await target.open_room(room, "u", Traffic())
        # The next client of that room is refused the same way, without a second push.
        with pytest.raises(SetupFailed) as again:
            await target.open_room(room, "v", Traffic())
    assert failed.value.kind == again.value.kind == "seed_not_held"
    assert "0 of the diagram's 6 elements" in failed.value.detail
    assert rooms.updates == 1


async def test_a_room_that_already_holds_content_is_not_seeded_twice() -> None:
    async with fake_peer(FakeRooms(prefilled=seed_from_xml(chain_diagram(2)).state)) as target:
        (room,) = await target.create_rooms(1, chain_diagram(2))
        with pytest.raises(SetupFailed) as failed:
            await target.open_room(room, "u", Traffic())
    assert failed.value.kind == "seed_room_not_empty"


async def test_peer_rooms_are_url_paths_or_hocuspocus_documents() -> None:
    y = PeerTarget("y-websocket", "http://127.0.0.1:1234/", label="abc")
    (room,) = await y.create_rooms(1, chain_diagram(1))
    assert room == "bench-abc-room-0"
    ticket = await y.ticket(room, "anyone")
    assert (ticket.url, ticket.wire) == ("ws://127.0.0.1:1234/bench-abc-room-0", Y_WIRE)
    hocus = PeerTarget("hocuspocus", "ws://localhost:1234", label="abc")
    ticket = await hocus.ticket(room, "anyone")
    assert ticket.url == "ws://localhost:1234"
    assert isinstance(ticket.wire, HocuspocusWire) and ticket.wire.document == room
    with pytest.raises(TargetRefused):
        PeerTarget("y-websocket", "ws://192.0.2.1:1234", label="abc")


# --- options --------------------------------------------------------------------------------


def _config(scenario: str, *argv: str) -> BenchConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser, scenario)
    return config_from_args(parser.parse_args(argv))


def test_server_options() -> None:
    assert _config("rooms").server == "ours"
    config = _config("join", "--server", "hocuspocus", "--spawn", "--server-cpus", "1,0,1")
    assert (config.server, config.spawn, config.server_cpus) == ("hocuspocus", True, (0, 1))
    assert config.public()["server"] == "hocuspocus"
    with pytest.raises(ValueError, match="--spawn"):
        _config("rooms", "--server-cpus", "0")
    with pytest.raises(ValueError, match="--server ours"):
        _config("rest", "--server", "y-websocket")
    with pytest.raises(SystemExit):
        _config("rooms", "--server", "nginx")


def test_servers_bind_only_loopback() -> None:
    with pytest.raises(TargetRefused):
        ServerProcess("y-websocket", host="0.0.0.0")  # noqa: S104 - refused, never bound
    with pytest.raises(ValueError, match="kind"):
        ServerProcess("apache")


# --- the peers, started for real ------------------------------------------------------------


@pytest.fixture(scope="session")
def node_packages() -> None:
    """Node.js and the packages of ``bench/peers``, installed from the lockfile if needed."""
    _, npm = node_tools("the Node peers")
    npm_ci(npm, PEERS_DIR, "the bench peers' npm packages", timeout_s=300)


def _needs(kind: str, request: pytest.FixtureRequest) -> None:
    if kind in NODE_SCRIPTS:
        request.getfixturevalue("node_packages")
    elif find_spec("pycrdt.websocket") is None:
        service_missing("pycrdt-websocket", "install the dev extra: pip install -e '.[dev]'")


@pytest.fixture(scope="module", params=PEERS)
async def peer(request: pytest.FixtureRequest) -> AsyncIterator[ServerProcess]:
    kind: str = request.param
    _needs(kind, request)
    async with ServerProcess(kind, start_timeout_s=60) as server:
        yield server


def _bench(server: ServerProcess, tmp_path: Path, scenario: str, **options: Any) -> BenchConfig:
    return BenchConfig(
        scenario=scenario,
        server=server.kind,
        target=server.url,
        out=tmp_path / f"{scenario}.json",
        drain_s=5,
        setup_timeout_s=60,
        progress=False,
        **options,
    )


async def _run(config: BenchConfig, server: ServerProcess) -> dict[str, Any]:
    result = await run_bench(config, log=io.StringIO())
    assert config.out is not None
    written: dict[str, Any] = json.loads(config.out.read_text())
    assert written["error_count"] == 0, written["error_examples"]
    assert written["server_under_test"]["kind"] == server.kind
    assert written["server_under_test"]["version"] == describe(server.kind)["version"] is not None
    # Nobody said which process serves the port: the driver found the peer by its socket.
    assert written["server"]["pids"] == server.pids
    assert server.kind in summary(result)
    return written


async def test_rooms(peer: ServerProcess, tmp_path: Path) -> None:
    config = _bench(peer, tmp_path, "rooms", clients=6, rooms=2, rate_hz=5, duration_s=2)
    result = await _run(config, peer)
    # 6 editors x 5/s x 2 s, every one seen by its room's observer.
    assert result["throughput"]["edits_sent"] == 60
    assert result["latency_ms"]["count"] == 60
    assert result["connections"] == {"planned": 8, "open_at_end": 0}


async def test_broadcast(peer: ServerProcess, tmp_path: Path) -> None:
    config = _bench(peer, tmp_path, "broadcast", clients=5, sample=2, rate_hz=10, duration_s=2)
    result = await _run(config, peer)
    # Every observer timed all 20 edits; the two sampled ones saw them in their documents.
    assert result["latency_ms"]["count"] == 5 * 20
    assert result["applied_latency_ms"]["count"] == 2 * 20


async def test_join(peer: ServerProcess, tmp_path: Path) -> None:
    diagram = tmp_path / "big.bpmn"
    diagram.write_bytes(chain_diagram(300))
    config = _bench(peer, tmp_path, "join", clients=8, duration_s=2, diagram=diagram)
    result = await _run(config, peer)
    assert result["latency_ms"]["count"] == 8
    assert result["details"]["elements"] == 600  # the seeded room held the whole diagram
    assert result["details"]["states_checked"] == 5


@pytest.fixture
def pycrdt_websocket(request: pytest.FixtureRequest) -> None:
    _needs("pycrdt-websocket", request)


@pytest.mark.usefixtures("pycrdt_websocket")
async def test_a_pinned_server_runs_on_its_cores_and_stops_with_its_group() -> None:
    async with ServerProcess("pycrdt-websocket", cpus=[0]) as server:
        (pid,) = server.pids
        assert os.sched_getaffinity(pid) == {0}
        assert server.output().count("ready 127.0.0.1") == 1
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.usefixtures("pycrdt_websocket")
async def test_spawn_starts_the_peer_for_the_run_and_stops_it(tmp_path: Path) -> None:
    config = BenchConfig(
        scenario="rooms",
        server="pycrdt-websocket",
        spawn=True,
        clients=2,
        rooms=1,
        rate_hz=5,
        duration_s=1,
        drain_s=5,
        out=tmp_path / "rooms.json",
        progress=False,
    )
    log = io.StringIO()
    result = await run_bench(config, log=log)
    assert result["error_count"] == 0, result["error_examples"]
    assert result["latency_ms"]["count"] == 10
    assert result["server_under_test"]["spawned"] is True
    assert "started pycrdt-websocket on ws://127.0.0.1:" in log.getvalue()
    (pid,) = result["server"]["pids"]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_ours_as_a_process_with_its_own_secret(tmp_path: Path) -> None:
    # Ours started the way the peers are: `bpmn-collab serve`, embedded default, a throw-away
    # folder, a secret of its own that the driver mints user tokens with.
    async with ServerProcess("ours", start_timeout_s=60) as server:
        assert server.secret is not None
        config = BenchConfig(
            scenario="rooms",
            target=server.url,
            secret=server.secret,
            clients=2,
            rooms=1,
            rate_hz=5,
            duration_s=1,
            drain_s=5,
            out=tmp_path / "rooms.json",
            progress=False,
        )
        result = await run_bench(config, log=io.StringIO())
        assert result["error_count"] == 0, result["error_examples"]
        assert result["latency_ms"]["count"] == 10
        assert result["server_under_test"]["kind"] == "ours"
        assert server.pids[0] in result["server"]["pids"]
