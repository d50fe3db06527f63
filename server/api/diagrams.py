"""The diagrams REST endpoints: list, create, get, save, delete, XML, summary, versions."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, replace

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from bpmn.inspect import inspect_bpmn, minimal_bpmn
from core.errors import InvalidInput, PreconditionRequired, XmlTooLarge
from persistence.content import open_xml, read_xml
from persistence.models import NewContent, Principal
from server.api.context import caller, writer
from server.documents import room_key
from server.fresh import fresh_xml
from server.http import (
    JSON_TYPES,
    XML_TYPES,
    etag_for,
    json_response,
    not_modified,
    parse_etag_version,
    parse_json_body,
    query_flag,
    query_int,
    read_body,
    require_media_type,
    xml_as_text,
    xml_from_json_text,
)
from server.live_saves import apply_fold, prepare_fold
from server.schemas import (
    TITLE_MAX,
    CreateDiagramBody,
    DiagramListOut,
    DiagramOut,
    DiagramSummaryOut,
    RestoreBody,
    SaveDiagramBody,
    VersionListOut,
    VersionOut,
    clean_title,
)
from server.services import Services

# JSON escaping can grow XML text, so a JSON body may be larger than the XML it carries;
# the XML itself is checked against the limit once decoded.
_JSON_OVERHEAD_FACTOR = 2
_JSON_OVERHEAD_BYTES = 64 * 1024


async def list_diagrams(request: Request) -> Response:
    services, principal = await caller(request)
    limit = query_int(request, "limit", default=20, low=1, high=100)
    cursor = request.query_params.get("cursor") or None
    query = (request.query_params.get("q") or "").strip() or None
    project_id = request.query_params.get("projectId") or None
    if query is not None and len(query) > TITLE_MAX:
        raise InvalidInput(f"q must be at most {TITLE_MAX} characters", parameter="q")

    cache_key = orjson.dumps([limit, cursor, query, project_id]).decode()
    lookup = await services.list_cache.get(principal.org_id, cache_key)
    if lookup.body is not None:
        return Response(lookup.body, media_type="application/json")
    page = await services.store.list(
        principal.org_id, limit=limit, cursor=cursor, query=query, project_id=project_id
    )
    body = DiagramListOut(
        data=[DiagramSummaryOut.of(item) for item in page.items],
        next_cursor=page.next_cursor,
        has_more=page.has_more,
    )
    encoded = orjson.dumps(body.model_dump(mode="json", by_alias=True))
    if lookup.generation is not None:
        await services.list_cache.put(
            principal.org_id, cache_key, encoded, generation=lookup.generation
        )
    return Response(encoded, media_type="application/json")


async def create_diagram(request: Request) -> Response:
    services, principal = await writer(request)
    incoming = await _read_incoming(request, services, CreateDiagramBody, title_required=True)
    title = incoming.title
    if title is None:  # both body shapes require one; kept as a check, not an assert
        raise InvalidInput("a title is required", field="title")
    xml = incoming.xml if incoming.xml is not None else minimal_bpmn(title)
    content = await _inspected(xml, services)

    record = await services.store.create(
        principal.org_id,
        diagram_id=str(uuid.uuid4()),
        title=title,
        project_id=incoming.project_id,
        content=content,
        author=principal.user_id,
        message=incoming.message,
    )
    await services.list_cache.invalidate(principal.org_id)
    summary = record.summary
    return json_response(
        DiagramSummaryOut.of(summary),
        status=201,
        headers={"Location": f"/api/diagrams/{summary.id}", "ETag": etag_for(summary.version)},
    )


async def get_diagram(request: Request) -> Response:
    services, principal = await caller(request)
    record = await services.store.get(principal.org_id, request.path_params["diagram_id"])
    headers = {"ETag": etag_for(record.summary.version)}
    if not_modified(request, record.summary.version):
        return Response(status_code=304, headers=headers)
    xml = await read_xml(services.blobs, record.xml)
    room = services.rooms.room(room_key(principal.org_id, record.summary.id, record.crdt_epoch))
    live_editors = len(room.clients) if room is not None else 0
    out = DiagramOut.of_record(record, xml_as_text(xml), live_editors=live_editors)
    return json_response(out, headers=headers)


async def get_summary(request: Request) -> Response:
    services, principal = await caller(request)
    record = await services.store.get(principal.org_id, request.path_params["diagram_id"])
    headers = {"ETag": etag_for(record.summary.version)}
    if not_modified(request, record.summary.version):
        return Response(status_code=304, headers=headers)
    return json_response(DiagramSummaryOut.of(record.summary), headers=headers)


async def save_diagram(request: Request) -> Response:
    services, principal = await writer(request)
    diagram_id = request.path_params["diagram_id"]
    incoming = await _read_incoming(request, services, SaveDiagramBody, title_required=False)
    expected = _expected_version(_if_match(request), incoming.expected_version)
    if incoming.xml is None and incoming.title is None:
        raise InvalidInput("nothing to save: send xml, title or both")
    content = await _inspected(incoming.xml, services) if incoming.xml is not None else None
    return await _write_version(
        services,
        principal,
        diagram_id,
        expected_version=expected,
        content=content,
        title=incoming.title,
        message=incoming.message,
    )


async def restore_version(request: Request) -> Response:
    """Version n's XML as the next version: a forward change, history untouched; folded
    into the live document like any save when a room is open."""
    services, principal = await writer(request)
    diagram_id = request.path_params["diagram_id"]
    rev: int = request.path_params["rev"]
    version = await services.store.get_version(principal.org_id, diagram_id, rev)
    raw = await read_body(request, limit=_JSON_OVERHEAD_BYTES)
    body_version = parse_json_body(raw, RestoreBody).expected_version if raw else None
    expected = _expected_version(_if_match(request), body_version)
    xml = await read_xml(services.blobs, version.xml)
    return await _write_version(
        services,
        principal,
        diagram_id,
        expected_version=expected,
        content=NewContent(xml=xml, element_count=version.element_count),
        title=None,
        message=f"restore of version {rev}",
    )


async def _write_version(
    services: Services,
    principal: Principal,
    diagram_id: str,
    *,
    expected_version: int,
    content: NewContent | None,
    title: str | None,
    message: str | None,
) -> Response:
    """The one REST write path: the optimistic save, folded into a live room if one is open."""
    live = None
    epoch_before = None
    if content is not None:
        live = await prepare_fold(
            services, principal.org_id, diagram_id, expected_version, content.xml
        )
        if live is not None:
            content = replace(content, crdt_state=live.state, log_position=live.log_position)
        else:
            # No document to fold into: the one case a save may replace a document a room
            # just built (see docs/protocol.md), so note the epoch to see if it moved.
            epoch_before = (await services.store.get(principal.org_id, diagram_id)).crdt_epoch
    record = await services.store.save(
        principal.org_id,
        diagram_id,
        expected_version=expected_version,
        author=principal.user_id,
        title=title,
        content=content,
        message=message,
    )
    if live is not None:
        await apply_fold(services, live, version=record.summary.version, user_id=principal.user_id)
    elif epoch_before is not None and record.crdt_epoch != epoch_before:
        old_room = room_key(principal.org_id, diagram_id, epoch_before)
        await services.fanout.reset(old_room, services.rooms.room(old_room))
    await services.list_cache.invalidate(principal.org_id)
    return json_response(
        DiagramSummaryOut.of(record.summary),
        headers={"ETag": etag_for(record.summary.version)},
    )


async def delete_diagram(request: Request) -> Response:
    services, principal = await writer(request)
    await services.store.delete(principal.org_id, request.path_params["diagram_id"])
    await services.list_cache.invalidate(principal.org_id)
    return Response(status_code=204)


async def get_xml(request: Request) -> Response:
    services, principal = await caller(request)
    diagram_id = request.path_params["diagram_id"]
    record = await services.store.get(principal.org_id, diagram_id)
    version = record.summary.version
    disposition = f'attachment; filename="{diagram_id}.bpmn"'
    if query_flag(request, "fresh"):
        latest = await fresh_xml(services, record)
        if latest is not None:
            # Ahead of every version: no ETag of a version, and no caching.
            return Response(
                latest,
                media_type="application/xml",
                headers={
                    "Cache-Control": "no-store",
                    "X-Based-On-Version": str(version),
                    "Content-Disposition": disposition,
                },
            )
    if not_modified(request, version):
        return Response(status_code=304, headers={"ETag": etag_for(version)})
    chunks = await open_xml(services.blobs, record.xml)
    return StreamingResponse(
        chunks,
        media_type="application/xml",
        headers={
            "ETag": etag_for(version),
            "Content-Length": str(record.xml.size),
            "Content-Disposition": disposition,
        },
    )


async def list_versions(request: Request) -> Response:
    services, principal = await caller(request)
    limit = query_int(request, "limit", default=20, low=1, high=100)
    cursor = request.query_params.get("cursor") or None
    page = await services.store.list_versions(
        principal.org_id, request.path_params["diagram_id"], limit=limit, cursor=cursor
    )
    return json_response(
        VersionListOut(
            data=[VersionOut.of(item) for item in page.items],
            next_cursor=page.next_cursor,
            has_more=page.has_more,
        )
    )


async def get_version(request: Request) -> Response:
    services, principal = await caller(request)
    diagram_id = request.path_params["diagram_id"]
    rev: int = request.path_params["rev"]
    version = await services.store.get_version(principal.org_id, diagram_id, rev)
    chunks = await open_xml(services.blobs, version.xml)
    return StreamingResponse(
        chunks,
        media_type="application/xml",
        headers={
            "Content-Length": str(version.xml.size),
            "Content-Disposition": f'attachment; filename="{diagram_id}-v{rev}.bpmn"',
            "X-Version-Author": version.author,
            "X-Version-Created-At": version.created_at.isoformat(),
        },
    )


# --- helpers ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Incoming:
    """What a create or save sent, from a JSON body or a raw XML body with query parameters."""

    xml: bytes | None
    title: str | None
    project_id: str | None
    message: str | None
    expected_version: int | None


async def _read_incoming(
    request: Request,
    services: Services,
    model: type[CreateDiagramBody] | type[SaveDiagramBody],
    *,
    title_required: bool,
) -> _Incoming:
    kind = require_media_type(request, JSON_TYPES | XML_TYPES)
    params = request.query_params
    if kind in XML_TYPES:
        xml = await read_body(request, limit=services.limits.max_xml_bytes)
        wants_title = title_required or "title" in params
        return _Incoming(
            xml=xml,
            title=_title_param(request) if wants_title else None,
            project_id=params.get("projectId") or None,
            message=params.get("message") or None,
            expected_version=None,
        )
    body = parse_json_body(await read_body(request, limit=_json_limit(services)), model)
    return _Incoming(
        xml=_checked_json_xml(body.xml, services),
        title=body.title,
        project_id=getattr(body, "project_id", None),
        message=body.message,
        expected_version=getattr(body, "expected_version", None),
    )


def _json_limit(services: Services) -> int:
    return services.limits.max_xml_bytes * _JSON_OVERHEAD_FACTOR + _JSON_OVERHEAD_BYTES


def _title_param(request: Request) -> str:
    try:
        return clean_title(request.query_params.get("title") or "")
    except ValueError as exc:
        raise InvalidInput(
            f"with an XML body, give the title as ?title= ({exc})", parameter="title"
        ) from None


def _checked_json_xml(text: str | None, services: Services) -> bytes | None:
    if text is None:
        return None
    xml = xml_from_json_text(text)
    limit = services.limits.max_xml_bytes
    if len(xml) > limit:
        raise XmlTooLarge(size=len(xml), limit=limit)
    return xml


async def _inspected(xml: bytes, services: Services) -> NewContent:
    # Parsing a large document takes milliseconds of CPU: keep it off the event loop.
    info = await asyncio.to_thread(inspect_bpmn, xml, **services.limits.xml_limits())
    return NewContent(xml=xml, element_count=info.element_count)


def _if_match(request: Request) -> int | None:
    header = request.headers.get("if-match")
    return parse_etag_version(header) if header is not None else None


def _expected_version(from_header: int | None, from_body: int | None) -> int:
    if from_header is not None and from_body is not None and from_header != from_body:
        raise InvalidInput(
            f"If-Match names version {from_header} but expectedVersion is {from_body}"
        )
    expected = from_header if from_header is not None else from_body
    if expected is None:
        raise PreconditionRequired(
            "say which version this save is based on: expectedVersion in the body or If-Match"
        )
    return expected
