"""The studio in a real browser: two people co-editing one diagram live.

Headless Debian Chromium (driven by Python playwright with ``executable_path``, never a browser
playwright downloads) opens the studio the real server serves (uvicorn on a free port, the built
``studio/dist``) in independent browser contexts, one per user: separate storage, separate
sockets, separate Yjs documents. Edits are made the way a person makes them (palette, canvas,
context pad, keyboard) where that is what is tested, and each must show in the other window
within a second. Screenshots of both windows go to ``$STUDIO_ARTIFACTS`` or the pytest tmp dir.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from lxml import etree

from server.documents import room_key
from tests.fixtures.live_server import LiveServer, make_settings, run_server, unique_org
from tests.samples import reference_files

SEEN_WITHIN_MS = 1000  # "B shows each change within 1 s"
READY_MS = 30_000
XML = {"Content-Type": "application/xml"}
NS = {
    "bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
    "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI",
    "dc": "http://www.omg.org/spec/DD/20100524/DC",
}

Page = Any  # playwright's Page: the package is imported lazily (tests/fixtures/studio.py)

# Read-only probes of what a window shows, added to every page of the tests' contexts.
PROBES = """
window.probe = {
  registry: () => window.studio.modeler.get('elementRegistry'),
  get: (id) => window.probe.registry().get(id),
  has: (id) => !!window.probe.get(id),
  first: (type) => window.probe.registry().find((e) => e.type === type)?.id ?? null,
  named: (id, name) => (window.probe.get(id)?.businessObject.name ?? null) === name,
  at: (id, x, y) => { const e = window.probe.get(id); return !!e && e.x === x && e.y === y },
  connects: (id, source, target) => {
    const e = window.probe.get(id)
    return !!e && e.source?.id === source && e.target?.id === target
  },
  selected: () => window.studio.modeler.get('selection').get().map((e) => e.id),
  status: () => document.getElementById('status')?.dataset.status,
  sees: (user, id) =>
    !!document.querySelector(`.collab-cursor[data-user="${user}"]`) &&
    !!document.querySelector(`.collab-selection[data-user="${user}"][data-element="${id}"]`),
  element: (id) => {
    const e = window.probe.get(id)
    if (!e) return null
    return {
      type: e.type, name: e.businessObject.name ?? null, x: e.x ?? null, y: e.y ?? null,
      width: e.width ?? null, height: e.height ?? null,
      waypoints: e.waypoints ? e.waypoints.map((p) => [p.x, p.y]) : null,
      source: e.source?.id ?? null, target: e.target?.id ?? null,
      parent: e.parent?.id ?? null,
      label: e.label && !e.label.hidden
        ? [e.label.x, e.label.y, e.label.width, e.label.height] : null,
    }
  },
  shown: () => {
    const out = {}
    for (const e of window.probe.registry().getAll()) {
      if (e.parent && e.type !== 'label') out[e.id] = window.probe.element(e.id)
    }
    return out
  },
  renameAny: (name) => {
    const m = window.studio.modeler, registry = m.get('elementRegistry')
    const drawn = (e) => e.type !== 'label' && e.parent && !e.waypoints
    const target =
      registry.find((e) => drawn(e) && /(Task|Event|Gateway|SubProcess)$/.test(e.type)) ??
      registry.find(drawn)
    m.get('modeling').updateLabel(target, name)
    m.get('modeling').moveElements([target], { x: 7, y: 5 })
    return { id: target.id, x: target.x, y: target.y }
  },
}
"""


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with run_server(make_settings(tmp_path)) as live:
        yield live


class Editor:
    """One user's window on a diagram, with helpers reading bpmn-js's state in the page."""

    def __init__(self, name: str, page: Page, context: Any) -> None:
        self.name = name
        self.page = page
        self.context = context
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        # Errors the page caught and logged (Yjs logs an observer's exception and goes on).
        # The browser's own log of a refused socket or a failed fetch is the test's doing.
        text = message.text
        if message.type == "error" and not text.startswith(
            ("WebSocket connection", "Failed to load")
        ):
            self.errors.append(text)

    async def open(self, live: LiveServer, diagram_id: str, token: str) -> None:
        await self.page.goto(f"{live.url}/studio/{diagram_id}#token={token}")
        await self.page.wait_for_function(
            "['ready', 'failed'].includes(document.getElementById('app')?.dataset.state)",
            timeout=READY_MS,
        )
        state = await self.page.evaluate(
            "({state: document.getElementById('app')?.dataset.state,"
            " problem: window.studio.problem, error: window.studio.importError,"
            " errors: window.studio.errors})"
        )
        assert state["state"] == "ready", f"{self.name}: {state}"

    async def js(self, script: str, arg: Any = None) -> Any:
        return await self.page.evaluate(script, arg)

    async def probe(self, name: str, *args: Any) -> Any:
        """``window.probe[name](...args)`` in the page (see PROBES)."""
        return await self.page.evaluate(
            "([name, args]) => window.probe[name](...args)", [name, args]
        )

    async def element(self, element_id: str) -> dict[str, Any] | None:
        """What the canvas shows of one element: type, name, bounds or waypoints, ends."""
        return cast(dict[str, Any] | None, await self.probe("element", element_id))

    async def shown(self) -> dict[str, dict[str, Any]]:
        """Every shape and connection on the canvas (labels and roots left out), by id."""
        return cast(dict[str, dict[str, Any]], await self.probe("shown"))

    async def until(self, name: str, *args: Any, timeout_ms: int = SEEN_WITHIN_MS) -> float:
        """Wait until ``window.probe[name](...args)`` holds; the seconds it took."""
        # Null-safe: a predicate that throws (the page not there yet) ends the wait at once.
        return await self.wait_until(
            "([name, args]) => window.probe?.[name]?.(...args)", [name, args], timeout_ms=timeout_ms
        )

    async def wait_until(
        self, script: str, arg: Any = None, timeout_ms: int = SEEN_WITHIN_MS
    ) -> float:
        """Wait until ``script`` (a predicate on the page) holds; the seconds it took."""
        started = time.perf_counter()
        await self.page.wait_for_function(script, arg=arg, timeout=timeout_ms, polling=20)
        return time.perf_counter() - started

    async def select(self, element_id: str) -> None:
        """Click the element (inside its bottom right corner, clear of flows ending at it and of
        the context pad) until it is selected: a click right after another may be taken for
        part of a double click."""
        box = await self.page.locator(
            f'.djs-element[data-element-id="{element_id}"]'
        ).bounding_box()
        assert box is not None, f"{element_id} is not on {self.name}'s canvas"
        from playwright.async_api import TimeoutError as NotYet

        for _ in range(3):
            await self.page.mouse.click(box["x"] + box["width"] - 14, box["y"] + box["height"] - 14)
            try:
                await self.page.wait_for_function(
                    "(id) => window.probe.selected().join() === id", arg=element_id, timeout=600
                )
                return
            except NotYet:
                continue  # clicked too soon after the last click
        raise AssertionError(f"{self.name} could not select {element_id}")

    async def center_of(self, element_id: str) -> tuple[float, float]:
        box = await self.page.locator(
            f'.djs-element[data-element-id="{element_id}"]'
        ).bounding_box()
        assert box is not None, f"{element_id} is not on {self.name}'s canvas"
        return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


@pytest.fixture
async def editors(browser: Any) -> AsyncIterator[Any]:
    """``open(name)``: a new independent browser context (its own storage, socket, document)."""
    contexts: list[Any] = []

    async def open_context(name: str) -> Editor:
        context = await browser.new_context(viewport={"width": 1280, "height": 800})
        await context.add_init_script(PROBES)
        contexts.append(context)
        return Editor(name, await context.new_page(), context)

    try:
        yield open_context
    finally:
        for context in contexts:
            await context.close()


async def create_diagram(client: httpx.AsyncClient, *, title: str, xml: bytes | None = None) -> str:
    if xml is None:
        created = await client.post("/api/diagrams", json={"title": title})
    else:
        created = await client.post(
            "/api/diagrams", params={"title": title}, content=xml, headers=XML
        )
    assert created.status_code == 201, created.text
    return cast(str, created.json()["id"])


def seen(element_id: str) -> str:
    return f"!!window.studio.modeler.get('elementRegistry').get({element_id!r})"


def gone(element_id: str) -> str:
    return f"!window.studio.modeler.get('elementRegistry').get({element_id!r})"


async def saved_xml(
    client: httpx.AsyncClient,
    diagram_id: str,
    done: Any,
    timeout_s: float = 30,
    fresh: bool = False,
) -> bytes:
    """The stored XML (``GET /xml``; with ``fresh``, the live room's) once ``done(root)`` holds:
    with the default, once the snapshot has it."""
    params = {"fresh": 1} if fresh else {}
    async with asyncio.timeout(timeout_s):
        while True:
            response = await client.get(f"/api/diagrams/{diagram_id}/xml", params=params)
            assert response.status_code == 200, response.text
            root = etree.fromstring(response.content)
            if done(root):
                return response.content
            await asyncio.sleep(0.25)


def one(root: etree._Element, path: str, element_id: str) -> etree._Element | None:
    found = root.xpath(path, namespaces=NS, id=element_id)
    assert isinstance(found, list)
    nodes = [node for node in found if isinstance(node, etree._Element)]
    assert len(nodes) <= 1, f"{path} finds {len(nodes)} nodes for {element_id}"
    return nodes[0] if nodes else None


async def ada_on_a_new_diagram(
    live: LiveServer, editors: Any, title: str
) -> tuple[str, str, str, Editor]:
    """A new organization's user ``ada`` with a new diagram open in her window:
    ``(org, ada's token, diagram id, her window)``."""
    org = unique_org()
    token = live.token(user="ada", org=org)
    async with live.client(token) as client:
        diagram_id = await create_diagram(client, title=title)
    window = await editors("ada")
    await window.open(live, diagram_id, token)
    return org, token, diagram_id, window


async def rename_reaches_the_room(
    window: Editor, live: LiveServer, token: str, diagram_id: str, name: str
) -> None:
    """Rename the start event in ``window``; return once the live room holds the name."""
    start = cast(str, await window.probe("first", "bpmn:StartEvent"))
    await window.js(STEP, f"md.updateLabel(get({start!r}), {name!r})")
    async with live.client(token) as client:
        await saved_xml(
            client, diagram_id, lambda root: name.encode() in etree.tostring(root), fresh=True
        )


# --- two editors, live --------------------------------------------------------------------------


async def test_two_editors_see_each_others_edits_within_a_second(
    live: LiveServer, editors: Any, artifacts: Path
) -> None:
    org = unique_org()
    ada_token, bob_token = live.token(user="ada", org=org), live.token(user="bob", org=org)
    async with live.client(ada_token) as client:
        diagram_id = await create_diagram(client, title="Order handling")
        a, b = await editors("ada"), await editors("bob")
        await a.open(live, diagram_id, ada_token)
        await b.open(live, diagram_id, bob_token)
        start = cast(str, await a.probe("first", "bpmn:StartEvent"))
        timings: dict[str, float] = {}

        # A creates a task from the palette: pick it, drop it on the canvas.
        await a.page.click('.djs-palette [data-action="create.task"]')
        sx, sy = await a.center_of(start)
        await a.page.mouse.move(sx + 150, sy + 20)
        await a.page.mouse.move(sx + 200, sy + 20, steps=5)
        await a.page.mouse.click(sx + 200, sy + 20)
        task = cast(str, await a.probe("first", "bpmn:Task"))
        assert task, "A's palette made no task"
        timings["create"] = await b.until("has", task)

        # ... names it (bpmn-js opens the label editor on a new task; else a double click does).
        if not await a.page.locator(".djs-direct-editing-parent").is_visible():
            await a.page.dblclick(f'.djs-element[data-element-id="{task}"]')
        await a.page.keyboard.type("Check the order")
        await a.page.mouse.click(sx + 100, sy + 250)  # click away: the edit is done
        timings["rename"] = await b.until("named", task, "Check the order")

        # ... moves it by dragging.
        before = await a.element(task)
        assert before is not None
        tx, ty = await a.center_of(task)
        await a.page.mouse.move(tx, ty)
        await a.page.mouse.down()
        await a.page.mouse.move(tx + 60, ty + 90, steps=8)
        await a.page.mouse.up()
        moved = await a.element(task)
        assert moved is not None and (moved["x"], moved["y"]) != (before["x"], before["y"])
        timings["move"] = await b.until("at", task, moved["x"], moved["y"])

        # ... and connects the start event to it with the context pad's connect tool.
        await a.page.click(f'.djs-element[data-element-id="{start}"]')
        await a.page.click('.djs-context-pad [data-action="connect"]')
        tx, ty = await a.center_of(task)
        await a.page.mouse.move(tx - 10, ty, steps=5)
        await a.page.mouse.click(tx, ty)
        flow = cast(str, await a.probe("first", "bpmn:SequenceFlow"))
        assert flow, "A's connect made no sequence flow"
        timings["connect"] = await b.until("connects", flow, start, task)
        assert await b.element(flow) == await a.element(flow)

        # A's pointer and selection show in B's window.
        await a.select(task)
        await a.page.mouse.move(tx + 120, ty - 60, steps=4)
        timings["presence"] = await b.until("sees", "ada", task)
        assert "ada" in await b.page.locator("#people li").all_inner_texts()
        assert await a.shown() == await b.shown()
        await a.page.screenshot(path=str(artifacts / "two-editors-ada.png"))
        await b.page.screenshot(path=str(artifacts / "two-editors-bob.png"))

        # B names the start event (double click, type, click away) ...
        bx, by = await b.center_of(start)
        await b.page.mouse.dblclick(bx, by)
        await b.page.locator(".djs-direct-editing-parent").wait_for(state="visible", timeout=2000)
        await b.page.keyboard.type("Order received")
        await b.page.mouse.click(bx + 300, by + 400)
        timings["rename by B"] = await a.until("named", start, "Order received")

        # ... and deletes the task from its context pad; A sees it and its flow go.
        await b.select(task)
        await b.page.click('.djs-context-pad [data-action="delete"]')
        timings["delete"] = await a.wait_until(
            "([task, flow]) => !window.probe.has(task) && !window.probe.has(flow)", [task, flow]
        )
        final = await a.shown()
        assert final == await b.shown()
        assert set(final) == {start}
        assert final[start]["name"] == "Order received"

        # After the snapshot, the stored XML is that final state: the start event with B's
        # name, no task, no flow, in a version the room wrote.
        def final_state(root: etree._Element) -> bool:
            named = one(root, "//bpmn:startEvent[@id=$id]", start)
            return (
                one(root, "//bpmn:task[@id=$id]", task) is None
                and named is not None
                and named.get("name") == "Order received"
            )

        stored = etree.fromstring(await saved_xml(client, diagram_id, final_state))
        assert one(stored, "//bpmn:sequenceFlow[@id=$id]", flow) is None
        assert one(stored, "//bpmndi:BPMNShape[@bpmnElement=$id]", task) is None
        shape = one(stored, "//bpmndi:BPMNShape[@bpmnElement=$id]/dc:Bounds", start)
        assert shape is not None
        bounds = [float(shape.get(name, "nan")) for name in ("x", "y", "width", "height")]
        drawn = final[start]
        assert bounds == [drawn["x"], drawn["y"], drawn["width"], drawn["height"]]
        versions = (await client.get(f"/api/diagrams/{diagram_id}/versions")).json()["data"]
        assert len(versions) >= 2
    assert not a.errors and not b.errors, a.errors + b.errors
    print("seen in the other window after (s):", {k: round(v, 3) for k, v in timings.items()})
    assert all(v <= SEEN_WITHIN_MS / 1000 for v in timings.values()), timings


async def test_an_editor_offline_edits_and_both_converge_on_reconnect(
    live: LiveServer, editors: Any, artifacts: Path
) -> None:
    org = unique_org()
    ada_token, bob_token = live.token(user="ada", org=org), live.token(user="bob", org=org)
    async with live.client(ada_token) as client:
        diagram_id = await create_diagram(client, title="Offline")
    a, b = await editors("ada"), await editors("bob")
    await a.open(live, diagram_id, ada_token)
    await b.open(live, diagram_id, bob_token)
    start = cast(str, await a.probe("first", "bpmn:StartEvent"))

    await b.context.set_offline(True)
    await b.wait_until("window.probe.status() === 'offline'", timeout_ms=10_000)

    # B, offline, adds a task and names the start event; A, online, moves the start event.
    task = cast(str, await b.js(OFFLINE_EDITS))
    await a.js(
        "(id) => window.studio.modeler.get('modeling')"
        ".moveElements([window.probe.get(id)], { x: 0, y: 120 })",
        start,
    )
    moved = await a.element(start)
    assert moved is not None
    # B's edits stay with B while it is offline; A's do not reach B.
    assert await b.probe("status") == "offline"
    assert not await a.probe("has", task)
    assert not await a.probe("named", start, "Renamed offline")
    assert not await b.probe("at", start, moved["x"], moved["y"])
    await b.page.screenshot(path=str(artifacts / "offline-bob.png"))

    await b.context.set_offline(False)
    await b.wait_until("window.probe.status() === 'connected'", timeout_ms=15_000)
    await a.until("has", task, timeout_ms=5000)
    await a.until("named", start, "Renamed offline", timeout_ms=5000)
    await b.until("at", start, moved["x"], moved["y"], timeout_ms=5000)
    assert await a.shown() == await b.shown()
    assert not a.errors and not b.errors, a.errors + b.errors


OFFLINE_EDITS = """() => {
  const m = window.studio.modeler, modeling = m.get('modeling')
  const root = m.get('canvas').getRootElement()
  const task = modeling.createShape({ type: 'bpmn:Task' }, { x: 420, y: 300 }, root)
  modeling.updateLabel(task, 'Made offline')
  modeling.updateLabel(window.probe.get(window.probe.first('bpmn:StartEvent')), 'Renamed offline')
  return task.id
}"""


# --- structure: pools, lanes, subprocesses, types, undo -------------------------------------------

# Each step is one bpmn-js modeling call in A's window (what a palette, context pad or replace
# menu does underneath); `window.ids` keeps the ids the steps made.
STRUCTURAL_STEPS = {
    "create a task": "ids.t1 = add('bpmn:Task', 400, 120)",
    "create another": "ids.t2 = add('bpmn:Task', 600, 120)",
    "connect them": "ids.flow = md.connect(get(ids.t1), get(ids.t2)).id",
    "resize": "const t = get(ids.t1); md.resizeShape(t, { ...t, width: 160, height: 110 })",
    "bend the flow": (
        "const w = get(ids.flow).waypoints; md.updateWaypoints(get(ids.flow), [w[0],"
        " { x: w[0].x + 20, y: w[0].y + 80 }, { x: w[1].x - 20, y: w[0].y + 80 }, w.at(-1)])"
    ),
    "reconnect its start": (
        "const s = get(window.probe.first('bpmn:StartEvent'));"
        " md.reconnectStart(get(ids.flow), s, { x: s.x + 18, y: s.y + 18 })"
    ),
    "change a type": "ids.t2 = replace.replaceElement(get(ids.t2), { type: 'bpmn:UserTask' }).id",
    "create a subprocess": "ids.sub = add('bpmn:SubProcess', 500, 400, { isExpanded: true })",
    "move a task into it": (
        "const t = get(ids.t2), s = get(ids.sub);"
        " md.moveElements([t], { x: s.x + 100 - t.x, y: s.y + 60 - t.y }, s)"
    ),
    "add a pool": "ids.pool = add('bpmn:Participant', 500, 300)",
    "split it in lanes": "md.splitLane(get(ids.pool), 2)",
    "name the pool": "md.updateLabel(get(ids.pool), 'Shop')",
    "delete the subprocess": "md.removeElements([get(ids.sub)])",
}
STEP = """(code) => {
  const m = window.studio.modeler, md = m.get('modeling'), get = (id) => window.probe.get(id)
  const root = m.get('canvas').getRootElement(), ids = (window.ids ??= {})
  const add = (type, x, y, more = {}) => md.createShape({ type, ...more }, { x, y }, root).id
  const replace = m.get('bpmnReplace')
  new Function('m', 'md', 'get', 'add', 'replace', 'ids', code)(m, md, get, add, replace, ids)
}"""


async def same_view(a: Editor, b: Editor, what: str, timeout_s: float = 3) -> None:
    """Wait until both windows show the same shapes and connections."""
    async with asyncio.timeout(timeout_s):
        while (shown := await a.shown()) != await b.shown():  # noqa: ASYNC110 - two pages
            await asyncio.sleep(0.05)
    assert shown, what


async def test_structural_edits_cross_and_undo_stays_with_its_author(
    live: LiveServer, editors: Any
) -> None:
    org = unique_org()
    ada_token, bob_token = live.token(user="ada", org=org), live.token(user="bob", org=org)
    async with live.client(ada_token) as client:
        diagram_id = await create_diagram(client, title="Structure")
    a, b = await editors("ada"), await editors("bob")
    await a.open(live, diagram_id, ada_token)
    await b.open(live, diagram_id, bob_token)
    for what, code in STRUCTURAL_STEPS.items():
        await a.js(STEP, code)
        await same_view(a, b, what)
    view = await a.shown()
    assert any(e["type"] == "bpmn:Participant" and e["name"] == "Shop" for e in view.values())
    assert sum(e["type"] == "bpmn:Lane" for e in view.values()) == 2
    # The user task went with the subprocess it was moved into.
    assert not any(e["type"] in ("bpmn:SubProcess", "bpmn:UserTask") for e in view.values())

    # B names the start event; A's undo takes back A's last edits only, redo brings one back.
    start = cast(str, await b.probe("first", "bpmn:StartEvent"))
    await b.js(STEP, f"md.updateLabel(get({start!r}), 'Bob was here')")
    await a.until("named", start, "Bob was here")
    await a.js("window.studio.binding.undo()")  # the subprocess is back
    await same_view(a, b, "undo")
    back = {e["type"] for e in (await b.shown()).values()}
    assert {"bpmn:SubProcess", "bpmn:UserTask"} <= back
    await a.js("window.studio.binding.undo()")  # the pool has no name again
    await same_view(a, b, "second undo")
    await a.js("window.studio.binding.redo()")
    await same_view(a, b, "redo")
    assert (await b.element(start) or {}).get("name") == "Bob was here"

    # A window opened now (importing the XML the server renders) shows the same.
    await b.page.reload()
    await b.open(live, diagram_id, bob_token)
    await same_view(a, b, "after reload")
    assert not a.errors and not b.errors, a.errors + b.errors


# --- every MIWG reference diagram ----------------------------------------------------------------


@pytest.mark.parametrize("path", reference_files(), ids=lambda path: path.stem)
async def test_each_miwg_reference_diagram_opens_and_an_edit_crosses(
    live: LiveServer, editors: Any, path: Path
) -> None:
    org = unique_org()
    ada_token, bob_token = live.token(user="ada", org=org), live.token(user="bob", org=org)
    async with live.client(ada_token) as client:
        diagram_id = await create_diagram(client, title=path.stem, xml=path.read_bytes())
        a, b = await editors("ada"), await editors("bob")
        await a.open(live, diagram_id, ada_token)
        await b.open(live, diagram_id, bob_token)
        for editor in (a, b):
            assert await editor.js("window.studio.importError ?? null") is None
            drawn = await editor.shown()
            assert drawn, f"{path.stem}: nothing drawn in {editor.name}'s window"
        assert await a.shown() == await b.shown()

        warnings = await a.js("window.studio.importWarnings")
        name = f"edited {path.stem}"
        await a.js("window.studio.binding.written = []")
        edit = await a.probe("renameAny", name)
        # The document got exactly that edit, in two transactions (rename, move): the name,
        # then geometry (and a lane's list of its nodes), nothing else.
        rename, move = await a.js("window.studio.binding.written")
        assert rename["elements"]["changed"] == {edit["id"]: ["attrs"]}, rename
        label_only = {tuple(fields) for fields in rename["di"]["changed"].values()}
        assert label_only <= {("label",)}, rename
        assert set(map(tuple, move["elements"]["changed"].values())) <= {("refs",)}, move
        assert {f for fs in move["di"]["changed"].values() for f in fs} <= {
            "bounds",
            "waypoints",
            "label",
        }, move
        for written in (rename, move):
            for root in ("elements", "di"):
                assert not written[root]["added"] and not written[root]["removed"], written
        await b.until("named", edit["id"], name, timeout_ms=3000)
        await b.until("at", edit["id"], edit["x"], edit["y"], timeout_ms=3000)
        assert await a.shown() == await b.shown()
        fresh = await client.get(f"/api/diagrams/{diagram_id}/xml", params={"fresh": 1})
        assert fresh.status_code == 200
        assert name.encode() in fresh.content
        # A window opened now, importing the XML the server renders from the document the
        # two wrote, shows what they show.
        c = await editors("cy")
        await c.open(live, diagram_id, live.token(user="cy", org=org))
        assert await c.shown() == await a.shown()
    assert not a.errors and not b.errors and not c.errors, a.errors + b.errors + c.errors
    print(f"{path.stem}: {len(warnings)} import warnings {warnings[:3]}")


# --- roles and refusals --------------------------------------------------------------------------


async def test_a_viewer_watches_read_only(live: LiveServer, editors: Any) -> None:
    org = unique_org()
    ada_token = live.token(user="ada", org=org)
    vic_token = live.token(user="vic", org=org, role="viewer")
    async with live.client(ada_token) as client:
        diagram_id = await create_diagram(client, title="Watched")
    a, v = await editors("ada"), await editors("vic")
    await a.open(live, diagram_id, ada_token)
    await v.open(live, diagram_id, vic_token)
    assert await v.page.locator("#role").is_visible()
    assert await v.page.locator(".djs-palette").count() == 0  # bpmn-js's viewer: no tools
    start = cast(str, await a.probe("first", "bpmn:StartEvent"))
    await a.js(STEP, f"md.updateLabel(get({start!r}), 'Watched live')")
    await v.until("named", start, "Watched live")
    assert "vic" in await a.page.locator("#people li").all_inner_texts()
    assert not a.errors and not v.errors, a.errors + v.errors


async def test_an_expired_room_token_is_renewed_and_the_room_rejoined(
    live: LiveServer, editors: Any
) -> None:
    _, ada_token, diagram_id, a = await ada_on_a_new_diagram(live, editors, "Tokens")

    # The next room token the page gets is refused (4401), as an expired one is.
    async def forge(route: Any) -> None:
        response = await route.fetch()
        join = await response.json()
        header, claims, signature = join["token"].split(".")
        join["token"] = f"{header}.{claims}.{signature[::-1]}"
        await route.fulfill(response=response, json=join)

    await a.page.route("**/collaborate", forge, times=1)
    await a.js("window.studio.connection.provider.ws.close()")  # the connection drops
    await a.wait_until(
        "document.getElementById('problem')?.dataset.code === '4401'", timeout_ms=10_000
    )
    await a.wait_until("window.probe.status() === 'connected'", timeout_ms=10_000)
    assert "token" in await a.page.locator("#problem").inner_text()
    # ... and the room works again.
    await rename_reaches_the_room(a, live, ada_token, diagram_id, "After renewal")
    assert not a.errors, a.errors


async def test_a_missing_diagram_says_so(live: LiveServer, editors: Any) -> None:
    a = await editors("ada")
    await a.page.goto(
        f"{live.url}/studio/00000000-0000-4000-8000-000000000000#token={live.token(user='ada')}"
    )
    await a.wait_until(
        "document.getElementById('app')?.dataset.state === 'failed'", timeout_ms=10_000
    )
    problem = a.page.locator("#problem")
    assert "does not exist" in await problem.inner_text()
    assert await problem.get_attribute("data-code") == "404"
    assert await problem.locator("button").inner_text() == "Back to the diagrams"


async def test_a_forbidden_room_says_so(tmp_path: Path, editors: Any) -> None:
    settings = make_settings(tmp_path)
    settings.ws.allowed_origins = ["https://studio.example"]  # not the page's origin
    async with run_server(settings) as live:
        org = unique_org()
        ada_token = live.token(user="ada", org=org)
        async with live.client(ada_token) as client:
            diagram_id = await create_diagram(client, title="Elsewhere")
        a = await editors("ada")
        await a.page.goto(f"{live.url}/studio/{diagram_id}#token={ada_token}")
        await a.wait_until(
            "document.getElementById('problem')?.dataset.code === '4403'", timeout_ms=10_000
        )
        assert "forbidden" in await a.page.locator("#problem").inner_text()
        assert await a.probe("status") == "closed"


async def test_a_reset_document_asks_to_reload_and_the_reload_rejoins(
    live: LiveServer, editors: Any
) -> None:
    org, ada_token, diagram_id, a = await ada_on_a_new_diagram(live, editors, "Reset")

    # What a save does in the rare case it must replace the document (docs/protocol.md):
    # a new epoch, and the old epoch's room told so on every worker.
    services = live.app.state.services
    epoch = await services.store.bump_epoch(org, diagram_id)
    old_room = room_key(org, diagram_id, epoch - 1)
    await services.fanout.reset(old_room, services.rooms.room(old_room))

    await a.wait_until(
        "document.getElementById('problem')?.dataset.code === '4409'", timeout_ms=10_000
    )
    assert await a.probe("status") == "closed"
    assert "reset" in await a.page.locator("#problem span").inner_text()
    button = a.page.locator("#problem button")
    assert await button.inner_text() == "Reload"
    async with a.page.expect_navigation():
        await button.click()
    await a.page.wait_for_function(
        "document.getElementById('app')?.dataset.state === 'ready'", timeout=READY_MS
    )
    # The reload kept the sign-in, joined the new epoch's room, and edits reach it.
    await rename_reaches_the_room(a, live, ada_token, diagram_id, "After reset")
    assert services.rooms.room(room_key(org, diagram_id, epoch)) is not None
    assert not a.errors, a.errors


# --- the list and the history --------------------------------------------------------------------


async def test_the_list_creates_opens_renames_searches_and_deletes(
    live: LiveServer, editors: Any
) -> None:
    org = unique_org()
    ada_token = live.token(user="ada", org=org)
    async with live.client(ada_token) as client:
        await create_diagram(client, title="Invoice approval")
    a = await editors("ada")
    page = a.page
    await page.goto(f"{live.url}/studio/#token={ada_token}")
    await page.wait_for_function("document.getElementById('app')?.dataset.state === 'list-ready'")
    assert await page.locator("#diagrams tbody tr").count() == 1

    # Create: the new diagram opens in the editor.
    await page.fill("#new-title", "Order handling")
    await page.click("#create button")
    await page.wait_for_url(f"{live.url}/studio/*")
    await page.wait_for_function("document.getElementById('app')?.dataset.state === 'ready'")
    assert await page.locator("#title").inner_text() == "Order handling"

    # Back to the list: rename (a prompt), search, delete (a confirmation).
    await page.click("a.back")
    await page.wait_for_function("document.getElementById('app')?.dataset.state === 'list-ready'")
    row = page.locator("#diagrams tbody tr", has_text="Order handling")
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept("Order fulfilment")))
    await row.locator("[data-action=rename]").click()
    await page.locator("#diagrams tbody tr", has_text="Order fulfilment").wait_for()
    await page.fill("#q", "fulfil")
    await page.click("#search button")
    await page.wait_for_function("document.querySelectorAll('#diagrams tbody tr').length === 1")
    row = page.locator("#diagrams tbody tr", has_text="Order fulfilment")
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await row.locator("[data-action=delete]").click()
    await row.wait_for(state="detached")
    async with live.client(ada_token) as client:
        titles = [d["title"] for d in (await client.get("/api/diagrams")).json()["data"]]
    assert titles == ["Invoice approval"]
    assert not a.errors, a.errors


