"""Small pieces of HTTP handling shared by the API modules: bodies, ETags, JSON."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from core.errors import InvalidInput, TooLarge, UnsupportedMediaType

ModelT = TypeVar("ModelT", bound=BaseModel)

JSON_TYPES = frozenset({"application/json"})
XML_TYPES = frozenset({"application/xml", "text/xml", "application/bpmn+xml"})
_XML_DECLARED_ENCODING = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, *, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            declared_bytes = int(declared)
        except ValueError:
            raise InvalidInput("Content-Length is not a number") from None
        if declared_bytes > limit:
            raise TooLarge(
                f"the body is {declared_bytes} bytes; the limit is {limit}",
                size=declared_bytes,
                limit=limit,
            )
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise TooLarge(f"the body exceeds the limit of {limit} bytes", limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json_body(raw: bytes, model: type[ModelT]) -> ModelT:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
            for err in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        raise InvalidInput("the body does not match the expected shape", errors=errors) from None


def require_media_type(request: Request, accepted: frozenset[str]) -> str:
    kind = media_type(request)
    if kind not in accepted:
        raise UnsupportedMediaType(
            f"send the body as one of: {', '.join(sorted(accepted))}",
            accepted=sorted(accepted),
        )
    return kind


def xml_from_json_text(text: str) -> bytes:
    """XML sent inside JSON is text: store it in the encoding its declaration names
    (UTF-8 when it names none), so the stored bytes and the declaration agree and a
    file exported as ISO-8859-1 comes back byte for byte."""
    declared = _XML_DECLARED_ENCODING.match(text[:256].encode("utf-8", errors="replace"))
    encoding = declared.group(1).decode("ascii") if declared else "utf-8"
    try:
        return text.encode(encoding)
    except LookupError:
        raise InvalidInput(
            f"the XML declares an unknown encoding {encoding!r}", field="xml"
        ) from None
    except UnicodeEncodeError as exc:
        raise InvalidInput(
            f"the XML declares encoding {encoding!r} but holds characters it cannot represent "
            f"(at character {exc.start}); declare UTF-8 or send raw bytes as application/xml",
            field="xml",
        ) from None


def declared_encoding(xml: bytes) -> str | None:
    match = _XML_DECLARED_ENCODING.match(xml[:256])
    return match.group(1).decode("ascii") if match else None


def xml_as_text(xml: bytes) -> str:
    encoding = declared_encoding(xml) or "utf-8"
    try:
        return xml.decode(encoding)
    except (LookupError, UnicodeDecodeError):
        return xml.decode("utf-8", errors="replace")


def etag_for(version: int) -> str:
    return f'"{version}"'


def parse_etag_version(header: str) -> int:
    """The version an ``If-Match`` header names (``"3"``, ``W/"3"`` or ``3``)."""
    value = header.strip()
    value = value.removeprefix("W/").strip('"')
    if not value.isdigit() or int(value) < 1:
        raise InvalidInput(
            'If-Match must name one version, as the ETag of the diagram (e.g. "3")',
            header="If-Match",
        )
    return int(value)


def not_modified(request: Request, version: int) -> bool:
    header = request.headers.get("if-none-match")
    if not header:
        return False
    wanted = {tag.strip().removeprefix("W/").strip('"') for tag in header.split(",")}
    return "*" in wanted or str(version) in wanted


def json_response(
    payload: BaseModel | dict[str, Any],
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    if isinstance(payload, BaseModel):
        body = orjson.dumps(payload.model_dump(mode="json", by_alias=True))
    else:
        body = orjson.dumps(payload)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def query_int(request: Request, name: str, *, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be an integer", parameter=name) from None
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}", parameter=name)
    return value


_TRUE = frozenset({"1", "true", "yes"})
_FALSE = frozenset({"0", "false", "no", ""})


def query_flag(request: Request, name: str) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidInput(f"{name} must be 1 or 0 (true or false)", parameter=name)
