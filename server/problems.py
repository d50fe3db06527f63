"""RFC 9457 problem+json: the one table from error classes to HTTP answers."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from core.errors import (
    CollabError,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    PreconditionRequired,
    RateLimited,
    TooLarge,
    Unauthenticated,
    Unavailable,
    UnsupportedMediaType,
)

log = logging.getLogger(__name__)

PROBLEM_TYPE_BASE = "https://bpmn-collab.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"

# Most specific first: the first matching base decides the status.
_STATUS_BY_CATEGORY: tuple[tuple[type[CollabError], int], ...] = (
    (TooLarge, 413),
    (UnsupportedMediaType, 415),
    (PreconditionRequired, 428),
    (InvalidInput, 422),
    (Unauthenticated, 401),
    (PermissionDenied, 403),
    (NotFound, 404),
    (Conflict, 409),
    (RateLimited, 429),
    (Unavailable, 503),
)

_HTTP_TITLES = {
    400: "Bad request",
    404: "Not found",
    405: "Method not allowed",
    413: "Payload too large",
    415: "Unsupported media type",
    500: "Internal server error",
}


def status_for(error: CollabError) -> int:
    for category, status in _STATUS_BY_CATEGORY:
        if isinstance(error, category):
            return status
    return 500


def problem_response(
    status: int,
    *,
    code: str,
    title: str,
    detail: str,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> Response:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance:
        body["instance"] = instance
    body.update(fields)
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


def error_response(error: CollabError, instance: str | None = None) -> Response:
    status = status_for(error)
    headers: dict[str, str] = {}
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(error.retry_after_s)
    if isinstance(error, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="bpmn-collab"'
    if isinstance(error, Unavailable):
        headers["Retry-After"] = "5"
    return problem_response(
        status,
        code=error.code,
        title=error.title,
        detail=error.detail,
        instance=instance,
        headers=headers,
        **error.fields,
    )


async def handle_collab_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CollabError)
    if status_for(exc) >= 500:
        log.warning("%s %s: %s", request.method, request.url.path, exc.detail)
    return error_response(exc, request.url.path)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    title = _HTTP_TITLES.get(exc.status_code, "Error")
    code = title.lower().replace(" ", "_")
    detail = exc.detail if exc.detail and exc.detail != title else title
    if exc.status_code == 404:
        detail = f"no route {request.method} {request.url.path}"
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    return problem_response(
        exc.status_code,
        code=code,
        title=title,
        detail=str(detail),
        instance=request.url.path,
        headers=dict(exc.headers or {}),
    )


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        500,
        code="internal_error",
        title="Internal server error",
        detail="the server failed to handle this request; it has been logged",
        instance=request.url.path,
    )
