"""What one GraphQL request (or one WebSocket connection) carries: the platform, the
authenticated principal, the request's batched loaders, the tenant's GraphQL settings
and the ``dataAsOf`` instant of the read models (read once per request, lazily)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from shared.app.auth import Principal
from shared.errors import Unauthenticated
from shared.graphql.settings import GraphQLSettings
from shared.platform import Platform
from shared.store.port import inline_reads

T = TypeVar("T")


@dataclass
class Context:
    platform: Platform
    who: Principal | None = None
    settings: GraphQLSettings | None = None
    # graphql-transport-ws: the connection_init payload (strawberry sets it).
    connection_params: Any = None
    # The HTTP request or the WebSocket (for the rate limiter and the key's headers).
    connection: Any = None
    loaders: Any = None
    _data_as_of: str | None = field(default=None, repr=False)
    _data_as_of_read: bool = field(default=False, repr=False)

    @property
    def principal(self) -> Principal:
        if self.who is None:
            raise Unauthenticated("an API key is required: Authorization: Bearer <key> or x-api-key: <key>")
        return self.who

    @property
    def tenant_id(self) -> str:
        return self.principal.tenant_id

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a (blocking) service call: inline where the store answers from memory or a local
        file quickly (SQLite: what REST does too), else in a worker thread so the loop stays free."""
        if inline_reads(self.platform.store):
            return fn(*args, **kwargs)
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def data_as_of(self) -> str | None:
        """When the read models were last known caught up with the ledger (the projector's
        checkpoint), as REST reports it: one read per request."""
        if not self._data_as_of_read:
            checkpoint = await self.call(self.platform.checkpoint.load)
            self._data_as_of = checkpoint.get("caughtUpAt")
            self._data_as_of_read = True
        return self._data_as_of
