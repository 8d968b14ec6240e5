"""A tenant's GraphQL settings: query depth and cost limits and whether introspection
(and the GraphiQL page's schema explorer) is on.

Stored beside the tenant's settings (container ``tenants``, partition = the tenant, id
``graphql``) so that it needs no change to ``TenantSettings``; absent means the defaults.
Introspection is on for sandbox tenants (the local first-start tenant ``sandbox``, or any
tenant whose settings carry ``sandbox: true``) and off elsewhere unless the document turns
it on (``introspection: true``)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.local.sandbox import SANDBOX
from shared.store.layout import TENANTS
from shared.store.port import DocumentStore

SETTINGS_ID = "graphql"
DEFAULT_MAX_DEPTH = 10
DEFAULT_MAX_COST = 20_000
# Never more than these, whatever a tenant asks: they bound one request's work.
CEILING_MAX_DEPTH = 20
CEILING_MAX_COST = 200_000


@dataclass(frozen=True)
class GraphQLSettings:
    max_depth: int = DEFAULT_MAX_DEPTH
    max_cost: int = DEFAULT_MAX_COST
    introspection: bool = False

    def __post_init__(self) -> None:
        assert 1 <= self.max_depth <= CEILING_MAX_DEPTH, "depth limit out of range"
        assert 1 <= self.max_cost <= CEILING_MAX_COST, "cost limit out of range"


def load(store: DocumentStore, tenant_id: str, sandbox_marker: bool = False) -> GraphQLSettings:
    doc = store.read(TENANTS, tenant_id, SETTINGS_ID) or {}
    sandbox = tenant_id == SANDBOX or sandbox_marker
    return GraphQLSettings(
        max_depth=min(int(doc.get("maxDepth", DEFAULT_MAX_DEPTH)), CEILING_MAX_DEPTH),
        max_cost=min(int(doc.get("maxCost", DEFAULT_MAX_COST)), CEILING_MAX_COST),
        introspection=sandbox or bool(doc.get("introspection", False)),
    )


def save(store: DocumentStore, tenant_id: str, max_depth: int | None = None, max_cost: int | None = None,
         introspection: bool | None = None) -> GraphQLSettings:
    """Store a tenant's GraphQL settings (the ``updateGraphqlSettings`` mutation); an ETag
    precondition, so of two concurrent changes one fails rather than both half-applying."""
    current = store.read(TENANTS, tenant_id, SETTINGS_ID) or {"id": SETTINGS_ID, "pk": tenant_id,
                                                                 "docType": "graphqlSettings"}
    for name, value in (("maxDepth", max_depth), ("maxCost", max_cost), ("introspection", introspection)):
        if value is not None:
            current[name] = value
    GraphQLSettings(max_depth=current.get("maxDepth", DEFAULT_MAX_DEPTH),
                    max_cost=current.get("maxCost", DEFAULT_MAX_COST))  # refuse out-of-range values
    etag = current.get("_etag")
    store.upsert(TENANTS, {k: v for k, v in current.items() if not k.startswith("_")}, if_match=etag)
    return load(store, tenant_id)
