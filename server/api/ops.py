"""Operational endpoints: liveness, readiness, metrics, and the OpenAPI document."""

from __future__ import annotations

from typing import Any, cast

import orjson
from starlette.requests import Request
from starlette.responses import Response

from core.errors import CollabError
from server.api.context import services_of
from server.http import json_response
from server.metrics import CONTENT_TYPE, MetricsExporter
from server.problems import problem_response


async def healthz(request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    services = services_of(request)
    checks: dict[str, str] = {}
    try:
        await services.store.ping()
        checks["database"] = "ok"
    except CollabError as exc:
        checks["database"] = exc.detail
    try:
        await services.blobs.exists("readyz-probe")
        checks["blobs"] = "ok"
    except CollabError as exc:
        checks["blobs"] = exc.detail
    if services.redis is not None:
        try:
            await services.redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:  # redis raises several unrelated types; any means "not ready"
            checks["redis"] = f"unreachable: {type(exc).__name__}"
    failing = sorted(name for name, state in checks.items() if state != "ok")
    if failing:
        return problem_response(
            503,
            code="not_ready",
            title="Not ready",
            detail=f"not reachable: {', '.join(failing)}",
            checks=checks,
            headers={"Retry-After": "5"},
        )
    return json_response({"status": "ok", "checks": checks})


async def metrics(request: Request) -> Response:
    """Prometheus text format. Unauthenticated, like /healthz: keep it off the public
    network (the proxy should not route it; Prometheus scrapes the workers directly)."""
    exporter = cast(MetricsExporter, request.app.state.metrics)
    return Response(await exporter.render(), media_type=CONTENT_TYPE)


async def openapi(request: Request) -> Response:
    document = cast(dict[str, Any], request.app.state.openapi)
    return Response(orjson.dumps(document), media_type="application/json")
