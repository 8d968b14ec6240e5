"""The ``Mutation`` root: only the tenant's own GraphQL settings (depth and cost limits,
introspection), for tenant-admins, audited like every admin act. Everything else is written
through the REST API; GraphQL is the reporting side."""

from __future__ import annotations

from typing import Optional

import strawberry

from shared.graphql import settings as graphql_settings
from shared.graphql.auth import require
from shared.graphql.errors import QueryRefused

Info = strawberry.Info


@strawberry.type(description="The tenant's GraphQL limits and introspection switch.")
class GraphQLSettings:
    max_depth: int
    max_cost: int
    introspection: bool


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Change the tenant's GraphQL settings (tenant-admin, audited). Limits are "
                                      f"capped at depth {graphql_settings.CEILING_MAX_DEPTH} and cost "
                                      f"{graphql_settings.CEILING_MAX_COST}; sandbox tenants keep introspection.")
    async def update_graphql_settings(self, info: Info, max_depth: Optional[int] = None,
                                      max_cost: Optional[int] = None,
                                      introspection: Optional[bool] = None) -> GraphQLSettings:
        who = require(info, "admin")
        context = info.context
        if max_depth is not None and not 1 <= max_depth <= graphql_settings.CEILING_MAX_DEPTH:
            raise QueryRefused(f"maxDepth must be 1 to {graphql_settings.CEILING_MAX_DEPTH}")
        if max_cost is not None and not 1 <= max_cost <= graphql_settings.CEILING_MAX_COST:
            raise QueryRefused(f"maxCost must be 1 to {graphql_settings.CEILING_MAX_COST}")
        saved = await context.call(graphql_settings.save, context.platform.store, who.tenant_id,
                                   max_depth=max_depth, max_cost=max_cost, introspection=introspection)
        after = saved.after
        if saved.changed:  # audited once per change, with the settings it replaced
            await context.call(context.platform.audit.record, who.tenant_id, "graphql.settings.changed", who,
                               target=f"graphql:{who.tenant_id}", before=_view(saved.before), after=_view(after))
        return GraphQLSettings(max_depth=after.max_depth, max_cost=after.max_cost,
                               introspection=after.introspection)


def _view(found: graphql_settings.GraphQLSettings) -> dict[str, object]:
    return {"maxDepth": found.max_depth, "maxCost": found.max_cost, "introspection": found.introspection}
