"""The ``BlobStore`` contract, run against every adapter (folder and S3)."""

from __future__ import annotations

import asyncio
import gc
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from core.errors import BlobNotFound, BlobStoreUnavailable, CollabError, InvalidInput
from persistence.folder_blobs import FolderBlobStore
from persistence.ports import BlobStore
from persistence.s3_blobs import S3BlobStore
from tests.fixtures.s3 import S3_ACCESS_KEY_ID, S3_REGION, S3_SECRET_ACCESS_KEY
from tests.fixtures.services import free_port

MIB = 1024 * 1024
KEY = "diagrams/d-1/1.bpmn"


def _every_operation(store: BlobStore, key: str) -> list[Callable[[], Awaitable[object]]]:
    return [
        lambda: store.put(key, b"x"),
        lambda: store.get(key),
        lambda: store.open(key),
        lambda: store.delete(key),
        lambda: store.exists(key),
    ]


def _payload(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


async def _drain(chunks: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in chunks]


async def _aclose(chunks: AsyncIterator[bytes]) -> None:
    # Both adapters return an iterator with ``aclose()`` (an async generator or
    # its equivalent); the port only promises ``AsyncIterator``.
    aclose: Any = getattr(chunks, "aclose", None)
    assert aclose is not None, "open() must return something that can be closed early"
    await aclose()


@pytest.fixture
async def folder_blob_store(tmp_path: Path) -> AsyncIterator[FolderBlobStore]:
    async with FolderBlobStore(tmp_path / "blobs") as store:
        yield store


@pytest.fixture(
    params=[
        pytest.param("folder_blob_store", id="folder"),
        pytest.param("s3_blob_store", id="s3", marks=pytest.mark.s3),
    ]
)
def blob_store(request: pytest.FixtureRequest) -> BlobStore:
    # Synchronous on purpose: an async fixture cannot pull in another async
    # fixture with ``getfixturevalue`` while the event loop is running.
    adapter: BlobStore = request.getfixturevalue(request.param)
    return adapter


# --- the contract ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"", b"<definitions/>", bytes(range(256)), _payload(3 * MIB)],
    ids=["empty", "small", "all-byte-values", "3MiB"],
)
async def test_put_then_get_returns_the_exact_bytes(blob_store: BlobStore, data: bytes) -> None:
    await blob_store.put(KEY, data)

    assert await blob_store.get(KEY) == data


async def test_put_replaces_the_previous_blob(blob_store: BlobStore) -> None:
    await blob_store.put(KEY, b"first version, longer than the second")
    await blob_store.put(KEY, b"second", content_type="text/plain")

    assert await blob_store.get(KEY) == b"second"


async def test_open_streams_chunks_that_join_to_the_blob(blob_store: BlobStore) -> None:
    data = _payload(3 * MIB + 123)
    await blob_store.put(KEY, data)

    chunks = await _drain(await blob_store.open(KEY))

    assert b"".join(chunks) == data
    assert len(chunks) > 1


@pytest.mark.parametrize("chunk_bytes", [1000, 65536])
async def test_open_respects_the_chunk_size(blob_store: BlobStore, chunk_bytes: int) -> None:
    data = _payload(5 * chunk_bytes + 17)
    await blob_store.put(KEY, data)

    chunks = await _drain(await blob_store.open(KEY, chunk_bytes=chunk_bytes))

    assert [len(c) for c in chunks] == [chunk_bytes] * 5 + [17]
    assert b"".join(chunks) == data


async def test_open_of_an_empty_blob_yields_nothing(blob_store: BlobStore) -> None:
    await blob_store.put(KEY, b"")

    assert await _drain(await blob_store.open(KEY)) == []


async def test_open_of_a_missing_key_raises_before_any_chunk(blob_store: BlobStore) -> None:
    with pytest.raises(BlobNotFound) as caught:
        await blob_store.open("diagrams/none/1.bpmn")

    assert caught.value.fields == {"key": "diagrams/none/1.bpmn"}


async def test_get_of_a_missing_key_raises_blob_not_found(blob_store: BlobStore) -> None:
    with pytest.raises(BlobNotFound):
        await blob_store.get("diagrams/none/1.bpmn")


async def test_streams_closed_early_release_their_resources(blob_store: BlobStore) -> None:
    # More abandoned streams than an HTTP connection pool holds (botocore: 10):
    # if a closed stream kept its connection, the next open would wait forever.
    # Large enough that a response cannot arrive whole before it is closed.
    data = _payload(8 * MIB)
    await blob_store.put(KEY, data)
    streams = []  # kept referenced, so only aclose() can free them
    async with asyncio.timeout(20):
        for _ in range(15):
            chunks = await blob_store.open(KEY, chunk_bytes=1024)
            assert await anext(chunks) == data[:1024]
            await _aclose(chunks)
            streams.append(chunks)

        assert await blob_store.get(KEY) == data


