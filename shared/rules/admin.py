"""The rule set lifecycle as tenant-admins drive it: ``RuleSetService`` plus what
an administrative act owes the rest of the platform.

``RuleSetAdmin`` is what the HTTP routes (``shared.api.routes.rules``) call. On
top of the lifecycle service it guarantees:

* every save, activation, rollback, experiment start, stop and promotion
  appends an audit record (``platform.audit``), after the act succeeded, and
  an act that was refused writes neither;
* whenever what ingestion applies changes (activate, rollback, experiment
  start/stop/promote), this process's ``RuleSetProvider`` cache for the tenant
  is dropped at once (other processes follow within the provider's TTL) and,
  for a newly active version, a ``ruleset.activated`` webhook is published
  (one per arm when an experiment starts);
* simulation against the tenant's *stored* orders reads the ledger's order
  records and writes nothing;
* experiment results are computed from the ledger's order records, which
  carry the arm, rule set id and version that earned them.

Policies where the issue is silent (documented in docs/rules.md):

* stored orders "of a date range" are the order records *credited* on those
  local dates (tenant time zone), found by the ledger's indexed ``createdAt``;
  at most ``MAX_STORED_ORDERS`` per simulation (the answer says if truncated).
  Each order is evaluated with the customer as they were just before it (join
  date, tier and tags as now; lifetime points and order count from the ledger
  entry just before that order's own entries).
* experiment results count the order records credited while the experiment
  ran that carry an arm and the arm's version; rejected orders are not counted;
  points are those credited at the time (later refunds are not subtracted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Callable, Iterator, Literal
from zoneinfo import ZoneInfo

from pydantic import Field, model_validator

from shared.app.customers import CustomerService
from shared.audit.log import AuditLog, HasActor
from shared.clock import Clock, iso
from shared.domain.inputs import WindowDate
from shared.domain.orders import Order
from shared.domain.tenants import TenantSettings
from shared.errors import ValidationFailed
from shared.ledger.entries import Head
from shared.ledger.service import Ledger
from shared.rules import models
from shared.rules.lifecycle import RuleSetService
from shared.rules.models import _Model
from shared.rules.program import build
from shared.store.layout import LEDGER
from shared.store.port import DocumentStore, Filter, Query
from shared.webhooks.service import WebhookService

MAX_STORED_ORDERS = 500
MAX_RANGE_DAYS = 366
RESULTS_PAGE = 1_000
RESULTS_SCAN_LIMIT = 200_000            # order records read for one results answer at most
COUNTED_STATUSES = ("credited", "held")


# --- inputs and outputs -------------------------------------------------------------


class StoredSimulationInput(_Model):
    """Simulate a source, draft or saved version against the tenant's stored orders."""

    source: models.Source | None = None
    draft_id: str | None = Field(default=None, alias="draftId", max_length=64)
    version: models.VersionRef | None = None
    from_date: WindowDate = Field(alias="from")
    to_date: WindowDate = Field(alias="to")
    evaluator: Literal["closure", "wasm"] | None = None
    limit: int = Field(default=MAX_STORED_ORDERS, ge=1, le=MAX_STORED_ORDERS)

    @model_validator(mode="after")
    def _range(self) -> "StoredSimulationInput":
        if self.to_date < self.from_date:
            raise ValueError("'to' is before 'from'")
        if (self.to_date - self.from_date).days >= MAX_RANGE_DAYS:
            raise ValueError(f"the date range may span at most {MAX_RANGE_DAYS} days")
        return self


class StoredSimulationReport(_Model):
    from_date: date = Field(alias="from")
    to_date: date = Field(alias="to")
    orders_found: int = Field(alias="ordersFound")
    skipped: int                                     # orders whose customer no longer exists
    truncated: bool
    report: models.SimulationReport


class ArmResult(_Model):
    arm: models.Arm
    rule_set_id: str = Field(alias="ruleSetId")
    version: int
    customers: int
    orders: int
    points_issued: int = Field(alias="pointsIssued")
    points_per_order: Decimal | None = Field(alias="pointsPerOrder")


@dataclass
class ArmSample:
    """The counted orders of one arm, as sufficient statistics."""

    orders: int = 0
    points: int = 0
    points_squared: int = 0
    orders_per_customer: dict[str, int] = field(default_factory=dict)

    def add(self, customer_id: str, points: int) -> None:
        self.orders += 1
        self.points += points
        self.points_squared += points * points
        self.orders_per_customer[customer_id] = self.orders_per_customer.get(customer_id, 0) + 1


