"""Thumbnails end to end: a real server draws every MIWG reference file after it is
created, and serves it at ``/api/diagrams/{id}/thumbnail.svg`` with its version as ETag.

The shapes are counted straight from the source file with lxml, not through the
BPMN model the thumbnail is drawn from, so a shape the model loses is caught.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from lxml import etree

from persistence.outbox import OutboxBacklog
from tests.fixtures.live_server import LiveServer, make_settings, run_server
from tests.fixtures.postgres import admin_dsn, create_database, drop_database, dsn_for_database
from tests.samples import reference_files

DI = "{http://www.omg.org/spec/BPMN/20100524/DI}"
DC = "{http://www.omg.org/spec/DD/20100524/DC}"
SVG = "{http://www.w3.org/2000/svg}"
XML = {"Content-Type": "application/xml"}
_SAFE = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
_WAIT_S = 30.0


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveServer]:
    """A server whose processor polls often, on a database of its own (a processor of
    another test's server must not take these events: its blob folder is another)."""
    database_url, database = None, None
    if request.param == "postgres":
        database = await create_database()
        database_url = dsn_for_database(admin_dsn(), database)
    settings = make_settings(
        tmp_path_factory.mktemp(f"thumbs-{request.param}"), database_url=database_url
    )
    settings.outbox.poll_interval_s = 0.05
    try:
        async with run_server(settings) as server:
            yield server
    finally:
        if database is not None:
            await drop_database(database)


async def thumbnail(
    client: httpx.AsyncClient, diagram_id: str, *, version: int = 1
) -> httpx.Response:
    """The thumbnail once it shows ``version`` (the processor draws it after the commit)."""
    async with asyncio.timeout(_WAIT_S):
        while True:
            response = await client.get(f"/api/diagrams/{diagram_id}/thumbnail.svg")
            if response.status_code == 200 and response.headers["etag"] == f'"{version}"':
                return response
            assert response.status_code in (200, 404), response.text
            # Drawn by the server's background processor: nothing to await but the API.
            await asyncio.sleep(0.05)


def drawn_shapes(svg: bytes) -> list[str]:
    root = etree.fromstring(svg, _SAFE)
    assert root.tag == f"{SVG}svg"
    return sorted(
        node.get("data-element", "") for node in root.iter() if node.get("class") == "shape"
    )


def source_shapes(xml: bytes) -> list[str]:
    """``bpmnElement`` of every BPMNShape with usable bounds in the file's first diagram.

    A thumbnail is one picture: of a file with several diagrams (C.4.0, C.5.0) it
    shows the first, as the reader of ``bpmn.thumbnail`` documents.
    """
    root = etree.fromstring(xml, _SAFE)
    diagram = root.find(f"{DI}BPMNDiagram")
    assert diagram is not None
    plane = diagram.find(f"{DI}BPMNPlane")
    assert plane is not None
    found = []
    for shape in plane.iter(f"{DI}BPMNShape"):
        bounds = shape.find(f"{DC}Bounds")
        if bounds is not None and _usable(bounds):
            found.append(shape.get("bpmnElement", ""))
    return sorted(found)


def _usable(bounds: etree._Element) -> bool:
    try:
        values = [float(bounds.get(name, "")) for name in ("x", "y", "width", "height")]
    except ValueError:
        return False
    return all(math.isfinite(value) for value in values)


async def create(client: httpx.AsyncClient, xml: bytes, title: str = "Thumbnail") -> str:
    created = await client.post("/api/diagrams", params={"title": title}, content=xml, headers=XML)
    assert created.status_code == 201, created.text
    diagram_id: str = created.json()["id"]
    return diagram_id


@pytest.mark.parametrize("path", reference_files(), ids=lambda p: p.name)
async def test_every_reference_file_gets_a_thumbnail_with_each_shape(
    live: LiveServer, path: Path
) -> None:
    xml = path.read_bytes()
    async with live.user_client() as client:
        diagram_id = await create(client, xml, path.stem)
        response = await thumbnail(client, diagram_id)

        assert response.headers["content-type"] == "image/svg+xml"
        expected = source_shapes(xml)
        assert expected  # every reference file has DI shapes
        assert drawn_shapes(response.content) == expected
        summary = (await client.get(f"/api/diagrams/{diagram_id}/summary")).json()
        assert summary["thumbnailUrl"] == f"/api/diagrams/{diagram_id}/thumbnail.svg?v=1"


def test_the_corpus_has_its_21_reference_files() -> None:
    assert len(reference_files()) == 21


async def test_etag_is_the_thumbnails_version_and_304_when_unchanged(live: LiveServer) -> None:
    first, second = reference_files()[0].read_bytes(), reference_files()[1].read_bytes()
    async with live.user_client() as client:
        diagram_id = await create(client, first)
        url = f"/api/diagrams/{diagram_id}/thumbnail.svg"
        drawn = await thumbnail(client, diagram_id)
        assert drawn.headers["etag"] == '"1"'

        unchanged = await client.get(url, headers={"If-None-Match": '"1"'})
        assert unchanged.status_code == 304
        assert unchanged.headers["etag"] == '"1"'
        assert unchanged.content == b""

        saved = await client.put(
            f"/api/diagrams/{diagram_id}", content=second, headers={**XML, "If-Match": '"1"'}
        )
        assert saved.status_code == 200, saved.text
        redrawn = await thumbnail(client, diagram_id, version=2)
        assert drawn_shapes(redrawn.content) == source_shapes(second)
        changed = await client.get(url, headers={"If-None-Match": '"1"'})
        assert changed.status_code == 200
        assert changed.headers["etag"] == '"2"'
        assert (await client.get(url, headers={"If-None-Match": '"2"'})).status_code == 304


async def test_another_organization_cannot_see_a_thumbnail(live: LiveServer) -> None:
    async with live.user_client() as owner, live.user_client() as stranger:
        diagram_id = await create(owner, reference_files()[0].read_bytes())
        await thumbnail(owner, diagram_id)
        response = await stranger.get(f"/api/diagrams/{diagram_id}/thumbnail.svg")
        assert response.status_code == 404
        assert response.json()["code"] == "diagram_not_found"


async def test_a_deleted_diagram_has_no_thumbnail(live: LiveServer) -> None:
    async with live.user_client() as client:
        diagram_id = await create(client, reference_files()[0].read_bytes())
        await thumbnail(client, diagram_id)
        assert (await client.delete(f"/api/diagrams/{diagram_id}")).status_code == 204
        response = await client.get(f"/api/diagrams/{diagram_id}/thumbnail.svg")
        assert response.status_code == 404
        assert response.json()["code"] == "diagram_not_found"


async def test_no_thumbnail_yet_is_a_404_problem(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    settings.outbox.enabled = False  # nothing draws it, so "not yet" holds for sure
    async with run_server(settings) as server, server.user_client() as client:
        diagram_id = await create(client, reference_files()[0].read_bytes())
        response = await client.get(f"/api/diagrams/{diagram_id}/thumbnail.svg")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "thumbnail_not_found"
        summary = (await client.get(f"/api/diagrams/{diagram_id}/summary")).json()
        assert summary["thumbnailUrl"] is None
        assert server.app.state.services.outbox is None


@pytest.mark.postgres
async def test_two_workers_share_the_outbox(tmp_path: Path) -> None:
    """Two servers on one database and one blob folder, as two workers behind a
    balancer: every diagram gets its thumbnail, each event is handled once."""
    database = await create_database()
    try:
        settings = make_settings(tmp_path, database_url=dsn_for_database(admin_dsn(), database))
        settings.outbox.poll_interval_s = 0.05
        async with run_server(settings) as one, run_server(settings) as two:
            xml = reference_files()[0].read_bytes()
            token = one.token(org="org-two-workers")
            async with one.client(token) as writer, two.client(token) as reader:
                ids = await asyncio.gather(*(create(writer, xml) for _ in range(24)))
                for diagram_id in ids:
                    await thumbnail(reader, diagram_id)
            processors = [s.app.state.services.outbox for s in (one, two)]
            async with asyncio.timeout(_WAIT_S):
                # A thumbnail shows just before its event is marked delivered.
                while sum(p.metrics.completed for p in processors) < len(ids):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            assert sum(p.metrics.completed for p in processors) == len(ids)
            assert sum(p.metrics.parked + p.metrics.retried for p in processors) == 0
            assert await processors[0].backlog() == OutboxBacklog(pending=0, parked=0)
    finally:
        await drop_database(database)
