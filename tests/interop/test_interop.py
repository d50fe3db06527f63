"""The official Yjs client stack against the real server: yjs + y-websocket in Node.

Each collaborator is ``node client.mjs`` (see that file) joined through the documented flow
(``POST /api/diagrams/{id}/collaborate``, then ``new WebsocketProvider(url, diagramId, doc,
{params: {token}})``) to a real uvicorn serving the real app. The clients edit through the
document schema (``docs/crdt-schema.md``), wait until they see everyone's edits, and print
their final documents; the server's own room document must render to XML holding every edit.

Node.js 18+ and npm are needed; the packages come from ``package-lock.json`` (``npm ci`` runs
once when ``node_modules`` is missing or older than the lockfile). Without Node the tests skip,
and with ``REQUIRE_SERVICES=1`` (CI) they fail instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from lxml import etree
from pycrdt import Map

from bpmn.document import read
from bpmn.render import render
from server.documents import room_key
from server.services import Services
from tests.fixtures.live_server import LiveServer, make_settings, run_server, unique_org
from tests.fixtures.node import node_tools, npm_ci
from tests.samples import REFERENCE

HERE = Path(__file__).resolve().parent
CLIENT = HERE / "client.mjs"
CLIENT_TIMEOUT_MS = 20_000  # each client gives up (exit 1, with what it still waited for)
WAIT_S = CLIENT_TIMEOUT_MS / 1000 + 10  # the test gives up on a client that does not even do that
ROOTS = ("meta", "elements", "di", "raw")
XML = {"Content-Type": "application/xml"}
NS = {
    "bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
    "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI",
    "dc": "http://www.omg.org/spec/DD/20100524/DC",
}

# A.2.0: a process "WFP-6-" with Task 1..4; its plane has no id, so its key is "~di/WFP-6-".
PROCESS = "WFP-6-"
PLANE = "~di/WFP-6-"
TASK_1 = "_5a972b87-735d-454a-b31c-f52fb3afc5c7"
TASK_2 = "_4f7d62d7-f0e6-46bc-be00-69e02da38f65"
TASK_3 = "_e6eb725a-34bc-45c7-aed0-9f9596cd7bee"
TASK_4 = "_7d399717-1aba-47ac-8d7d-8aaa033255e0"
TASK_4_SHAPE = "S1373649889878__7d399717-1aba-47ac-8d7d-8aaa033255e0"
NEW_TASK = "Task_interop_carol"
NEW_SHAPE = "Shape_interop_carol"


# --- Node -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def node() -> str:
    """The ``node`` executable, with the interop packages installed from the lockfile."""
    node, npm = node_tools("the Yjs interop tests")
    npm_ci(npm, HERE, "the interop npm packages", timeout_s=300)
    return node


@dataclass
class NodeClient:
    """One ``node client.mjs`` process and the events it printed so far."""

    name: str
    process: asyncio.subprocess.Process
    stderr: asyncio.Task[bytes]
    events: list[dict[str, Any]] = field(default_factory=list)

    async def wait_for(self, kind: str) -> dict[str, Any]:
        """The next event of ``kind``; fails on the client's error, exit or silence."""
        assert self.process.stdout is not None
        async with asyncio.timeout(WAIT_S):
            while True:
                line = await self.process.stdout.readline()
                if not line:
                    await self.process.wait()
                    pytest.fail(
                        f"{self.name} exited ({self.process.returncode}) before {kind!r}: "
                        f"{(await self.stderr).decode(errors='replace')}"
                    )
                event: dict[str, Any] = json.loads(line)
                self.events.append(event)
                if event["event"] == kind:
                    return event
                if event["event"] == "error":
                    pytest.fail(f"{self.name}: {event['message']}")

    async def result(self) -> dict[str, Any]:
        """The client's final document, once it saw everything it waited for and exited 0."""
        done = await self.wait_for("done")
        async with asyncio.timeout(WAIT_S):
            code = await self.process.wait()
        assert code == 0, f"{self.name} exited {code}: {(await self.stderr).decode()}"
        return cast(dict[str, Any], done["doc"])


