"""The composition root: ``create_app`` wires settings to adapters and routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from core.errors import CollabError
from server.api.table import OPERATIONS
from server.metrics import EdgeMetrics, MetricsExporter
from server.openapi import build_document, routes_for
from server.problems import handle_collab_error, handle_http_exception, handle_unexpected
from server.services import ServiceOverrides, open_services
from server.settings import Settings
from server.studio import studio_routes
from server.ws import collab

log = logging.getLogger(__name__)


def _package_version() -> str:
    try:
        return version("bpmn-collab")
    except PackageNotFoundError:
        return "0.0.0"


_COLLAB_PREFIX = "/collab/"


class CollabApp(Starlette):
    """The app, with the room sockets taken straight to their handler.

    A room socket lives for hours and every frame it sends goes back through the app's
    send chain, so the middleware and router frames Starlette keeps around a WebSocket
    session cost memory for each connection and time for each message. Those layers do
    nothing for ``/collab/{id}``: its handler admits, refuses and closes by itself. Every
    other request, sockets included, takes the ordinary way.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            path: str = scope["path"]
            root = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            diagram_id = path[len(_COLLAB_PREFIX) :]
            if path.startswith(_COLLAB_PREFIX) and diagram_id and "/" not in diagram_id:
                scope["app"] = self
                scope["path_params"] = {"diagram_id": diagram_id}
                await collab(WebSocket(scope, receive, send))
                return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings | None = None, overrides: ServiceOverrides | None = None
) -> Starlette:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_services(settings, overrides) as services:
            app.state.services = services
            app.state.edge_metrics = edge = EdgeMetrics()
            app.state.metrics = MetricsExporter(services, edge)
            log.info(
                "ready: database=%s blobs=%s redis=%s",
                "postgres" if settings.uses_postgres else f"sqlite:{settings.sqlite_path}",
                "s3" if settings.uses_s3 else f"folder:{settings.blob_folder}",
                "yes" if settings.redis.url else "no",
            )
            yield
        log.info("stopped")

    app = CollabApp(
        routes=[
            *routes_for(OPERATIONS),
            WebSocketRoute("/collab/{diagram_id}", collab),
            *studio_routes(settings.server.studio_dir),
        ],
        lifespan=lifespan,
        exception_handlers={
            CollabError: handle_collab_error,
            HTTPException: handle_http_exception,
            Exception: handle_unexpected,
        },
    )
    app.state.settings = settings
    app.state.openapi = build_document(OPERATIONS, title="bpmn-collab", version=_package_version())
    return app


def app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory`` and worker processes: settings from the environment."""
    return create_app(Settings())
