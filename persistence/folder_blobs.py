"""``BlobStore`` on a local folder: the embedded default."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath

from core.errors import BlobNotFound, BlobStoreUnavailable, InvalidInput


class FolderBlobStore:
    def __init__(self, root: Path) -> None:
        self._root = root

    async def __aenter__(self) -> FolderBlobStore:
        await self.ensure_ready()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    async def ensure_ready(self) -> None:
        try:
            await asyncio.to_thread(self._root.mkdir, parents=True, exist_ok=True)
        except OSError as exc:
            raise BlobStoreUnavailable(f"cannot create blob folder {self._root}: {exc}") from exc

    def _path(self, key: str) -> Path:
        parts = PurePosixPath(key).parts
        if not parts or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise InvalidInput(f"invalid blob key {key!r}", key=key)
        return self._root.joinpath(*parts)

    async def put(self, key: str, data: bytes, *, content_type: str = "application/xml") -> None:
        path = self._path(key)
        try:
            await asyncio.to_thread(_write_atomically, path, data)
        except OSError as exc:
            raise BlobStoreUnavailable(f"cannot write blob {key!r}: {exc}") from exc

    async def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        except OSError as exc:
            raise BlobStoreUnavailable(f"cannot read blob {key!r}: {exc}") from exc

    async def open(self, key: str, *, chunk_bytes: int = 65536) -> AsyncIterator[bytes]:
        path = self._path(key)
        # Check now so a missing blob is an error before the first chunk; the file
        # itself is opened by the iterator, so an iterator never started holds no handle.
        try:
            found = await asyncio.to_thread(path.is_file)
        except OSError as exc:
            raise BlobStoreUnavailable(f"cannot read blob {key!r}: {exc}") from exc
        if not found:
            raise BlobNotFound(key)
        return _read_chunks(path, key, chunk_bytes)

    async def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        except OSError as exc:
            raise BlobStoreUnavailable(f"cannot delete blob {key!r}: {exc}") from exc

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)


def _write_atomically(path: Path, data: bytes) -> None:
    # Readers must never see half a blob: write a sibling temp file, then rename over.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


async def _read_chunks(path: Path, key: str, chunk_bytes: int) -> AsyncIterator[bytes]:
    try:
        handle = await asyncio.to_thread(path.open, "rb")
    except FileNotFoundError:
        raise BlobNotFound(key) from None  # removed since open() looked
    try:
        while chunk := await asyncio.to_thread(handle.read, chunk_bytes):
            yield chunk
    finally:
        handle.close()
