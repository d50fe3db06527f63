"""The composition root: ``create_app`` wires settings to adapters and routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import WebSocketRoute

from core.errors import CollabError
from server.api.table import OPERATIONS
from server.metrics import EdgeMetrics, MetricsExporter
from server.openapi import build_document, routes_for
from server.problems import handle_collab_error, handle_http_exception, handle_unexpected
from server.services import ServiceOverrides, open_services
from server.settings import Settings
from server.ws import collab

log = logging.getLogger(__name__)


def _package_version() -> str:
    try:
        return version("bpmn-collab")
    except PackageNotFoundError:
        return "0.0.0"


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

    app = Starlette(
        routes=[*routes_for(OPERATIONS), WebSocketRoute("/collab/{diagram_id}", collab)],
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
