"""The ``Query`` root: what the REST API reads, over the same application services, with
the same capabilities per field (``read`` for customers and orders, ``report`` for rule sets
and experiments, ``admin`` for webhooks and exports). Every field that takes ``tenantId``
refuses a tenant other than the key's own."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Optional

import strawberry
from strawberry.scalars import JSON

from shared.api.pagination import SCAN_LIMIT
from shared.graphql import stats
from shared.graphql.auth import require, same_tenant
from shared.graphql.errors import QueryRefused
from shared.graphql.limits import bounded
from shared.graphql.performance import MAX_DAYS
from shared.graphql.types import (
    Activation,
    ArmResult,
    Customer,
    CustomerConnection,
    CustomerEdge,
    DifferenceInterval,
    Experiment,
    ExperimentResults,
    Granularity,
    Order,
    PageInfo,
    RulePerformance,
    RuleSeries,
    RuleSetVersion,
    Viewer,
    WebhookEndpoint,
    decode_cursor,
    encode_cursor,
)
from shared.webhooks.service import endpoint_view

Info = strawberry.Info
# A tag filter is applied to pages read in id order; this bounds the documents read for one page.
TAG_SCAN_LIMIT = 5_000


def _interval(found: stats.Interval | None) -> DifferenceInterval | None:
    if found is None:
        return None
    return DifferenceInterval(estimate=found.estimate, low=found.low, high=found.high,
                              confidence=found.confidence, method=found.method, significant=found.significant)


def _dump(model: Any) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True)


@strawberry.type
class Query:
    @strawberry.field(description="Who this key is: its tenant and role.")
    def viewer(self, info: Info) -> Viewer:
        who = info.context.principal
        return Viewer(tenant_id=who.tenant_id, key_id=who.key_id, role=who.role.value)

    @strawberry.field(description="Customers in id order, filtered by tier, tag and join date (inclusive); "
                                  "a cursor connection: pass pageInfo.endCursor as after.")
    async def customers(self, info: Info, tenant_id: Optional[str] = None, first: int = 50,
                        after: Optional[str] = None, tier: Optional[str] = None, tag: Optional[str] = None,
                        joined_from: Optional[date] = None, joined_to: Optional[date] = None) -> CustomerConnection:
        require(info, "read")
        tenant = same_tenant(info, tenant_id)
        context, limit = info.context, bounded(first)
        position = decode_cursor(after) if after else None
        found: list[dict[str, Any]] = []
        scanned, more = 0, False
        while True:
            batch = limit + 1 if tag is None else min(SCAN_LIMIT, limit * 4 + 1)
            docs = await context.call(context.platform.customers.search, tenant, position, batch, tier=tier,
                                      joined_from=joined_from.isoformat() if joined_from else None,
                                      joined_to=joined_to.isoformat() if joined_to else None)
            scanned += len(docs)
            found += [d for d in docs if tag is None or tag in (d.get("tags") or ())]
            if len(found) > limit:
                more, found = True, found[:limit]
                break
            if len(docs) < batch:
                break
            position = docs[-1]["customerId"]
            if scanned >= TAG_SCAN_LIMIT:
                more = True  # the caller continues from endCursor
                break
        for doc in found:
            context.loaders.customers.prime(doc["customerId"], doc)
        edges = [CustomerEdge(cursor=encode_cursor(d["customerId"]), node=Customer.of(d)) for d in found]
        end = edges[-1].cursor if edges else (encode_cursor(position) if more and position else None)
        return CustomerConnection(edges=edges, page_info=PageInfo(has_next_page=more, end_cursor=end))

    @strawberry.field(description="One customer; null when the tenant has no such customer.")
    async def customer(self, info: Info, id: str, tenant_id: Optional[str] = None) -> Optional[Customer]:
        require(info, "read")
        same_tenant(info, tenant_id)
        doc = await info.context.loaders.customers.load(id)
        return Customer.of(doc) if doc is not None else None

    @strawberry.field(description="Orders' statuses by id (as GET /v1/orders/{id}); unknown ids are an error.")
    async def orders(self, info: Info, ids: list[str], tenant_id: Optional[str] = None) -> list[Order]:
        require(info, "read")
        tenant = same_tenant(info, tenant_id)
        context = info.context
        bounded(len(ids) or 1)
        views = await context.call(context.platform.intake.statuses, tenant, list(ids))
        return [Order.of(v) for v in views]

    @strawberry.field(description="The tier programme and its evaluation schedule; null when none is defined.")
    async def tier_program(self, info: Info) -> Optional[JSON]:
        require(info, "read")
        context = info.context
        stored = await context.call(context.platform.tiers.current_program, context.tenant_id)
        return stored.view() if stored is not None else None

    @strawberry.field(description="Saved versions of a rule set, newest first, without sources.")
    async def rule_set_versions(self, info: Info, rule_set_id: str, first: int = 50) -> list[RuleSetVersion]:
        require(info, "report")
        context = info.context
        versions = await context.call(context.platform.rule_sets.list_versions, context.tenant_id, rule_set_id,
                                      bounded(first))
        return [_version(_dump(v)) for v in versions]

    @strawberry.field(description="One saved version with its source.")
    async def rule_set_version(self, info: Info, rule_set_id: str, version: int) -> RuleSetVersion:
        require(info, "report")
        context = info.context
        found = await context.call(context.platform.rule_sets.get_version, context.tenant_id, rule_set_id, version)
        return _version(_dump(found))

    @strawberry.field(description="What ingestion applies now: the active version and any running experiment.")
    async def active_rule_set(self, info: Info) -> Optional[JSON]:
        require(info, "report")
        context = info.context
        current = await context.call(context.platform.rule_sets.active, context.tenant_id)
        return _dump(current) if current is not None else None

    @strawberry.field(description="The activation log, newest first.")
    async def rule_set_activations(self, info: Info, first: int = 50) -> list[Activation]:
        require(info, "report")
        context = info.context
        logged = await context.call(context.platform.rule_sets.activations, context.tenant_id, bounded(first))
        out = []
        for activation in map(_dump, logged):
            out.append(Activation(rule_set_id=activation["ruleSetId"], version=activation["version"],
                                  at=activation["at"], by=activation["by"], reason=activation["reason"],
                                  previous_version=activation.get("previousVersion")))
        return out

    @strawberry.field(description="An A/B experiment.")
    async def experiment(self, info: Info, id: str) -> Experiment:
        require(info, "report")
        context = info.context
        found = _dump(await context.call(context.platform.rule_sets.get_experiment, context.tenant_id, id))
        return _experiment(found)

    @strawberry.field(description="Per arm: customers, orders, points, points per order and conversion, and "
                                  "whether B differs from A (95% intervals; see docs/graphql.md).")
    async def experiment_results(self, info: Info, id: str) -> ExperimentResults:
        require(info, "report")
        context = info.context
        experiment, samples, scanned, truncated = await context.call(
            context.platform.rule_admin.arm_samples, context.tenant_id, id)
        refs = {"A": experiment.control, "B": experiment.treatment}
        arms = []
        for arm in ("A", "B"):
            sample = samples[arm]
            buyers = len(sample.orders_per_customer)
            repeat = sum(1 for n in sample.orders_per_customer.values() if n >= 2)
            arms.append(ArmResult(arm=arm, rule_set_id=refs[arm].rule_set_id, version=refs[arm].version,
                                  customers=buyers, orders=sample.orders, points_issued=sample.points,
                                  points_per_order=sample.points / sample.orders if sample.orders else None,
                                  repeat_customers=repeat, conversion=repeat / buyers if buyers else None))
        a, b = samples["A"], samples["B"]
        welch = stats.welch_interval(a.orders, a.points, a.points_squared, b.orders, b.points, b.points_squared)
        newcombe = stats.newcombe_interval(arms[0].repeat_customers, arms[0].customers,
                                           arms[1].repeat_customers, arms[1].customers)
        return ExperimentResults(arms=arms, points_per_order_difference=_interval(welch),
                                 conversion_difference=_interval(newcombe), scanned=scanned, truncated=truncated)

    @strawberry.field(description="Per rule of a saved version: orders evaluated and matched, points issued and "
                                  "share of all points, by day, week or month (UTC), per experiment arm, as series; up to 366 "
                                  "days, from the pre-aggregated daily counters (see docs/graphql.md).")
    async def rule_performance(self, info: Info, rule_set_id: str, version: int,
                               from_: Annotated[date, strawberry.argument(name="from")], to: date,
                               granularity: Granularity = Granularity.DAY) -> RulePerformance:
        require(info, "report")
        context = info.context
        if not 0 <= (to - from_).days < MAX_DAYS:
            raise QueryRefused(f"from must not be after to, and the range is at most {MAX_DAYS} days")
        found = await context.call(context.platform.rule_performance.read, context.tenant_id, rule_set_id,
                                   version, from_, to, granularity.value)
        return RulePerformance(periods=found["periods"], series=[RuleSeries(
            rule=line["rule"], arm=line["arm"], orders_evaluated=line["ordersEvaluated"],
            orders_matched=line["ordersMatched"], points_issued=line["pointsIssued"],
            share_of_points=line["shareOfPoints"], orders=line["orders"]) for line in found["series"]])

    @strawberry.field(description="The tenant's webhook endpoints (never their secrets).")
    async def webhook_endpoints(self, info: Info) -> list[WebhookEndpoint]:
        require(info, "admin")
        context = info.context
        docs = await context.call(context.platform.webhooks.list, context.tenant_id)
        out = []
        for view in map(endpoint_view, docs):
            out.append(WebhookEndpoint(id=view["id"], url=view["url"], event_types=list(view.get("eventTypes") or ()),
                                       description=view.get("description"), status=view.get("status"),
                                       created_at=view.get("createdAt")))
        return out

    @strawberry.field(description="Finished export runs, newest first.")
    async def export_runs(self, info: Info, first: int = 50) -> list[JSON]:
        require(info, "admin")
        context = info.context
        return await context.call(context.platform.exports.runs, context.tenant_id, bounded(first))


def _version(view: dict[str, Any]) -> RuleSetVersion:
    return RuleSetVersion(rule_set_id=view["ruleSetId"], version=view["version"], author=view["author"],
                          created_at=view["createdAt"], reason=view["reason"], cost=view["cost"],
                          rules=view["rules"], source=view.get("source"))


def _experiment(view: dict[str, Any]) -> Experiment:
    return Experiment(experiment_id=view["experimentId"], name=view["name"], control=view["control"],
                      treatment=view["treatment"], treatment_share=float(view["treatmentShare"]),
                      status=view["status"], started_at=view["startedAt"], ended_at=view.get("endedAt"),
                      winner=view.get("winner"))

