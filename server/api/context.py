"""Who is calling, and may they write: the per-request checks every endpoint starts with."""

from __future__ import annotations

from typing import cast

from starlette.requests import Request

from core.errors import PermissionDenied
from persistence.models import Principal
from server.auth import bearer_token
from server.services import Services


def services_of(request: Request) -> Services:
    return cast(Services, request.app.state.services)


async def caller(request: Request) -> tuple[Services, Principal]:
    services = services_of(request)
    token = bearer_token(request.headers.get("authorization"))
    principal = services.user_tokens(token)
    await services.remember_principal(principal)
    return services, principal


async def writer(request: Request) -> tuple[Services, Principal]:
    """A caller allowed to write, within its rate limit."""
    services, principal = await caller(request)
    if principal.role != "editor":
        raise PermissionDenied("viewers cannot change diagrams", role=principal.role)
    await services.limiter.acquire(f"{principal.org_id}:{principal.user_id}")
    return services, principal
