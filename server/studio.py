"""The studio's built files (``studio/``, built with Vite) under ``/studio``.

``/studio/`` and ``/studio/{id}`` answer the one page (``index.html``, which routes by path),
never cached (``/studio`` redirects to ``/studio/``); ``/studio/assets/...`` are content-hashed
by the build, so they are cached for a year. Without a build, every page says how to make one
instead of a blank page.
"""

from __future__ import annotations

import logging
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route

log = logging.getLogger(__name__)

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
INDEX = "index.html"

# Explicit, so a slim image without /etc/mime.types still serves the right types.
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".eot": "application/vnd.ms-fontobject",
}

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Studio not built</title></head>
<body style="font-family: sans-serif; max-width: 44em; margin: 3em auto; line-height: 1.5">
<h1>The studio has not been built</h1>
<p>This server serves the studio's built files from <code>{folder}</code>, and there are none.
Build them with Node.js 20.19+ and npm, from the project's folder:</p>
<pre>make studio</pre>
<p>or</p>
<pre>cd studio &amp;&amp; npm ci &amp;&amp; npm run build</pre>
<p>then reload this page (<code>make run</code> builds it for you when Node.js is installed;
<code>SERVER_STUDIO_DIR</code> points the server at another folder).</p>
<p>The API works without it: see <a href="/openapi.json">/openapi.json</a>.</p>
</body></html>
"""


class Studio:
    """Serves one folder of built files; reads it on every request, so a rebuild needs no
    restart."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder.resolve()

    def _file(self, relative: str) -> Path | None:
        candidate = (self.folder / relative).resolve()
        if not candidate.is_relative_to(self.folder) or not candidate.is_file():
            return None
        return candidate

    def _send(self, path: Path, cache: str) -> Response:
        media_type = MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")
        return FileResponse(
            path,
            media_type=media_type,
            headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff"},
        )

    async def page(self, request: Request) -> Response:
        """The page for /studio and /studio/{id}; a top-level built file when one is named."""
        name = request.path_params.get("name")
        if name and name != INDEX:
            found = self._file(name)
            if found is not None:
                return self._send(found, REVALIDATE)
        index = self._file(INDEX)
        if index is None:
            return HTMLResponse(
                NOT_BUILT.replace("{folder}", str(self.folder)),
                status_code=503,
                headers={"Cache-Control": "no-store"},
            )
        return self._send(index, REVALIDATE)

    async def asset(self, request: Request) -> Response:
        found = self._file("assets/" + request.path_params["path"])
        if found is None:
            return Response("not found", status_code=404, media_type="text/plain")
        return self._send(found, IMMUTABLE)


def studio_routes(folder: Path) -> list[BaseRoute]:
    """The studio as one mount: pages, not API operations, so not in ``/openapi.json``."""
    studio = Studio(folder)
    return [
        Mount(
            "/studio",
            routes=[
                Route("/", studio.page, methods=["GET", "HEAD"]),
                Route("/assets/{path:path}", studio.asset, methods=["GET", "HEAD"]),
                Route("/{name}", studio.page, methods=["GET", "HEAD"]),
            ],
        )
    ]
