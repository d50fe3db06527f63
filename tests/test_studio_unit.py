"""The studio without a browser: its node:test suites against documents the server made, its
mirror of the schema's key names, and how the server serves its built files.

The node suites (``studio/test/*.test.js``) get, in ``$STUDIO_FIXTURES``, every MIWG reference
diagram as the server holds it: the XML ``render`` writes and the Yjs update of the CRDT
document ``load`` made, so they check the binding against the server's own reading of each file.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from bpmn.document import KEYS, load
from bpmn.parse import parse
from bpmn.render import render
from server.studio import IMMUTABLE, REVALIDATE, studio_routes
from tests.fixtures.studio import STUDIO
from tests.samples import reference_files


def write_fixtures(folder: Path) -> int:
    files = reference_files()
    for path in files:
        model = parse(path.read_bytes())
        fixture = {
            "name": path.stem,
            "xml": render(model).decode("utf-8"),
            "update": base64.b64encode(load(model).get_update()).decode("ascii"),
        }
        (folder / f"{path.stem}.json").write_text(json.dumps(fixture), encoding="utf-8")
    return len(files)


def test_node_suites_pass_on_the_servers_documents(studio_packages: str, tmp_path: Path) -> None:
    assert write_fixtures(tmp_path) >= 20
    tests = sorted(str(p.relative_to(STUDIO)) for p in (STUDIO / "test").glob("*.test.js"))
    result = subprocess.run(
        [studio_packages, "--test", *tests],
        cwd=STUDIO,
        env={"PATH": "/usr/bin:/bin", "STUDIO_FIXTURES": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-6000:]
    assert "# fail 0" in report and "# skipped 0" in report, report[-2000:]


def test_the_studio_mirrors_the_schemas_key_names(studio_packages: str) -> None:
    script = "import('./src/schema.js').then((m) => console.log(JSON.stringify(m.KEYS)))"
    result = subprocess.run(
        [studio_packages, "--input-type=module", "-e", script],
        cwd=STUDIO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout) == dict(KEYS)


# --- server/studio.py -------------------------------------------------------------------------


def client_for(folder: Path) -> httpx.AsyncClient:
    app = Starlette(routes=studio_routes(folder))
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://studio", follow_redirects=True
    )


@pytest.fixture
def built(tmp_path: Path) -> Path:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>studio</title>")
    (dist / "assets" / "index-abc123.js").write_text("console.log(1)")
    (dist / "assets" / "index-abc123.css").write_text("body{}")
    (dist / "assets" / "bpmn-x1.woff2").write_bytes(b"wOF2")
    (tmp_path / "secret.txt").write_text("not for you")  # beside the build, not in it
    return dist


@pytest.mark.parametrize("path", ["/studio", "/studio/", "/studio/4f2a0b6e-diagram-id"])
async def test_pages_answer_the_index_never_cached(built: Path, path: str) -> None:
    async with client_for(built) as client:
        response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == REVALIDATE
    assert "<title>studio</title>" in response.text


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("index-abc123.js", "text/javascript; charset=utf-8"),
        ("index-abc123.css", "text/css; charset=utf-8"),
        ("bpmn-x1.woff2", "font/woff2"),
    ],
)
async def test_hashed_assets_are_cached_for_good(built: Path, name: str, media_type: str) -> None:
    async with client_for(built) as client:
        response = await client.get(f"/studio/assets/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert response.headers["cache-control"] == IMMUTABLE
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    ["/studio/assets/missing.js", "/studio/assets/..%2F..%2Fsecret.txt", "/studio/..%2Fsecret.txt"],
)
async def test_nothing_outside_the_build_is_served(built: Path, path: str) -> None:
    async with client_for(built) as client:
        response = await client.get(path)
    assert "not for you" not in response.text
    assert response.status_code == 404 or "<title>studio</title>" in response.text


async def test_without_a_build_the_page_says_how_to_make_one(tmp_path: Path) -> None:
    async with client_for(tmp_path / "dist") as client:
        response = await client.get("/studio/some-diagram")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/html")
    assert "make studio" in response.text
    assert "npm ci &amp;&amp; npm run build" in response.text
