"""Who is asking, and may they see this field: the REST API keys and roles, reused.

* HTTP: ``authenticate`` runs the REST ``principal`` dependency itself (same key formats,
  same cache, same rate limits), before any GraphQL work; a request without a valid key
  never reaches the schema and gets the REST 401 problem JSON (``shared.graphql.endpoint``).
* WebSocket (graphql-transport-ws): the key comes in the upgrade request's headers or in
  the ``connection_init`` payload (``{"Authorization": "Bearer <key>"}`` or
  ``{"apiKey": "<key>"}``, what browsers can send); a bad key closes the socket (4403).
* Per field: ``require(info, capability)`` is the REST ``requires(...)``; personal data
  needs ``personal-data`` exactly as ``GET /v1/customers/{id}`` does.
* A ``tenantId`` argument must name the key's own tenant (``same_tenant``), else the
  field fails with ``extensions.code = "tenant-mismatch"``: a key never sees another tenant.
"""

from __future__ import annotations

from typing import Any, Mapping

from fastapi.security import HTTPAuthorizationCredentials
from starlette.requests import HTTPConnection

from shared.api.security import principal
from shared.app.auth import Principal
from shared.errors import Unauthenticated
from shared.graphql.errors import TenantMismatch


def presented_key(headers: Mapping[str, str], params: Any = None) -> tuple[HTTPAuthorizationCredentials | None,
                                                                               str | None]:
    """The key as the REST dependency expects it: (Bearer credentials, x-api-key)."""
    sources: list[Mapping[str, Any]] = [headers]
    if isinstance(params, dict):
        sources.insert(0, {str(k).lower(): v for k, v in params.items()})
    for source in sources:
        authorization = source.get("authorization")
        if isinstance(authorization, str):
            scheme, _, credentials = authorization.partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return HTTPAuthorizationCredentials(scheme="Bearer", credentials=credentials.strip()), None
        for name in ("x-api-key", "apikey"):
            value = source.get(name)
            if isinstance(value, str) and value.strip():
                return None, value.strip()
    return None, None


async def authenticate(connection: HTTPConnection, params: Any = None) -> Principal:
    """The principal of this connection; raises ``Unauthenticated`` (401) or ``RateLimited`` (429)."""
    credentials, header_key = presented_key(connection.headers, params)
    return await principal(connection, credentials, header_key)  # type: ignore[arg-type]


def require(info: Any, capability: str) -> Principal:
    """The REST role check for one field (``Forbidden``: 403 ``forbidden``)."""
    who: Principal = info.context.principal
    who.require(capability)
    return who


def same_tenant(info: Any, tenant_id: str | None) -> str:
    """The key's tenant; a ``tenantId`` argument naming another tenant is refused."""
    own = info.context.tenant_id
    if tenant_id is not None and tenant_id != own:
        raise TenantMismatch(f"this key belongs to tenant {own!r}; it may not read tenant {tenant_id!r}")
    return own


def unauthenticated() -> Unauthenticated:
    return Unauthenticated("an API key is required: Authorization: Bearer <key> or x-api-key: <key>")