async def test_a_stream_never_started_holds_nothing(blob_store: BlobStore) -> None:
    # A response that fails before streaming drops its iterator unread; with
    # filterwarnings=error a leaked file handle or connection fails this test.
    await blob_store.put(KEY, b"unread")
    for _ in range(3):
        chunks = await blob_store.open(KEY)
        await _aclose(chunks)
        del chunks
    gc.collect()
    assert await blob_store.get(KEY) == b"unread"


async def test_delete_removes_and_is_idempotent(blob_store: BlobStore) -> None:
    await blob_store.put(KEY, b"x")

    await blob_store.delete(KEY)
    await blob_store.delete(KEY)
    await blob_store.delete("diagrams/never/written.bpmn")

    assert not await blob_store.exists(KEY)
    with pytest.raises(BlobNotFound):
        await blob_store.get(KEY)


async def test_exists(blob_store: BlobStore) -> None:
    assert not await blob_store.exists(KEY)

    await blob_store.put(KEY, b"")

    assert await blob_store.exists(KEY)


async def test_ensure_ready_is_idempotent_and_keeps_blobs(blob_store: BlobStore) -> None:
    await blob_store.put(KEY, b"kept")

    await blob_store.ensure_ready()
    await blob_store.ensure_ready()

    assert await blob_store.get(KEY) == b"kept"


async def test_keys_with_slashes_are_independent(blob_store: BlobStore) -> None:
    keys = ["diagrams/a/1.bpmn", "diagrams/a/2.bpmn", "diagrams/b/1.bpmn", "top-level.bpmn"]
    for key in keys:
        await blob_store.put(key, key.encode())

    await blob_store.delete("diagrams/a/1.bpmn")

    assert not await blob_store.exists("diagrams/a/1.bpmn")
    assert not await blob_store.exists("diagrams/a")
    for key in keys[1:]:
        assert await blob_store.get(key) == key.encode()


# --- folder only ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["../escape.bpmn", "diagrams/../../escape.bpmn", "/etc/passwd", "diagrams/..", ""]
)
async def test_folder_refuses_keys_that_leave_the_folder(tmp_path: Path, key: str) -> None:
    async with FolderBlobStore(tmp_path / "blobs") as store:
        for attempt in _every_operation(store, key):
            with pytest.raises(InvalidInput):
                await attempt()

    assert not (tmp_path / "escape.bpmn").exists()


# --- S3 only --------------------------------------------------------------------------------


def _s3_store(
    endpoint_url: str, bucket: str, *, create_bucket: bool = True, max_attempts: int = 3
) -> S3BlobStore:
    return S3BlobStore(
        endpoint_url=endpoint_url,
        bucket=bucket,
        region=S3_REGION,
        access_key_id=S3_ACCESS_KEY_ID,
        secret_access_key=S3_SECRET_ACCESS_KEY,
        create_bucket=create_bucket,
        connect_timeout_s=2.0,
        max_attempts=max_attempts,
    )


async def test_s3_unreachable_endpoint_is_unavailable() -> None:
    # A port nobody listens on: connection refused, which botocore reports as
    # its own error once retries are spent; the store must translate it.
    unreachable = f"http://127.0.0.1:{free_port()}"
    async with _s3_store(unreachable, "no-server", max_attempts=1) as store:
        for attempt in [store.ensure_ready, *_every_operation(store, KEY)]:
            with pytest.raises(BlobStoreUnavailable):
                await attempt()


@pytest.mark.s3
async def test_s3_missing_bucket_without_create_is_unavailable(s3_endpoint: str) -> None:
    async with _s3_store(s3_endpoint, "never-created", create_bucket=False) as store:
        with pytest.raises(BlobStoreUnavailable):
            await store.ensure_ready()
        # A missing bucket is a broken deployment, not a missing blob.
        with pytest.raises(BlobStoreUnavailable):
            await store.get(KEY)


@pytest.mark.s3
async def test_s3_streams_dropped_unread_release_their_connection(
    s3_blob_store: S3BlobStore,
) -> None:
    await s3_blob_store.put(KEY, _payload(256 * 1024))
    for _ in range(15):
        chunks = await s3_blob_store.open(KEY)
        del chunks
    gc.collect()

    assert await asyncio.wait_for(s3_blob_store.exists(KEY), timeout=10)


async def test_s3_store_outside_its_context_refuses_to_work() -> None:
    store = _s3_store("http://127.0.0.1:1", "unused")

    with pytest.raises(CollabError):
        await store.get(KEY)