async def test_restoring_a_version_reaches_every_window(live: LiveServer, editors: Any) -> None:
    org = unique_org()
    ada_token, bob_token = live.token(user="ada", org=org), live.token(user="bob", org=org)
    async with live.client(ada_token) as client:
        diagram_id = await create_diagram(client, title="Restore")
        a, b = await editors("ada"), await editors("bob")
        await a.open(live, diagram_id, ada_token)
        await b.open(live, diagram_id, bob_token)
        start = cast(str, await a.probe("first", "bpmn:StartEvent"))
        await a.js(STEP, f"md.updateLabel(get({start!r}), 'Version two')")
        await b.until("named", start, "Version two")
        # The room's snapshot makes version 2; the page shows it as saved.
        await a.wait_until(
            "document.getElementById('saved')?.dataset.version === '2'", timeout_ms=30_000
        )

        await a.page.click("#history-toggle")
        version_1 = a.page.locator('#versions li[data-rev="1"]')
        await version_1.locator("button", has_text="Restore").click()
        # Version 1's content comes back as version 3, folded into the live room: both
        # windows lose the name without reloading.
        await a.until("named", start, None, timeout_ms=10_000)
        await b.until("named", start, None, timeout_ms=10_000)
        await a.wait_until(
            "document.getElementById('saved')?.dataset.version === '3'", timeout_ms=10_000
        )
        summary = (await client.get(f"/api/diagrams/{diagram_id}/summary")).json()
        assert summary["version"] >= 3
    assert await a.shown() == await b.shown()
    assert not a.errors and not b.errors, a.errors + b.errors
