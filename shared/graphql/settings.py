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
from shared.store.replace import Change, replace

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
    return _settings(tenant_id, store.read(TENANTS, tenant_id, SETTINGS_ID), sandbox_marker)


def _settings(tenant_id: str, doc: dict | None, sandbox_marker: bool = False) -> GraphQLSettings:
    doc = doc or {}
    sandbox = tenant_id == SANDBOX or sandbox_marker
    return GraphQLSettings(
        max_depth=min(int(doc.get("maxDepth", DEFAULT_MAX_DEPTH)), CEILING_MAX_DEPTH),
        max_cost=min(int(doc.get("maxCost", DEFAULT_MAX_COST)), CEILING_MAX_COST),
        introspection=sandbox or bool(doc.get("introspection", False)),
    )


def save(store: DocumentStore, tenant_id: str, max_depth: int | None = None, max_cost: int | None = None,
         introspection: bool | None = None) -> Change:
    """Store a tenant's GraphQL settings (the ``updateGraphqlSettings`` mutation), merged onto
    the stored ones (shared.store.replace): concurrent changes are applied one after the
    other, each on the settings it replaces, and a change to what is already stored writes
    nothing (``changed`` False)."""
    asked = {"maxDepth": max_depth, "maxCost": max_cost, "introspection": introspection}

    def build(current: dict | None) -> dict:
        doc = {k: v for k, v in (current or {"id": SETTINGS_ID, "pk": tenant_id,
                                              "docType": "graphqlSettings"}).items() if not k.startswith("_")}
        doc.update({k: v for k, v in asked.items() if v is not None})
        GraphQLSettings(max_depth=doc.get("maxDepth", DEFAULT_MAX_DEPTH),
                        max_cost=doc.get("maxCost", DEFAULT_MAX_COST))  # refuse out-of-range values
        return doc

    done = replace(store, TENANTS, tenant_id, SETTINGS_ID, build, content=lambda doc: {k: doc.get(k) for k in asked})
    before, after = _settings(tenant_id, done.before), _settings(tenant_id, done.after)
    return Change(before, after, done.changed and before != after)
