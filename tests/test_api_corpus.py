"""Real files from other tools through the API: stored and returned byte for byte."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from persistence.content import blob_key_for
from persistence.s3_blobs import S3BlobStore
from tests.fixtures.live_server import LiveServer, make_settings, run_server
from tests.samples import diagram_of_size, reference_files

MiB = 1024 * 1024
XML = {"Content-Type": "application/xml"}


@pytest.mark.parametrize("path", reference_files(), ids=lambda p: p.name)
async def test_reference_file_round_trips_byte_identical(api: LiveServer, path: Path) -> None:
    original = path.read_bytes()
    async with api.user_client() as client:
        created = await client.post(
            "/api/diagrams", params={"title": path.stem}, content=original, headers=XML
        )
        assert created.status_code == 201, created.text
        diagram_id = created.json()["id"]
        assert created.json()["elementCount"] > 0
        url = f"/api/diagrams/{diagram_id}"

        assert (await client.get(url + "/xml")).content == original

        saved = await client.put(url, content=original, headers={**XML, "If-Match": '"1"'})
        assert saved.status_code == 200, saved.text
        assert saved.json()["version"] == 2
        assert (await client.get(url + "/xml")).content == original
        assert (await client.get(url + "/versions/1")).content == original

        listed = (await client.get("/api/diagrams")).json()["data"]
        assert [d["id"] for d in listed] == [diagram_id]


def test_reference_corpus_is_present() -> None:
    assert len(reference_files()) >= 20


async def test_a_large_diagram_goes_through_the_blob_store(api: LiveServer) -> None:
    big = diagram_of_size(3 * MiB)
    async with api.user_client() as client:
        created = await client.post(
            "/api/diagrams", params={"title": "Big"}, content=big, headers=XML
        )
        assert created.status_code == 201, created.text
        diagram_id = created.json()["id"]
        blob = api.settings.blob_folder / Path(blob_key_for(diagram_id, 1))
        assert blob.read_bytes() == big
        download = await client.get(f"/api/diagrams/{diagram_id}/xml")
        assert download.content == big
        assert download.headers["content-length"] == str(len(big))


@pytest.mark.postgres
@pytest.mark.s3
@pytest.mark.redis
async def test_distributed_setup_stores_large_xml_in_s3(
    tmp_path: Path, postgres_dsn: str, s3_endpoint: str, redis_url: str
) -> None:
    bucket = f"bpmn-{uuid.uuid4().hex[:10]}"
    settings = make_settings(
        tmp_path,
        database_url=postgres_dsn,
        redis_url=redis_url,
        s3_endpoint=s3_endpoint,
        s3_bucket=bucket,
    )
    big = diagram_of_size(3 * MiB)
    async with run_server(settings) as live, live.user_client() as client:
        created = await client.post(
            "/api/diagrams", params={"title": "Big in S3"}, content=big, headers=XML
        )
        assert created.status_code == 201, created.text
        diagram_id = created.json()["id"]
        saved = await client.put(
            f"/api/diagrams/{diagram_id}", content=big + b"\n", headers={**XML, "If-Match": '"1"'}
        )
        assert saved.status_code == 200, saved.text
        assert (await client.get(f"/api/diagrams/{diagram_id}/xml")).content == big + b"\n"
        assert (await client.get(f"/api/diagrams/{diagram_id}/versions/1")).content == big

        listed: dict[str, Any] = (await client.get("/api/diagrams")).json()
        assert [d["id"] for d in listed["data"]] == [diagram_id]
        assert not (tmp_path / "blobs").exists()

    async with S3BlobStore(
        endpoint_url=s3_endpoint,
        bucket=bucket,
        region="us-east-1",
        access_key_id="testing",
        secret_access_key="testing",
    ) as s3:
        assert await s3.get(blob_key_for(diagram_id, 1)) == big
        assert await s3.get(blob_key_for(diagram_id, 2)) == big + b"\n"