class ExperimentResults(_Model):
    experiment: models.Experiment
    arms: tuple[ArmResult, ArmResult]
    scanned: int                                     # order records read
    truncated: bool                                  # True: more than RESULTS_SCAN_LIMIT records


# --- the service ----------------------------------------------------------------------


def _reason_text(reason: models.Reason) -> str:
    return f"{reason.code}: {reason.text}"


def _ref(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    return {"ruleSetId": value.rule_set_id, "version": value.version}


# The audit actions of a change of the active version.
ACTIVATION_ACTIONS = frozenset({"ruleset.activated", "ruleset.rolled-back", "ruleset.experiment.promoted"})


class RuleSetAdmin:
    def __init__(self, service: RuleSetService, invalidate: Callable[[str], None], audit: AuditLog,
                 webhooks: WebhookService, store: DocumentStore, ledger: Ledger, customers: CustomerService,
                 clock: Clock) -> None:
        self.service = service
        self._invalidate = invalidate
        self._audit = audit
        self._webhooks = webhooks
        self._store = store
        self._ledger = ledger
        self._customers = customers
        self._clock = clock

    # --- versions ----------------------------------------------------------------------

    def save_version(self, tenant_id: str, data: models.SaveVersionInput, who: HasActor) -> models.VersionInfo:
        info = self.service.save_version(tenant_id, data, actor=who.key_id)
        self._audit.record(tenant_id, "ruleset.version.saved", who, target=f"ruleset:{info.rule_set_id}",
                           after={"ruleSetId": info.rule_set_id, "version": info.version, "cost": info.cost,
                                  "rules": info.rules, "draftId": data.draft_id},
                           reason=_reason_text(data.reason))
        return info

    # --- activation ---------------------------------------------------------------------

    def _activated(self, tenant_id: str, action: str, who: HasActor, before: Any,
                   after: models.ActiveRuleSet, reason: models.Reason, extra: dict[str, Any] | None = None) -> None:
        self._invalidate(tenant_id)
        self._audit.record(tenant_id, action, who, target=f"ruleset:{after.rule_set_id}", before=_ref(before),
                           after={**(_ref(after) or {}), **(extra or {})}, reason=_reason_text(reason))
        self._webhooks.rule_set_activated(tenant_id, after.rule_set_id, after.version,
                                          activated_at=iso(after.activated_at))

    def activate(self, tenant_id: str, data: models.ActivateInput, who: HasActor) -> models.ActiveRuleSet:
        """Audited and announced once per change: activating the active version again changes
        nothing (and records the change's audit record if its process died before it)."""
        done = self.service.activate_once(tenant_id, data, actor=who.key_id)
        if done.changed:
            self._activated(tenant_id, "ruleset.activated", who, done.before, done.after, data.reason)
        else:
            self._record_if_lost(tenant_id, "ruleset.activated", who, done.after, data.reason)
        return done.after

    def rollback(self, tenant_id: str, data: models.ActivateInput, who: HasActor) -> models.ActiveRuleSet:
        done = self.service.rollback_once(tenant_id, data, actor=who.key_id)
        if done.changed:
            self._activated(tenant_id, "ruleset.rolled-back", who, done.before, done.after, data.reason)
        else:
            self._record_if_lost(tenant_id, "ruleset.rolled-back", who, done.after, data.reason)
        return done.after

    def _record_if_lost(self, tenant_id: str, action: str, who: HasActor, active: models.ActiveRuleSet,
                        reason: models.Reason) -> None:
        """On a repeat of the activation in place: its record (and webhook) if the first
        attempt died after the routing and before them (``AuditLog.record_if_lost``; the
        webhook is keyed by the activation, so at most one goes out)."""
        at = iso(active.activated_at)
        previous = next((a.previous_version for a in self.service.activations(tenant_id, 1)
                         if (a.rule_set_id, a.version, a.at) == (active.rule_set_id, active.version,
                                                                 active.activated_at)), None)
        # A record of this version written since the activation is its record: activating the
        # same version again later would have moved the routing's instant.
        recorded = self._audit.record_if_lost(
            tenant_id, ACTIVATION_ACTIONS, action, who, target=f"ruleset:{active.rule_set_id}", since=at,
            matches=lambda r: (r.get("after") or {}).get("version") == active.version,
            before=_ref(previous), after=_ref(active), reason=_reason_text(reason))
        if recorded is not None:
            self._invalidate(tenant_id)
            self._webhooks.rule_set_activated(tenant_id, active.rule_set_id, active.version, activated_at=at)

    # --- experiments --------------------------------------------------------------------

    def start_experiment(self, tenant_id: str, data: models.ExperimentInput, who: HasActor) -> models.Experiment:
        experiment = self.service.start_experiment(tenant_id, data, actor=who.key_id)
        self._invalidate(tenant_id)
        self._audit.record(tenant_id, "ruleset.experiment.started", who,
                           target=f"experiment:{experiment.experiment_id}",
                           after={"name": experiment.name, "control": _ref(experiment.control),
                                  "treatment": _ref(experiment.treatment),
                                  "treatmentShare": str(experiment.treatment_share)},
                           reason=_reason_text(data.reason))
        started = iso(experiment.started_at)
        for arm, ref in (("A", experiment.control), ("B", experiment.treatment)):
            self._webhooks.rule_set_activated(tenant_id, ref.rule_set_id, ref.version, activated_at=started, arm=arm)
        return experiment

    def stop_experiment(self, tenant_id: str, experiment_id: str, reason: models.Reason,
                        who: HasActor) -> models.Experiment:
        ended = self.service.stop_experiment(tenant_id, experiment_id, actor=who.key_id)
        self._invalidate(tenant_id)
        self._audit.record(tenant_id, "ruleset.experiment.stopped", who, target=f"experiment:{experiment_id}",
                           before={"status": "running"}, after={"status": ended.status},
                           reason=_reason_text(reason))
        return ended

    def promote(self, tenant_id: str, experiment_id: str, arm: models.Arm, reason: models.Reason,
                who: HasActor) -> models.ActiveRuleSet:
        before = self.service.active(tenant_id)
        active = self.service.promote(tenant_id, experiment_id, arm, reason, actor=who.key_id)
        self._activated(tenant_id, "ruleset.experiment.promoted", who, before, active, reason,
                        extra={"experimentId": experiment_id, "winner": arm})
        return active

    def results(self, tenant_id: str, experiment_id: str) -> ExperimentResults:
        experiment, samples, scanned, truncated = self.arm_samples(tenant_id, experiment_id)
        arms = {"A": experiment.control, "B": experiment.treatment}
        results = tuple(ArmResult(
            arm=arm, rule_set_id=arms[arm].rule_set_id, version=arms[arm].version,
            customers=len(samples[arm].orders_per_customer), orders=samples[arm].orders,
            points_issued=samples[arm].points,
            points_per_order=(Decimal(samples[arm].points) / samples[arm].orders).quantize(
                Decimal("0.01"), ROUND_HALF_EVEN) if samples[arm].orders else None) for arm in ("A", "B"))
        return ExperimentResults(experiment=experiment, arms=results, scanned=scanned, truncated=truncated)

    def arm_samples(self, tenant_id: str, experiment_id: str) -> tuple[models.Experiment, dict[str, ArmSample],
                                                                         int, bool]:
        """Per arm, the sufficient statistics of the experiment's counted orders (count, sum and sum of
        squares of points, orders per customer): enough for ``results`` and for the significance tests
        of the GraphQL API (``shared.graphql.stats``) without keeping every order. Also the number of
        order records scanned and whether the scan was cut short."""
        experiment = self.service.get_experiment(tenant_id, experiment_id)
        arms = {"A": experiment.control, "B": experiment.treatment}
        samples = {"A": ArmSample(), "B": ArmSample()}
        scanned = 0
        truncated = False
        for record in self._order_records(tenant_id, experiment.started_at, experiment.ended_at):
            if record is None or scanned >= RESULTS_SCAN_LIMIT:
                truncated = True
                break
            scanned += 1
            arm = record.get("arm")
            if arm not in arms or record.get("status") not in COUNTED_STATUSES:
                continue
            ref = arms[arm]
            if record.get("ruleSetId") != ref.rule_set_id or record.get("ruleSetVersion") != ref.version:
                continue                    # an arm stamped by another experiment's version: not ours
            samples[arm].add(record["customerId"], int(record.get("points") or 0))
        return experiment, samples, scanned, truncated

    def _order_records(self, tenant_id: str, start: datetime, end: datetime | None,
                       page: int = RESULTS_PAGE) -> Iterator[dict[str, Any] | None]:
        """The tenant's order records credited in [start, end), oldest first, across customers.

        Paged by ``createdAt``: the next page starts at the last page's newest
        time, skipping the records already seen at exactly that time, so records
        sharing a timestamp are neither lost nor counted twice. Yields ``None``
        (and stops) if a whole page shares one instant, which time paging cannot
        get past: the caller reports its answer as truncated."""
        cursor = iso(start)
        seen_at_cursor: set[tuple[str, str]] = set()
        while True:
            filters = [Filter("docType", "=", "order"), Filter("tenantId", "=", tenant_id),
                       Filter("createdAt", ">=", cursor)]
            if end is not None:
                filters.append(Filter("createdAt", "<", iso(end)))
            docs = self._store.query(LEDGER, Query(pk=None, filters=tuple(filters), order_by="createdAt",
                                                   limit=page))
            fresh = [d for d in docs if (d["pk"], d["id"]) not in seen_at_cursor]
            yield from fresh
            if len(docs) < page:
                return
            if not fresh:
                yield None
                return
            newest = docs[-1]["createdAt"]
            if newest != cursor:
                cursor, seen_at_cursor = newest, set()
            seen_at_cursor |= {(d["pk"], d["id"]) for d in docs if d["createdAt"] == newest}

    # --- simulation against stored orders --------------------------------------------------

    def simulate_stored(self, tenant: TenantSettings, data: StoredSimulationInput) -> StoredSimulationReport:
        """Evaluate against the order records credited in the date range. Writes nothing."""
        zone = ZoneInfo(tenant.time_zone)
        start = datetime.combine(data.from_date, time(0), zone)
        end = datetime.combine(data.to_date + timedelta(days=1), time(0), zone)
        filters = (Filter("docType", "=", "order"), Filter("tenantId", "=", tenant.tenant_id),
                   Filter("createdAt", ">=", iso(start)), Filter("createdAt", "<", iso(end)),
                   Filter("status", "in", list(COUNTED_STATUSES)))
        docs = self._store.query(LEDGER, Query(pk=None, filters=filters, order_by="createdAt", limit=data.limit + 1))
        truncated = len(docs) > data.limit
        cases: list[models.SimulationCase] = []
        skipped = 0
        for doc in docs[:data.limit]:
            case = self._case(tenant.tenant_id, doc)
            if case is None:
                skipped += 1
            else:
                cases.append(case)
        if cases:
            report = self.service.simulate(tenant, models.SimulationInput(
                source=data.source, draft_id=data.draft_id, version=data.version, cases=tuple(cases),
                evaluator=data.evaluator))
        else:
            self._check_target(tenant.tenant_id, data)
            report = models.SimulationReport(total_points=0, orders=())
        return StoredSimulationReport(from_date=data.from_date, to_date=data.to_date,
                                      orders_found=min(len(docs), data.limit), skipped=skipped, truncated=truncated,
                                      report=report)

    def _check_target(self, tenant_id: str, data: StoredSimulationInput) -> None:
        """With no orders to run, still refuse what a simulation with orders would refuse."""
        if sum(x is not None for x in (data.source, data.draft_id, data.version)) != 1:
            raise ValidationFailed("give exactly one of source, draftId or version")
        if data.version is not None:
            self.service.get_version(tenant_id, data.version.rule_set_id, data.version.version)
        else:
            build(data.source if data.source is not None else self.service.get_draft(tenant_id, data.draft_id).source)

    def _case(self, tenant_id: str, record: dict[str, Any]) -> models.SimulationCase | None:
        customer_id = record["customerId"]
        profile = self._customers.find(tenant_id, customer_id)
        if profile is None:
            return None
        order = Order.model_validate(record["order"])
        entries = self._ledger.entries_for_order(tenant_id, customer_id, order.order_id)
        head = Head()
        if entries:
            before = self._ledger.entries(tenant_id, customer_id, before_seq=int(entries[0]["seq"]), limit=1)
            head = Head.from_entry(before[0]) if before else Head()
        customer = models.SimulationCustomer(
            customer_id=customer_id, join_date=date.fromisoformat(profile["joinDate"]), tier=profile.get("tier"),
            tags=tuple(profile.get("tags", ())), lifetime_points=max(0, head.lifetime_earned),
            order_count=max(0, head.orders_credited))
        return models.SimulationCase(order=order, customer=customer)
