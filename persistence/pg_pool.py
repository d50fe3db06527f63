"""An asyncpg pool with what every Postgres adapter needs: org-scoped transactions run
as the restricted application role when it is usable, and driver errors translated.

Row-level security keys on ``app.org_id``; under the NOLOGIN role ``bpmn_collab_app``
(which each transaction switches to) it holds even for a superuser connection. The
role is used only when it exists, we may switch to it, and this database's migration
granted it the tables (roles are cluster-wide, grants are not).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from core.errors import StoreUnavailable
from persistence.driver_errors import pg_errors

log = logging.getLogger(__name__)

# A string: asyncpg's classes are generic only in its stubs.
Connection: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"

_CONNECT_TIMEOUT_S = 10.0
# Waiting longer than this for a pooled connection means the database is
# saturated; the caller gets StoreUnavailable (retryable) instead of hanging.
_ACQUIRE_TIMEOUT_S = 30.0

# set_config(..., true) is SET LOCAL (and, for 'role', SET LOCAL ROLE) with the value as a
# bound parameter.
_SCOPE = "SELECT set_config('app.org_id', $1, true)"
_SCOPE_AS_ROLE = "SELECT set_config('app.org_id', $1, true), set_config('role', $2, true)"
_ROLE_STATE = """
SELECT to_regclass('diagrams') IS NOT NULL AS migrated,
       coalesce((SELECT pg_has_role(current_user, r.oid, 'MEMBER')
                        AND coalesce(has_table_privilege(r.oid, to_regclass('diagrams'), 'UPDATE'),
                                     false)
                 FROM pg_roles r WHERE r.rolname = $1), false) AS usable
"""


class PgPool:
    def __init__(
        self, dsn: str, *, pool_min: int, pool_max: int, app_role: str | None, what: str
    ) -> None:
        self._dsn = dsn
        self._pool_min = pool_min
        self._pool_max = pool_max
        self._app_role = app_role
        self._what = what  # "store", "outbox": says which one is not open
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self.role_active = False

    async def open(self) -> None:
        with pg_errors():
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._pool_min,
                max_size=self._pool_max,
                timeout=_CONNECT_TIMEOUT_S,
            )
        self._pool = pool
        try:
            await self.detect_role()
        except BaseException:
            self._pool = None
            await pool.close()
            raise

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def detect_role(self) -> None:
        """Check (at start, and again after migrating) whether the app role can be used."""
        if self._app_role is None:
            self.role_active = False
            return
        async with self.connection() as conn:
            state = await conn.fetchrow(_ROLE_STATE, self._app_role)
        self.role_active = bool(state is not None and state["usable"])
        if not self.role_active and state is not None and state["migrated"]:
            log.warning(
                "role %r is not usable; Postgres row-level security is only enforced "
                "if the connecting user is neither superuser nor BYPASSRLS",
                self._app_role,
            )

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        pool = self._pool
        if pool is None:
            raise StoreUnavailable(f"the Postgres {self._what} is not open")
        with pg_errors():
            async with pool.acquire(timeout=_ACQUIRE_TIMEOUT_S) as conn:
                yield conn

    @asynccontextmanager
    async def transaction(self, org_id: str) -> AsyncIterator[Connection]:
        """A transaction scoped to ``org_id`` ("" sees no organization's diagrams)."""
        async with self.connection() as conn:
            with pg_errors():
                async with conn.transaction():
                    if self.role_active:
                        await conn.execute(_SCOPE_AS_ROLE, org_id, self._app_role)
                    else:
                        await conn.execute(_SCOPE, org_id)
                    yield conn
