"""GraphQL errors with a machine-readable ``extensions.code``: the REST problem codes
(``shared.errors``) carried over, so a client branches on the same names over both APIs.

A product error (``AccrueError``) keeps its message and code; anything else is an
``internal`` error whose message is masked (the log has the details)."""

from __future__ import annotations

import logging
from typing import Iterator

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from shared.errors import AccrueError
from shared.telemetry.logs import fields

log = logging.getLogger("accrue.graphql")


class TenantMismatch(AccrueError):
    """A ``tenantId`` argument that is not the key's own tenant."""

    code = "tenant-mismatch"
    status = 403


class QueryRefused(AccrueError):
    """A query refused before execution (depth, cost, introspection, page size)."""

    code = "query-refused"
    status = 400


class ErrorCodes(SchemaExtension):
    """Stamps ``extensions.code`` (and ``status``) on every error of the result."""

    def on_validate(self) -> Iterator[None]:
        yield
        # Errors before execution (a value a scalar cannot represent, an unknown field) are the
        # query's: ``validation-failed`` with GraphQL's own message. Changed in place: the
        # list is the one the answer is built from.
        errors = self.execution_context.pre_execution_errors
        if errors:
            errors[:] = [error if error.extensions and "code" in error.extensions else GraphQLError(
                error.message, error.nodes, error.source, error.positions, error.path, error.original_error,
                {**(error.extensions or {}), "code": "validation-failed", "status": 422}) for error in errors]

    def on_execute(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is None or not result.errors:
            return
        result.errors = [coded(error) for error in result.errors]


def coded(error: GraphQLError) -> GraphQLError:
    if error.extensions and "code" in error.extensions:
        return error
    original = error.original_error
    if isinstance(original, AccrueError):
        extensions = {**(error.extensions or {}), "code": original.code, "status": original.status}
        return GraphQLError(original.message, error.nodes, error.source, error.positions, error.path,
                            original, extensions)
    if original is not None:
        log.error("GraphQL resolver failed at %s", error.path, exc_info=original, extra=fields())
        return GraphQLError("internal error", error.nodes, error.source, error.positions, error.path,
                            None, {"code": "internal", "status": 500})
    return error
