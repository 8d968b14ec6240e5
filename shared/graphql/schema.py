"""The assembled schema and the per-request extensions: error codes, the ``dataAsOf``
response extension, and the limits (``shared.graphql.limits``) bound to the request's
tenant settings and variables. ``sdl()`` is what docs/graphql/schema.graphql holds (a test
fails when they drift)."""

from __future__ import annotations

from typing import Any, Iterator

import strawberry
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from shared.graphql.errors import ErrorCodes
from shared.graphql.limits import guard
from shared.graphql.mutations import Mutation
from shared.graphql.queries import Query
from shared.graphql.subscriptions import Subscription


class Limits(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        ctx = self.execution_context
        settings = getattr(ctx.context, "settings", None)
        if settings is not None:
            ctx.validation_rules = (*ctx.validation_rules, guard(settings, ctx.variables))
        yield


class DataAsOf(SchemaExtension):
    """``extensions.dataAsOf`` on every response, as REST's ``dataAsOf``: when the read models
    were last known caught up with the ledger."""

    async def get_results(self) -> dict[str, Any]:
        context = self.execution_context.context
        if getattr(context, "who", None) is None:
            return {}
        return {"dataAsOf": await context.data_as_of()}


class AccrueSchema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        # A client's mistake (a product error, a refused query) is its answer, not a server fault:
        # only unexpected errors reach the log (``shared.graphql.errors.coded`` logs those).
        return None


schema = AccrueSchema(query=Query, mutation=Mutation, subscription=Subscription, extensions=[Limits, ErrorCodes, DataAsOf])


def sdl() -> str:
    return schema.as_str() + "\n"
