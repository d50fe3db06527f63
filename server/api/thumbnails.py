"""``GET /api/diagrams/{id}/thumbnail.svg``: the latest thumbnail, with its version as ETag."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from core.errors import BlobNotFound
from server.api.context import caller
from server.http import etag_for, not_modified
from server.thumbnailer import (
    SVG_MEDIA_TYPE,
    ThumbnailNotFound,
    thumbnail_key,
    thumbnail_version,
)

# The SVG is drawn by the server, names escaped; still, a file served from the API's
# origin must never run script or fetch anything, whatever a browser does with it.
_SAFE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    # Revalidate every time: the ETag makes that a 304 while the thumbnail is unchanged.
    "Cache-Control": "private, no-cache",
}


async def get_thumbnail(request: Request) -> Response:
    services, principal = await caller(request)
    diagram_id = request.path_params["diagram_id"]
    # Looked up in the caller's organization first: another org's diagram is not found.
    record = await services.store.get(principal.org_id, diagram_id)
    version = thumbnail_version(record.summary.thumbnail_url)
    if version is None:
        raise ThumbnailNotFound(diagram_id)
    headers = {"ETag": etag_for(version), **_SAFE_HEADERS}
    if not_modified(request, version):
        return Response(status_code=304, headers=headers)
    try:
        svg = await services.blobs.get(thumbnail_key(record.summary.id, version))
    except BlobNotFound:
        raise ThumbnailNotFound(diagram_id) from None
    return Response(svg, media_type=SVG_MEDIA_TYPE, headers=headers)
