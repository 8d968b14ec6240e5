"""Fraud controls: the checks ingestion and redemptions call, and what they return.

Two entry points:

``FraudControls.screen() -> EarnScreen``
    For one ingest call (shared/app/ingest.py). ``EarnScreen.apply(tenant_id,
    order, head, plan)`` is called inside the ledger plan with the plan that
    ``_credit`` built; it returns the plan unchanged, or the same plan with its
    positive EARN drafts turned PENDING and the order's outcome and record set to
    ``held`` with the reasons (``shared.fraud.holds.hold``). It never refuses an
    order. ``EarnScreen.committed(requests, outcomes)`` is called after the append
    to count the tenant totals. Policies and tenant counters are read once per
    call; the call's own earlier orders are remembered by idempotency key, so a
    re-planned request replaces its own tally instead of adding to it.

``FraudControls.check_redemption(tenant_id, customer_id) -> list[reason]``
    For the redemptions service, to call **inside its ledger plan** (so the count
    is consistent with the append: a plan that lost a race is re-planned). Counts
    the customer's redemptions and conversions (direct or reserved) in the last
    hour; if one more would exceed ``customer.redemptionsPerHour``, returns one
    reason ``{"code": "redemption-velocity", ...}``, else ``[]``. A non-empty list
    means: do not refuse, reserve the points and send the redemption to review
    (``platform.reviews.submit(..., kind="redemption", ...)``), as for one above the
    review threshold.

A reason is ``{"code", "detail", ...numbers}``; codes: ``velocity-customer-hour``,
``velocity-customer-day``, ``velocity-customer-month``, ``velocity-tenant-hour``,
``velocity-tenant-day``, ``distinct-cards``, ``distinct-devices``, ``anomaly``,
``redemption-velocity``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Sequence

from shared.clock import Clock
from shared.domain.orders import Order
from shared.fraud.anomaly import anomaly_reason
from shared.fraud.holds import hold
from shared.fraud.policy import FraudPolicies, FraudPolicy
from shared.fraud.velocity import (DAY, HOUR, MONTH, CustomerWindows, TenantCounters, earned_volume,
                                   redemptions_within)
from shared.ledger.entries import Head
from shared.ledger.service import Ledger, Plan, TransactionOutcome, TransactionRequest
from shared.store.port import DocumentStore

SCREENED_STATUS = "credited"


@dataclass
class _Tally:
    customer_id: str
    points: int
    card: str | None
    device: str | None


class FraudControls:
    def __init__(self, store: DocumentStore, ledger: Ledger, clock: Clock, policies: FraudPolicies) -> None:
        self._store = store
        self._ledger = ledger
        self._clock = clock
        self.policies = policies
        self.counters = TenantCounters(store)

    def now(self) -> datetime:
        return self._clock.now()

    def screen(self) -> "EarnScreen":
        return EarnScreen(self)

    # --- redemptions --------------------------------------------------------------------

    def check_redemption(self, tenant_id: str, customer_id: str) -> list[dict[str, Any]]:
        limit = self.policies.get(tenant_id).customer.redemptions_per_hour
        if limit is None:
            return []
        count = redemptions_within(self._store, tenant_id, customer_id, self._clock.now(), HOUR)
        if count + 1 <= limit:
            return []
        return [{"code": "redemption-velocity",
                 "detail": f"{count + 1} redemptions in one hour exceed the limit of {limit}",
                 "count": count + 1, "limit": limit}]

    # --- earns --------------------------------------------------------------------------

    def earn_reasons(self, tenant_id: str, order: Order, head: Head, points: int, policy: FraudPolicy, *,
                     tenant_totals: tuple[int, int] = (0, 0), batch_cards: set[str] = frozenset(),
                     batch_devices: set[str] = frozenset()) -> list[dict[str, Any]]:
        """Why this earn of ``points`` must be held (empty: credit it). ``tenant_totals``:
        the tenant's hour and day totals including the call's other orders."""
        now = self._clock.now()
        windows = CustomerWindows(self._ledger, self._store, tenant_id, order.customer_id, head, now)
        reasons: list[dict[str, Any]] = []
        c = policy.customer
        for code, limit, window, label in (("velocity-customer-hour", c.points_per_hour, HOUR, "the last hour"),
                                           ("velocity-customer-day", c.points_per_day, DAY, "the last 24 hours"),
                                           ("velocity-customer-month", c.points_per_month, MONTH,
                                            "the last 30 days")):
            if limit is not None:
                total = windows.earned_within(window) + points
                if total > limit:
                    reasons.append(_over(code, total, limit, f"{total} points in {label} for this customer"))
        t = policy.tenant
        for code, limit, total, label in (("velocity-tenant-hour", t.points_per_hour, tenant_totals[0],
                                           "this UTC hour"),
                                          ("velocity-tenant-day", t.points_per_day, tenant_totals[1], "this UTC day")):
            if limit is not None and total + points > limit:
                reasons.append(_over(code, total + points, limit, f"{total + points} points in {label} for the tenant"))
        if c.distinct_cards_per_day is not None or c.distinct_devices_per_day is not None:
            cards, devices = windows.identities(DAY)
            cards |= batch_cards | ({order.card_fingerprint} if order.card_fingerprint else set())
            devices |= batch_devices | ({order.device_id} if order.device_id else set())
            for code, limit, seen, what in (("distinct-cards", c.distinct_cards_per_day, cards, "cards"),
                                            ("distinct-devices", c.distinct_devices_per_day, devices, "devices")):
                if limit is not None and len(seen) > limit:
                    reasons.append(_over(code, len(seen), limit, f"{len(seen)} different {what} in 24 hours"))
        a = policy.anomaly
        # Points earned in any window are at most the customer's whole earned volume (running
        # volumes never go below 0), so a customer whose volume is under the floor needs no read.
        if a.enabled and earned_volume(head) + points > a.floor_points:
            recent = windows.earned_within(DAY) + points
            if recent > a.floor_points:  # under the floor it never holds: spare the baseline read
                baseline = windows.earned_between(DAY + timedelta(days=a.baseline_days), DAY)
                reason = anomaly_reason(recent, baseline, a)
                if reason is not None:
                    reasons.append(reason)
        return reasons


def _over(code: str, value: int, limit: int, what: str) -> dict[str, Any]:
    return {"code": code, "detail": f"{what} exceed the limit of {limit}", "value": value, "limit": limit}


@dataclass
class EarnScreen:
    """The fraud screening of one ingest call (see the module doc)."""

    controls: FraudControls
    _policies: dict[str, FraudPolicy] = field(default_factory=dict)
    _tenant_totals: dict[str, tuple[int, int]] = field(default_factory=dict)
    _tally: dict[tuple[str, str], _Tally] = field(default_factory=dict)
    # Running sums over ``_tally`` (per tenant, per customer), so each order costs O(1)
    # rather than a walk over every order planned before it in the call.
    _tenant_points: dict[str, int] = field(default_factory=dict)
    _by_customer: dict[tuple[str, str], dict[tuple[str, str], _Tally]] = field(default_factory=dict)

    def policy(self, tenant_id: str) -> FraudPolicy:
        if tenant_id not in self._policies:
            self._policies[tenant_id] = self.controls.policies.get(tenant_id)
        return self._policies[tenant_id]

    def apply(self, tenant_id: str, order: Order, head: Head, plan: Plan) -> Plan:
        if plan.outcome.get("status") != SCREENED_STATUS:
            return plan
        policy = self.policy(tenant_id)
        if not policy.screens_earns:
            return plan  # nothing below is read unless earns are screened (the policy is fixed for the call)
        points = int(plan.outcome.get("points", 0))
        key = (tenant_id, order.effective_idempotency_key)
        previous = self._tally.get(key)  # a re-plan of the same order replaces its tally
        if previous is not None:
            self._tenant_points[tenant_id] -= previous.points
            self._by_customer[(tenant_id, previous.customer_id)].pop(key, None)
        extra = self._tenant_points.get(tenant_id, 0)  # the call's other orders of this tenant
        mine = list(self._by_customer.get((tenant_id, order.customer_id), {}).values())
        tally = _Tally(order.customer_id, points, order.card_fingerprint, order.device_id)
        self._tally[key] = tally
        self._tenant_points[tenant_id] = extra + points
        self._by_customer.setdefault((tenant_id, order.customer_id), {})[key] = tally
        if points <= 0:
            return plan
        hour, day = self._stored_totals(tenant_id, policy)
        reasons = self.controls.earn_reasons(
            tenant_id, order, head, points, policy, tenant_totals=(hour + extra, day + extra),
            batch_cards={t.card for t in mine if t.card}, batch_devices={t.device for t in mine if t.device})
        return hold(plan, reasons) if reasons else plan

    def committed(self, requests: Sequence[TransactionRequest], outcomes: Sequence[TransactionOutcome]) -> None:
        """Count what this call credited or held into the tenant counters (tenants with a tenant limit)."""
        totals: dict[str, int] = {}
        for request, outcome in zip(requests, outcomes):
            if outcome.error is not None or outcome.duplicate:
                continue
            if outcome.outcome.get("status") in ("credited", "held"):
                totals[request.tenant_id] = totals.get(request.tenant_id, 0) + int(outcome.outcome.get("points", 0))
        now = self.controls.now()
        for tenant_id, points in totals.items():
            limits = self.policy(tenant_id).tenant
            if limits.points_per_hour is not None or limits.points_per_day is not None:
                self.controls.counters.add(tenant_id, now, points)

    def _stored_totals(self, tenant_id: str, policy: FraudPolicy) -> tuple[int, int]:
        if policy.tenant.points_per_hour is None and policy.tenant.points_per_day is None:
            return 0, 0
        if tenant_id not in self._tenant_totals:
            self._tenant_totals[tenant_id] = self.controls.counters.totals(tenant_id, self.controls.now())
        return self._tenant_totals[tenant_id]
