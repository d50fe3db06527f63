"""Every HTTP operation of the service, in one table: it builds both the routes and
``/openapi.json``, so no route can go undocumented."""

from __future__ import annotations

from server.api import diagrams, ops, rooms, thumbnails
from server.openapi import Operation, Param, Reply
from server.schemas import (
    CollaborateOut,
    CreateDiagramBody,
    DiagramListOut,
    DiagramOut,
    DiagramSummaryOut,
    Health,
    RestoreBody,
    SaveDiagramBody,
    VersionListOut,
)

_ID = "/api/diagrams/{diagram_id}"
_READ_ERRORS = (401, 404, 422, 500)
_WRITE_ERRORS = (401, 403, 404, 409, 413, 415, 422, 428, 429, 500)

_LIMIT = Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 100, "default": 20})
_CURSOR = Param("cursor", "query", {"type": "string"}, "opaque cursor from nextCursor")
_IF_NONE_MATCH = Param("If-None-Match", "header", {"type": "string"}, "answer 304 if unchanged")
_IF_MATCH = Param("If-Match", "header", {"type": "string"}, "the version the save is based on")
_XML_QUERY = (
    Param("title", "query", {"type": "string"}, "title, when the body is raw XML"),
    Param("projectId", "query", {"type": "string"}, "project, when the body is raw XML"),
    Param("message", "query", {"type": "string"}, "version message, when the body is raw XML"),
)
_XML_FILE = Reply(
    "the BPMN XML, byte for byte as stored",
    media_type="application/xml",
    headers=("ETag", "Content-Disposition"),
)

OPERATIONS: list[Operation] = [
    Operation(
        "GET",
        "/healthz",
        ops.healthz,
        "healthz",
        "Process is up",
        "operations",
        {200: Reply("up", Health)},
        authenticated=False,
    ),
    Operation(
        "GET",
        "/readyz",
        ops.readyz,
        "readyz",
        "Dependencies reachable",
        "operations",
        {200: Reply("ready", Health)},
        authenticated=False,
        errors=(503,),
    ),
    Operation(
        "GET",
        "/metrics",
        ops.metrics,
        "metrics",
        "This worker's metrics in the Prometheus text format (keep it off public networks)",
        "operations",
        {200: Reply("metrics", media_type="text/plain; version=0.0.4")},
        authenticated=False,
    ),
    Operation(
        "GET",
        "/openapi.json",
        ops.openapi,
        "openapi",
        "This document",
        "operations",
        {200: Reply("the OpenAPI document")},
        authenticated=False,
    ),
    Operation(
        "GET",
        "/api/diagrams",
        diagrams.list_diagrams,
        "listDiagrams",
        "List diagrams (summaries, newest first)",
        "diagrams",
        {200: Reply("a page of summaries", DiagramListOut)},
        params=(
            _LIMIT,
            _CURSOR,
            Param("q", "query", {"type": "string"}, "title search"),
            Param("projectId", "query", {"type": "string"}),
        ),
        errors=_READ_ERRORS,
    ),
    Operation(
        "POST",
        "/api/diagrams",
        diagrams.create_diagram,
        "createDiagram",
        "Create a diagram (JSON, or raw XML with ?title=)",
        "diagrams",
        {201: Reply("created", DiagramSummaryOut, headers=("Location", "ETag"))},
        body=CreateDiagramBody,
        accepts_xml=True,
        params=_XML_QUERY,
        errors=_WRITE_ERRORS,
    ),
    Operation(
        "GET",
        _ID,
        diagrams.get_diagram,
        "getDiagram",
        "Get a diagram with its XML",
        "diagrams",
        {200: Reply("the diagram", DiagramOut, headers=("ETag",)), 304: Reply("not modified")},
        params=(_IF_NONE_MATCH,),
        errors=_READ_ERRORS,
    ),
    Operation(
        "PUT",
        _ID,
        diagrams.save_diagram,
        "saveDiagram",
        "Save a new version if the stored one is still expectedVersion",
        "diagrams",
        {200: Reply("saved", DiagramSummaryOut, headers=("ETag",))},
        body=SaveDiagramBody,
        accepts_xml=True,
        params=(_IF_MATCH, *_XML_QUERY),
        errors=_WRITE_ERRORS,
    ),
    Operation(
        "DELETE",
        _ID,
        diagrams.delete_diagram,
        "deleteDiagram",
        "Delete a diagram (versions are kept)",
        "diagrams",
        {204: Reply("deleted")},
        errors=(401, 403, 404, 429, 500),
    ),
    Operation(
        "GET",
        _ID + "/xml",
        diagrams.get_xml,
        "getDiagramXml",
        "Download the BPMN XML (streamed)",
        "diagrams",
        {200: _XML_FILE, 304: Reply("not modified")},
        params=(
            _IF_NONE_MATCH,
            Param(
                "fresh",
                "query",
                {"type": "boolean", "default": False},
                "the very latest: rendered from the live room open on this worker, or from the "
                "stored document plus its update log, when they hold changes no version has",
            ),
        ),
        errors=_READ_ERRORS,
    ),
    Operation(
        "GET",
        _ID + "/thumbnail.svg",
        thumbnails.get_thumbnail,
        "getDiagramThumbnail",
        "Get the diagram's SVG thumbnail (drawn shortly after each save)",
        "diagrams",
        {
            200: Reply(
                "the thumbnail of the version the ETag names",
                media_type="image/svg+xml",
                headers=("ETag",),
            ),
            304: Reply("not modified"),
        },
        params=(_IF_NONE_MATCH,),
        errors=_READ_ERRORS,
    ),
    Operation(
        "GET",
        _ID + "/summary",
        diagrams.get_summary,
        "getDiagramSummary",
        "Get a diagram's summary",
        "diagrams",
        {
            200: Reply("the summary", DiagramSummaryOut, headers=("ETag",)),
            304: Reply("not modified"),
        },
        params=(_IF_NONE_MATCH,),
        errors=_READ_ERRORS,
    ),
    Operation(
        "GET",
        _ID + "/versions",
        diagrams.list_versions,
        "listVersions",
        "List a diagram's versions (newest first)",
        "versions",
        {200: Reply("a page of versions", VersionListOut)},
        params=(_LIMIT, _CURSOR),
        errors=_READ_ERRORS,
    ),
    Operation(
        "GET",
        _ID + "/versions/{rev:int}",
        diagrams.get_version,
        "getVersionXml",
        "Download one version's BPMN XML",
        "versions",
        {
            200: Reply(
                "the version's XML",
                media_type="application/xml",
                headers=("Content-Disposition", "X-Version-Author"),
            )
        },
        errors=_READ_ERRORS,
    ),
    Operation(
        "POST",
        _ID + "/collaborate",
        rooms.collaborate,
        "collaborate",
        "Get a room token and the WebSocket URL to co-edit live",
        "rooms",
        {200: Reply("the room token", CollaborateOut)},
        errors=(401, 404, 500),
    ),
    Operation(
        "POST",
        _ID + "/versions/{rev:int}/restore",
        diagrams.restore_version,
        "restoreVersion",
        "Make version n's content the next version (folded into a live room)",
        "versions",
        {200: Reply("restored as a new version", DiagramSummaryOut, headers=("ETag",))},
        body=RestoreBody,
        params=(_IF_MATCH,),
        errors=_WRITE_ERRORS,
    ),
]