@asynccontextmanager
async def node_clients(node: str) -> AsyncIterator[Any]:
    """``start(name, **args)`` runs a client; whatever still runs at the end is killed."""
    started: list[NodeClient] = []

    async def start(name: str, **args: Any) -> NodeClient:
        args = {"name": name, "timeoutMs": CLIENT_TIMEOUT_MS, **args}
        process = await asyncio.create_subprocess_exec(
            node,
            str(CLIENT),
            json.dumps(args),
            cwd=HERE,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stderr is not None
        client = NodeClient(name, process, asyncio.ensure_future(process.stderr.read()))
        started.append(client)
        return client

    try:
        yield start
    finally:
        for client in started:
            if client.process.returncode is None:
                client.process.kill()
            await client.process.wait()
            client.stderr.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await client.stderr


# --- the server -------------------------------------------------------------------------------


def services(live: LiveServer) -> Services:
    return cast(Services, live.app.state.services)


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with run_server(make_settings(tmp_path)) as live:
        yield live


async def create_diagram(client: httpx.AsyncClient, path: Path) -> str:
    created = await client.post(
        "/api/diagrams", params={"title": path.stem}, content=path.read_bytes(), headers=XML
    )
    assert created.status_code == 201, created.text
    return cast(str, created.json()["id"])


async def collaborate(client: httpx.AsyncClient, diagram_id: str) -> dict[str, Any]:
    joined = await client.post(f"/api/diagrams/{diagram_id}/collaborate")
    assert joined.status_code == 200, joined.text
    return cast(dict[str, Any], joined.json())


def server_document(live: LiveServer, org: str, diagram_id: str) -> dict[str, Any]:
    room = services(live).rooms.room(room_key(org, diagram_id, 0))
    assert room is not None, "the room unloaded before the test could read it"
    return {root: room.doc.get(root, type=Map).to_py() for root in ROOTS}


def server_xml(live: LiveServer, org: str, diagram_id: str) -> str:
    room = services(live).rooms.room(room_key(org, diagram_id, 0))
    assert room is not None, "the room unloaded before the test could read it"
    return render(read(room.doc)).decode("utf-8")


def only(xml: str, path: str, element_id: str) -> etree._Element:
    """The one node ``path`` (with ``$id`` bound to ``element_id``) finds in rendered XML."""
    found = etree.fromstring(xml.encode()).xpath(path, namespaces=NS, id=element_id)
    assert isinstance(found, list), found
    nodes = [node for node in found if isinstance(node, etree._Element)]
    assert len(nodes) == 1, f"{path} finds {len(nodes)} nodes for {element_id}"
    return nodes[0]


def name_of(xml: str, element_id: str) -> str | None:
    """The ``name`` of the process child ``element_id`` in rendered XML."""
    return only(xml, "//bpmn:process/*[@id=$id]", element_id).get("name")


def bounds_of(xml: str, element_id: str) -> list[float]:
    """``[x, y, width, height]`` of the one shape of ``element_id`` in rendered XML."""
    bounds = only(xml, "//bpmndi:BPMNShape[@bpmnElement=$id]/dc:Bounds", element_id)
    return [float(bounds.get(name, "nan")) for name in ("x", "y", "width", "height")]


# --- edits ------------------------------------------------------------------------------------


def rename(key: str, name: str) -> dict[str, Any]:
    return {"op": "set", "root": "elements", "key": key, "path": ["attrs", "name"], "value": name}


def move(key: str, bounds: list[float]) -> dict[str, Any]:
    return {"op": "set", "root": "di", "key": key, "path": ["bounds"], "value": bounds}


def expectations(edits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a document shows once it has ``edits``: each value set, each entry added."""
    wanted = []
    for edit in edits:
        if edit["op"] == "set":
            wanted.append(
                {
                    "root": edit["root"],
                    "key": edit["key"],
                    "path": edit["path"],
                    "equals": edit["value"],
                }
            )
        else:
            for name, value in edit["entry"].items():
                wanted.append(
                    {"root": edit["root"], "key": edit["key"], "path": [name], "equals": value}
                )
    return wanted


ALICE = [rename(TASK_1, "Check the order (alice)"), move(TASK_4_SHAPE, [520, 470, 90, 70])]
BOB = [rename(TASK_2, "Ship the parcel (bob)"), rename(TASK_3, "Bill the customer (bob)")]
CAROL = [
    {
        "op": "add",
        "root": "elements",
        "key": NEW_TASK,
        "entry": {
            "type": "semantic:task",
            "parent": PROCESS,
            "attrs": {"name": "Archive the case (carol)"},
            "text": {},
            "body": {},
        },
    },
    {
        "op": "add",
        "root": "di",
        "key": NEW_SHAPE,
        "entry": {
            "type": "bpmndi:BPMNShape",
            "parent": PLANE,
            "element": NEW_TASK,
            "attrs": {},
            "bounds": [820, 120, 100, 80],
        },
    },
]
VIEWER = [rename(TASK_4, "Viewer was here")]


# --- tests ------------------------------------------------------------------------------------


async def test_three_editors_converge_and_a_viewer_is_refused(node: str, live: LiveServer) -> None:
    org = unique_org()
    users = {
        name: live.client(live.token(user=name, org=org)) for name in ("alice", "bob", "carol")
    }
    users["victor"] = live.client(live.token(user="victor", org=org, role="viewer"))
    try:
        diagram_id = await create_diagram(users["alice"], REFERENCE / "A.2.0.bpmn")
        joins = {name: await collaborate(client, diagram_id) for name, client in users.items()}
    finally:
        for client in users.values():
            await client.aclose()
    assert joins["victor"]["role"] == "viewer"
    assert {joins[name]["role"] for name in ("alice", "bob", "carol")} == {"editor"}

    edits = {"alice": ALICE, "bob": BOB, "carol": CAROL}
    everything = expectations(ALICE + BOB + CAROL)

    def args(name: str) -> dict[str, Any]:
        join = joins[name]
        return {"url": join["url"], "room": diagram_id, "token": join["token"]}

    async with node_clients(node) as start:
        # The viewer edits first and is told its change is refused before anyone else joins,
        # so the editors' final documents are taken after the server saw (and refused) it.
        viewer = await start(
            "victor", **args("victor"), edits=VIEWER, expect=everything, expectDenied=True
        )
        denied = await viewer.wait_for("denied")
        assert "read-only" in denied["reason"]

        editors = [
            await start(name, **args(name), edits=edits[name], expect=everything)
            for name in ("alice", "bob", "carol")
        ]
        docs = await asyncio.gather(*(editor.result() for editor in editors))
        viewer_doc = await viewer.result()

    alice, bob, carol = docs
    assert alice == bob == carol, "the editors' documents differ"
    elements, di = alice["elements"], alice["di"]
    assert elements[TASK_1]["attrs"]["name"] == "Check the order (alice)"
    assert elements[TASK_2]["attrs"]["name"] == "Ship the parcel (bob)"
    assert elements[TASK_3]["attrs"]["name"] == "Bill the customer (bob)"
    assert elements[NEW_TASK]["attrs"] == {"name": "Archive the case (carol)"}
    assert elements[NEW_TASK]["parent"] == PROCESS
    assert di[TASK_4_SHAPE]["bounds"] == [520, 470, 90, 70]
    assert di[NEW_SHAPE]["element"] == NEW_TASK
    assert di[NEW_SHAPE]["bounds"] == [820, 120, 100, 80]
    # The viewer's rename stays in its own document only.
    assert elements[TASK_4]["attrs"]["name"] == "Task 4"
    assert viewer_doc["elements"][TASK_4]["attrs"]["name"] == "Viewer was here"
    viewer_doc["elements"][TASK_4]["attrs"]["name"] = "Task 4"
    assert viewer_doc == alice, "the viewer missed an edit, or has one the editors lack"

    # The server's own document is the editors' document, and renders every edit.
    assert server_document(live, org, diagram_id) == alice
    assert services(live).rooms.metrics.viewer_updates_refused >= 1
    xml = server_xml(live, org, diagram_id)
    names = {task: name_of(xml, task) for task in (TASK_1, TASK_2, TASK_3, TASK_4, NEW_TASK)}
    assert names == {
        TASK_1: "Check the order (alice)",
        TASK_2: "Ship the parcel (bob)",
        TASK_3: "Bill the customer (bob)",
        TASK_4: "Task 4",  # the viewer's rename was refused
        NEW_TASK: "Archive the case (carol)",
    }
    assert bounds_of(xml, TASK_4) == [520, 470, 90, 70]
    assert bounds_of(xml, NEW_TASK) == [820, 120, 100, 80]
    assert "Viewer was here" not in xml


@pytest.mark.parametrize("token", ["forged", "missing"])
async def test_a_bad_room_token_is_closed_with_4401(
    node: str, live: LiveServer, token: str
) -> None:
    org = unique_org()
    async with live.client(live.token(user="alice", org=org)) as client:
        diagram_id = await create_diagram(client, REFERENCE / "A.2.0.bpmn")
        join = await collaborate(client, diagram_id)
    header, claims, signature = join["token"].split(".")
    forged = f"{header}.{claims}.{signature[::-1]}"
    async with node_clients(node) as start:
        intruder = await start(
            "mallory",
            url=join["url"],
            room=diagram_id,
            token=forged if token == "forged" else None,
            edits=VIEWER,
            expectClose=4401,
        )
        closed = await intruder.wait_for("closed")
        assert closed["code"] == 4401, closed
        await intruder.result()
    assert not any(event["event"] == "synced" for event in intruder.events)
    assert services(live).rooms.room(room_key(org, diagram_id, 0)) is None
