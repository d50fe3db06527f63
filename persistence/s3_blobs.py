"""``BlobStore`` on an S3-compatible bucket (AWS S3, MinIO, moto) through aiobotocore.

The client is created when the store is entered (``async with``) and closed when
it is left. Driver exceptions (botocore, aiohttp) are translated here and never
escape: a missing key is ``BlobNotFound``, anything else that goes wrong talking
to the bucket is ``BlobStoreUnavailable`` (retryable).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, contextmanager
from typing import TYPE_CHECKING, Any, cast

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from core.errors import BlobNotFound, BlobStoreUnavailable, CollabError

if TYPE_CHECKING:
    from aiobotocore.response import StreamingBody
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.literals import BucketLocationConstraintType

logger = logging.getLogger(__name__)

# Error codes S3 and its look-alikes use for "no such object / bucket". HEAD
# requests carry no body, so for them botocore only has the status code.
_MISSING_KEY_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_MISSING_BUCKET_CODES = frozenset({"NoSuchBucket", "404", "NotFound"})
# Transport failures that aiobotocore may let through unwrapped (mostly while
# streaming a body). ``OSError`` also covers the built-in ``TimeoutError``.
_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, OSError)


class S3BlobStore:
    def __init__(
        self,
        *,
        endpoint_url: str | None,
        bucket: str,
        region: str,
        access_key_id: str | None,
        secret_access_key: str | None,
        create_bucket: bool = True,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        max_attempts: int = 3,
    ) -> None:
        self._endpoint_url = endpoint_url
        self._bucket = bucket
        self._region = region
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self._create_bucket = create_bucket
        self._config = AioConfig(
            # Path-style URLs (``host/bucket/key``) work with MinIO and moto,
            # which have no per-bucket DNS names.
            s3={"addressing_style": "path"},
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            # Only send/verify the newer flexible checksums when an operation
            # demands them: several S3-compatible servers reject them.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._stack: AsyncExitStack | None = None
        self._client: S3Client | None = None

    async def __aenter__(self) -> S3BlobStore:
        # Only builds the client: no network I/O here. Call ``ensure_ready()``
        # (``migrate``, start-up) to create or check the bucket.
        async with AsyncExitStack() as stack:
            session = get_session()
            self._client = await stack.enter_async_context(
                session.create_client(
                    "s3",
                    region_name=self._region,
                    endpoint_url=self._endpoint_url,
                    aws_access_key_id=self._access_key_id,
                    aws_secret_access_key=self._secret_access_key,
                    config=self._config,
                )
            )
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    @property
    def _s3(self) -> S3Client:
        if self._client is None:
            raise CollabError("S3BlobStore used outside its 'async with' block")
        return self._client

    async def ensure_ready(self) -> None:
        s3 = self._s3
        with _map_errors(f"bucket {self._bucket!r}"):
            try:
                await s3.head_bucket(Bucket=self._bucket)
                return
            except ClientError as exc:
                if _error_code(exc) not in _MISSING_BUCKET_CODES:
                    raise
            if not self._create_bucket:
                raise BlobStoreUnavailable(
                    f"bucket {self._bucket!r} does not exist and creating it is disabled",
                    bucket=self._bucket,
                )
            logger.info("creating S3 bucket %s", self._bucket)
            try:
                if self._region == "us-east-1":
                    # us-east-1 refuses an explicit LocationConstraint.
                    await s3.create_bucket(Bucket=self._bucket)
                else:
                    location = cast("BucketLocationConstraintType", self._region)
                    await s3.create_bucket(
                        Bucket=self._bucket,
                        CreateBucketConfiguration={"LocationConstraint": location},
                    )
            except ClientError as exc:
                if _error_code(exc) != "BucketAlreadyOwnedByYou":
                    raise
                # another process created it first

    async def put(self, key: str, data: bytes, *, content_type: str = "application/xml") -> None:
        with _map_errors(f"blob {key!r}"):
            await self._s3.put_object(
                Bucket=self._bucket, Key=key, Body=data, ContentType=content_type
            )

    async def get(self, key: str) -> bytes:
        body = await self._get_body(key)
        async with body:
            with _map_errors(f"blob {key!r}"):
                return await body.read()

    async def open(self, key: str, *, chunk_bytes: int = 65536) -> AsyncIterator[bytes]:
        if chunk_bytes < 1:
            raise ValueError("chunk_bytes must be positive")
        return _BodyChunks(await self._get_body(key), key, chunk_bytes)

    async def delete(self, key: str) -> None:
        # S3 answers 204 for a missing key too, so delete is idempotent as is.
        with _map_errors(f"blob {key!r}"):
            await self._s3.delete_object(Bucket=self._bucket, Key=key)

    async def exists(self, key: str) -> bool:
        try:
            with _map_errors(f"blob {key!r}", missing=key):
                await self._s3.head_object(Bucket=self._bucket, Key=key)
        except BlobNotFound:
            return False
        return True

    async def _get_body(self, key: str) -> StreamingBody:
        with _map_errors(f"blob {key!r}", missing=key):
            response = await self._s3.get_object(Bucket=self._bucket, Key=key)
        return response["Body"]


class _BodyChunks:
    """The chunks of one object body: each exactly ``chunk_bytes`` long except
    the last. The body is closed at the end, on error, on ``aclose()`` and, as a
    last resort, when the iterator is dropped without being finished."""

    def __init__(self, body: StreamingBody, key: str, chunk_bytes: int) -> None:
        self._body: StreamingBody | None = body
        self._key = key
        self._chunk_bytes = chunk_bytes

    def __aiter__(self) -> _BodyChunks:
        return self

    async def __anext__(self) -> bytes:
        body = self._body
        if body is None:
            raise StopAsyncIteration
        parts: list[bytes] = []
        wanted = self._chunk_bytes
        try:
            with _map_errors(f"blob {self._key!r}"):
                # The transport hands out whatever has arrived; gather up to a
                # full chunk so callers see the chunk size they asked for.
                while wanted:
                    part = await body.read(wanted)
                    if not part:
                        break
                    parts.append(part)
                    wanted -= len(part)
        except BaseException:
            self._close()
            raise
        if not parts:
            self._close()
            raise StopAsyncIteration
        return b"".join(parts)

    async def aclose(self) -> None:
        self._close()

    def _close(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            body.close()

    def __del__(self) -> None:
        self._close()


@contextmanager
def _map_errors(what: str, *, missing: str | None = None) -> Iterator[None]:
    """Translate botocore/aiohttp exceptions into the service's error tree.

    With ``missing`` set, a missing object is ``BlobNotFound(missing)``.
    """
    try:
        yield
    except ClientError as exc:
        code = _error_code(exc)
        if missing is not None and code in _MISSING_KEY_CODES:
            raise BlobNotFound(missing) from None
        raise BlobStoreUnavailable(
            f"S3 refused the request for {what}: {code or exc}", s3Code=code
        ) from exc
    except BotoCoreError as exc:
        raise BlobStoreUnavailable(f"cannot reach S3 for {what}: {exc}") from exc
    except _TRANSPORT_ERRORS as exc:
        raise BlobStoreUnavailable(f"cannot reach S3 for {what}: {exc!r}") from exc


def _error_code(exc: ClientError) -> str:
    error: Any = exc.response.get("Error", {})
    code = error.get("Code", "") if isinstance(error, dict) else ""
    return str(code)
