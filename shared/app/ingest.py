"""Ingestion: the body of the Event Hub trigger, and of the local queue consumer.

``IngestHandler.handle`` takes a batch of bus message bodies and, for each
order, evaluates the tenant's earning rules and appends the outcome to the
customer's ledger partition in one atomic batch: the EARN entries, the order
record and the idempotency marker together. What it guarantees:

* a redelivered message changes nothing (the marker replays the first outcome);
* a malformed message, or an order that can no longer be credited (currency
  changed, customer gone), is not lost: the first goes to the poison store,
  the second is recorded as a REJECTED order with its reason;
* a rule that fails at run time is the evaluator's defined outcome (in the
  trace), never an exception here;
* a store failure propagates, so the caller retries the whole batch (safe,
  because every step is idempotent);
* defence in depth: an order is credited only if its message matches the
  order's tenant-level claim (shared/app/claims.py: same customer, same
  fingerprint). A message without a matching claim (a stray, a forged or a
  changed one) goes to the poison store with the reason and is never credited;
  the claims of a batch are read in one ``read_many``.

Batched evaluation: for tenants on the isolated (wasm) evaluator, whose cost is
a wasmtime call rather than the rules, the first order of each customer in a
batch is evaluated ahead, in one call per compiled rule set and arm, on the
head this process expects. The plan uses that result only if the context it
builds from the true head is the same (and the rules are the same version and
arm); otherwise it evaluates again. So batching changes the cost, never the
points: a stale hint is simply discarded.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, Sequence

from shared.app.claims import claim_key, is_order_claim, matches, published
from shared.app.customers import CustomerService
from shared.app.messages import MalformedMessage, OrderMessage, parse_order_message
from shared.app.poison import PoisonStore
from shared.app.tenants import TenantDirectory
from shared.clock import iso
from shared.domain.tenants import TenantSettings
from shared.earning import CustomerContext, EarningRulesProvider, EarnResult
from shared.errors import AccrueError, NotFound
from shared.expiry.policy import policy_stamp
from shared.ledger.entries import EntryDraft, EntryStatus, EntryType, Head, order_record_id
from shared.ledger.service import Ledger, Plan, TransactionRequest, fingerprint_of
from shared.pending.window import MATURES_AT, matures_at, stamp as window_stamp
from shared.store.layout import ORDER_STATUS, order_pk
from shared.store.port import DocumentStore, read_many
from shared.telemetry import metrics, tracing
from shared.telemetry.logs import fields

if TYPE_CHECKING:
    from shared.fraud.controls import EarnScreen, FraudControls

log = logging.getLogger("accrue.ingest")

MAX_TRACE_ITEMS = 200


@dataclass
class IngestReport:
    credited: int = 0
    rejected: int = 0
    duplicates: int = 0
    poisoned: int = 0
    # Of the poisoned: messages that did not match their order's claim (never credited).
    unclaimed: int = 0
    outcomes: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class _Evaluated:
    """A result computed ahead of the plan, and what it was computed on."""

    context: CustomerContext
    rules_key: tuple
    result: EarnResult


class IngestHandler:
    def __init__(
        self,
        ledger: Ledger,
        tenants: TenantDirectory,
        customers: CustomerService,
        rules: EarningRulesProvider,
        poison: PoisonStore,
        store: DocumentStore,
        tier_multiplier: Callable[[str, str | None], Decimal] | None = None,
    ) -> None:
        # The tier's earning multiplier for ``customer.tier_multiplier`` (shared.tiers); None: 1.
        self._tier_multiplier = tier_multiplier
        self._ledger = ledger
        self._tenants = tenants
        self._customers = customers
        self._rules = rules
        self._poison = poison
        self._store = store
        # Fraud screening (shared.fraud.controls.FraudControls), set by the platform; None: none.
        self.fraud: FraudControls | None = None

    def handle(self, bodies: Sequence[Any], contexts: Sequence[str | None] | None = None) -> IngestReport:
        """``contexts``: each body's W3C traceparent from the bus (None where it has
        none): the batch span links to them, and each order's ledger append span is
        their child (shared.telemetry.tracing)."""
        if not tracing.enabled():
            return self._handle(bodies, None)
        assert contexts is None or len(contexts) == len(bodies)
        with tracing.span("ingest batch", tracing.CONSUMER, links=tracing.links_from(contexts or ()),
                          messages=len(bodies)) as batch:
            report = self._handle(bodies, contexts)
            batch.set_attributes({"accrue.credited": report.credited, "accrue.rejected": report.rejected,
                                  "accrue.duplicates": report.duplicates, "accrue.poisoned": report.poisoned})
            return report

    def _handle(self, bodies: Sequence[Any], contexts: Sequence[str | None] | None) -> IngestReport:
        report = IngestReport()
        messages: list[OrderMessage] = []
        context_of: dict[int, str | None] = {}  # id(message) -> its traceparent
        for index, body in enumerate(bodies):
            try:
                messages.append(parse_order_message(body))
                if contexts is not None:
                    context_of[id(messages[-1])] = contexts[index]
            except MalformedMessage as bad:
                self._poison.put("ingest", body, f"malformed order message: {bad.reason}")
                report.poisoned += 1
        requests: list[TransactionRequest] = []
        accepted: list[OrderMessage] = []
        screen = self.fraud.screen() if self.fraud is not None else None
        known: list[tuple[TenantSettings, OrderMessage]] = []
        for message in messages:
            try:
                known.append((self._tenants.get(message.tenant_id), message))
            except NotFound as missing:
                self._poison.put("ingest", message.to_body(), missing.message, tenant_id=message.tenant_id)
                report.poisoned += 1
        known, prints = self._claimed(known, report)
        # Rule evaluation time per trace context, for the ledger append spans: a span per
        # evaluation would cost more than the evaluation (closures take microseconds).
        span_timings: dict[str, float] = {}
        customers = self._customers_of(known)
        timings: dict[str, list[float]] = {}  # evaluator -> [seconds, orders], recorded once per batch
        ahead = self._evaluate_ahead(known, customers, timings)
        for index, (tenant, message) in enumerate(known):
            requests.append(self._request(tenant, message, customers, screen, ahead.get(index), *prints[index],
                                          timings=timings, span_timings=span_timings))
            accepted.append(message)
        tagged: list[tuple[str, str, tuple[str, ...]]] = []
        spans = self._append_spans(accepted, requests, context_of) if tracing.enabled() else {}
        outcomes = self._ledger.append(requests)
        if screen is not None:
            screen.committed(requests, outcomes)
        if spans:
            _end_append_spans(spans, accepted, requests, outcomes, span_timings)
        committed: list[tuple[dict[str, Any], float]] = []
        for message, request, outcome in zip(accepted, requests, outcomes):
            if outcome.error is not None:
                self._record_refusal(message, outcome.error)
                metrics.order_refused(outcome.error.code)
                report.rejected += 1
                continue
            if not outcome.duplicate:
                committed.append((outcome.outcome, message.accepted_at.timestamp()))
            if outcome.duplicate:
                report.duplicates += 1
            elif outcome.outcome.get("status") == "rejected":
                report.rejected += 1
            else:
                report.credited += 1
                tags = tuple(outcome.outcome.get("tagsAdded", ()))
                if tags:
                    tagged.append((request.tenant_id, request.customer_id, tags))
            report.outcomes.append(outcome.outcome)
        for tenant_id, customer_id, tags in tagged:
            self._customers.add_tags(tenant_id, customer_id, tags)
        metrics.order_outcomes([o for o, _ in committed], [a for _, a in committed],
                               self._ledger.clock.now().timestamp())
        metrics.rule_evaluations(timings)
        return report

    def _append_spans(self, accepted: Sequence[OrderMessage], requests: Sequence[TransactionRequest],
                      context_of: dict[int, str | None]) -> dict[str | None, Any]:
        """A ``ledger append`` span per producer context (one per publish: an order sent
        alone has its own), a child of that context (of the batch span for messages
        without one), covering the batched append; its context goes on the orders'
        entries. Per context rather than per order: a batch of 500 orders from one
        request is one span, not 500 (bench/RESULTS-telemetry.md). Returns the spans
        by the context they gave their orders (``TransactionRequest.trace_context``)."""
        made: dict[str | None, tuple[str | None, Any]] = {}  # producer context -> (own context, span)
        for message, request in zip(accepted, requests):
            producer = context_of.get(id(message))
            if producer is not None and not tracing.sampled(producer):
                continue  # not sampled at the request: nothing to record or carry downstream
            if producer not in made:
                span = tracing.start("ledger append", producer, tenant=message.tenant_id)
                made[producer] = (tracing.traceparent(span) if span.is_recording() else None, span)
            request.trace_context = made[producer][0]
        return {own: span for own, span in made.values() if own is not None}

    def _claimed(self, known: list[tuple[TenantSettings, OrderMessage]], report: IngestReport
                 ) -> tuple[list[tuple[TenantSettings, OrderMessage]], list[tuple[dict[str, Any], str]]]:
        """The messages that match their order's claim (shared/app/claims.py), with each
        one's payload and fingerprint; the others go to the poison store with the reason,
        never to the ledger. The claims are read in one ``read_many`` for the batch."""
        claims = read_many(self._store, ORDER_STATUS,
                           [claim_key(message.tenant_id, message.order.order_id) for _, message in known])
        kept: list[tuple[TenantSettings, OrderMessage]] = []
        prints: list[tuple[dict[str, Any], str]] = []
        for (tenant, message), claim in zip(known, claims):
            order = message.order
            payload = order.to_message()
            fingerprint = fingerprint_of(payload)
            if matches(claim, order.customer_id, fingerprint):
                kept.append((tenant, message))
                prints.append((payload, fingerprint))
                continue
            if claim is None or not is_order_claim(claim):
                reason = f"order {order.order_id!r} has no claim: it was never accepted by the API"
            elif claim["customerId"] != order.customer_id:
                reason = f"order {order.order_id!r} is claimed for another customer than {order.customer_id!r}"
            else:
                reason = f"order {order.order_id!r} differs from the order claimed under its id"
            # The reason goes to the poison store; the line names its kind (the reason can hold a customer id).
            log.error("order not credited: its claim does not match (kept in the poison store)", extra=fields(
                tenant=message.tenant_id, order_id=order.order_id,
                error="claim-missing" if claim is None or not is_order_claim(claim)
                else "claim-for-another-customer" if claim["customerId"] != order.customer_id else "claim-differs"))
            self._poison.put("ingest", message.to_body(), "claim mismatch: " + reason, tenant_id=message.tenant_id)
            report.poisoned += 1
            report.unclaimed += 1
        return kept, prints

    def _customers_of(self, known: Sequence[tuple[TenantSettings, OrderMessage]]
                      ) -> dict[tuple[str, str], dict[str, Any] | None]:
        """The batch's customers, read once per tenant (one store call, not one per order).
        Tags added by this batch's orders are written after its ledger commit, so a
        plan never saw them anyway."""
        wanted: dict[str, list[str]] = {}
        for _, message in known:
            wanted.setdefault(message.tenant_id, []).append(message.order.customer_id)
        return {(tenant_id, customer_id): doc
                for tenant_id, ids in wanted.items()
                for customer_id, doc in self._customers.find_many(tenant_id, ids).items()}

    def _request(self, tenant: TenantSettings, message: OrderMessage,
                 customers: dict[tuple[str, str], dict[str, Any] | None],
                 screen: EarnScreen | None = None, ahead: _Evaluated | None = None,
                 payload: dict[str, Any] | None = None, fingerprint: str | None = None,
                 timings: dict[str, list[float]] | None = None,
                 span_timings: dict[str, float] | None = None) -> TransactionRequest:
        order = message.order
        if payload is None or fingerprint is None:
            payload = message.order.to_message()
            fingerprint = fingerprint_of(payload)

        def plan(head: Head) -> Plan:
            if order.currency != tenant.currency:
                return _rejection(message, "currency-mismatch", f"tenant settles in {tenant.currency}, "
                                  f"order is in {order.currency}", payload, fingerprint)
            customer = customers[(message.tenant_id, order.customer_id)]
            if customer is None:
                return _rejection(message, "unknown-customer", f"customer {order.customer_id!r} does not exist",
                                  payload, fingerprint)
            if customer.get("erasedAt"):
                # An erased customer's account earns nothing new, as transfers to it are refused
                # (docs/privacy.md): the person asked to be forgotten, not to be kept earning.
                return _rejection(message, "customer-erased", f"customer {order.customer_id!r} was erased",
                                  payload, fingerprint)
            context = self._context(message, customer, head)
            rules = self._rules.for_tenant(tenant, order.customer_id)
            if ahead is not None and ahead.context == context and ahead.rules_key == getattr(rules, "batch_key", None):
                result = ahead.result
            else:
                started = time.perf_counter()
                result = rules.evaluate(tenant, order, context)
                seconds = time.perf_counter() - started
                if timings is not None:  # the evaluation-time metric, per evaluator
                    spent = timings.setdefault(tenant.evaluator, [0.0, 0])
                    spent[0] += seconds
                    spent[1] += 1
                if span_timings is not None and request.trace_context is not None:  # the append span's attribute
                    span_timings[request.trace_context] = span_timings.get(request.trace_context, 0.0) + seconds
            # Lots without a rule-given expiry get the tenant policy's, stamped now (docs/expiry.md).
            # A return window (tenant or rule) makes the points pending until maturesAt (docs/pending.md).
            credit = _credit(message, result, payload, fingerprint,
                             policy_stamp(tenant.expiry_policy, tenant.time_zone, message.accepted_at),
                             pending_days=tenant.pending_days, time_zone=tenant.time_zone,
                             tenant=tenant if tenant.wallets is not None else None)
            # The fraud controls may hold the points (PENDING, to review) instead: shared/fraud/controls.py.
            return screen.apply(message.tenant_id, order, head, credit) if screen is not None else credit

        request = TransactionRequest(
            tenant_id=message.tenant_id,
            customer_id=order.customer_id,
            idempotency_key=order.ledger_key,
            fingerprint=fingerprint,
            plan=plan,
        )
        return request

    def _context(self, message: OrderMessage, customer: dict[str, Any], head: Head) -> CustomerContext:
        return CustomerContext(
            customer_id=message.order.customer_id,
            join_date=date.fromisoformat(customer["joinDate"]),
            tier=customer.get("tier"),
            tags=tuple(customer.get("tags", ())),
            lifetime_points=head.lifetime_earned,
            order_count=head.orders_credited,
            tier_multiplier=(self._tier_multiplier(message.tenant_id, customer.get("tier"))
                             if self._tier_multiplier else Decimal(1)),
        )

    def _evaluate_ahead(self, known: Sequence[tuple[TenantSettings, OrderMessage]],
                        customers: dict[tuple[str, str], dict[str, Any] | None],
                        timings: dict[str, list[float]] | None = None) -> dict[int, _Evaluated]:
        """One evaluator call per rule set version and arm for the wasm tenants' orders
        (see the module docstring); index in ``known`` -> result and its inputs."""
        groups: dict[tuple, tuple[TenantSettings, Any, list[tuple[int, Any, CustomerContext]]]] = {}
        seen: set[tuple[str, str]] = set()
        for index, (tenant, message) in enumerate(known):
            order = message.order
            customer_key = (message.tenant_id, order.customer_id)
            # A customer's later orders depend on the earlier ones' outcome: evaluated in their plan.
            if tenant.evaluator != "wasm" or order.currency != tenant.currency or customer_key in seen:
                continue
            seen.add(customer_key)
            customer = customers[customer_key]
            rules = self._rules.for_tenant(tenant, order.customer_id)
            key = getattr(rules, "batch_key", None)
            if customer is None or key is None or not hasattr(rules, "evaluate_batch"):
                continue
            context = self._context(message, customer, self._ledger.peek_head(message.tenant_id, order.customer_id))
            groups.setdefault((tenant.tenant_id, key), (tenant, rules, []))[2].append((index, order, context))
        ahead: dict[int, _Evaluated] = {}
        for (_, key), (tenant, rules, items) in groups.items():
            started = time.perf_counter()
            with tracing.span("rule evaluation", evaluator=tenant.evaluator, orders=len(items)):
                results = rules.evaluate_batch(tenant, [(order, context) for _, order, context in items])
            if timings is not None:
                spent = timings.setdefault(tenant.evaluator, [0.0, 0])
                spent[0] += time.perf_counter() - started
                spent[1] += len(items)
            assert len(results) == len(items)
            for (index, _, context), result in zip(items, results):
                ahead[index] = _Evaluated(context, key, result)
        return ahead

    def _record_refusal(self, message: OrderMessage, error: AccrueError) -> None:
        """An order the ledger refused (its key or id already used otherwise):
        say so on its status, unless a final status is already there."""
        tenant_id, order_id = message.tenant_id, message.order.order_id
        log.warning("order refused by the ledger: %s", error.message,
                    extra=fields(tenant=tenant_id, order_id=order_id, error=error.code))
        existing = self._store.read(ORDER_STATUS, order_pk(tenant_id, order_id), order_id)
        if existing is not None and existing.get("status") in ("credited", "held", "rejected"):
            return
        # Over the order's claim (it matched, or this message would not be here): keep
        # what a resend is judged by (fingerprint, acceptedAt, key); the publish is done.
        kept = published(existing) if is_order_claim(existing) else {}
        self._store.upsert(ORDER_STATUS, {
            **kept,
            "id": order_id, "pk": order_pk(tenant_id, order_id), "docType": "orderStatus",
            "tenantId": tenant_id, "customerId": message.order.customer_id, "orderId": order_id,
            "status": "rejected", "reason": {"code": error.code, "detail": error.message},
        })


def _end_append_spans(spans: dict[str | None, Any], accepted: Sequence[OrderMessage],
                      requests: Sequence[TransactionRequest], outcomes: Sequence[Any],
                      timings: dict[str, float]) -> None:
    """Count each span's orders by outcome (the order id too where it holds one) and end it."""
    tallies: dict[str | None, Counter[str]] = {}
    single: dict[str | None, str] = {}
    for message, request, outcome in zip(accepted, requests, outcomes):
        kind = ("refused" if outcome.error is not None else "duplicate" if outcome.duplicate
                else str(outcome.outcome.get("status")))
        tallies.setdefault(request.trace_context, Counter())[kind] += 1
        single[request.trace_context] = message.order.order_id
    for context, span in spans.items():
        tally = tallies.get(context, Counter())
        count = sum(tally.values())
        attributes: dict[str, Any] = {f"accrue.outcome.{kind}": n for kind, n in tally.items()}
        attributes["accrue.orders"] = count
        if context in timings:
            attributes["accrue.rules.evaluation_ms"] = round(timings[context] * 1000, 3)
        if count == 1:
            attributes["accrue.order_id"] = single[context]
            attributes["accrue.outcome"] = next(iter(tally))
        span.set_attributes(attributes)  # one call: the SDK takes a lock per call
        span.end()


def _credit(message: OrderMessage, result: EarnResult, payload: dict[str, Any], fingerprint: str,
            default_expiry: str | None = None, pending_days: int = 0, time_zone: str = "UTC",
            tenant: TenantSettings | None = None) -> Plan:
    """``payload``: the order as ``Order.to_message`` gives it, ``fingerprint`` its
    fingerprint (both made once per order; the record keeps both, so the projector
    need not hash the order again).

    ``pending_days``: the tenant's return window; a lot's own ``pending_days`` (the
    rule's ``pending for N days``) overrides it. A lot in a window of N > 0 days is
    written PENDING with ``maturesAt`` and without the policy's expiry, which is
    stamped when it matures (shared/pending/window.py).

    ``tenant``: given for a tenant with wallets: each lot goes to the wallet its rule
    names (``into "promo"``; the default wallet when it names none or an unknown one,
    noted in the trace) and is stamped with that wallet's expiry policy."""
    order = message.order
    lots = [lot for lot in result.lots if lot.points != 0] or []
    drafts: list[EntryDraft] = []
    base = dict(reference_order_id=order.order_id, rule_set_id=result.rule_set_id,
                rule_set_version=result.rule_set_version, arm=result.arm)
    trace = list(result.trace[:MAX_TRACE_ITEMS])
    for lot in lots:
        if lot.points < 0:
            # An earning rule cannot take points away: a negative lot is a rule bug,
            # recorded in the trace and credited as zero.
            trace.append({"error": "negative-lot", "rule": lot.rule, "points": lot.points})
            continue
        attributes: dict[str, Any] = {}
        days = lot.pending_days if lot.pending_days is not None else pending_days
        wallet = tenant.wallet_of(lot.wallet) if tenant is not None else None
        if tenant is not None:
            if lot.wallet is not None and lot.wallet != wallet:
                trace.append({"warning": "unknown-wallet", "rule": lot.rule, "wallet": lot.wallet, "into": wallet})
            default_expiry = policy_stamp(tenant.expiry_policy_of(wallet), time_zone, message.accepted_at)
        if lot.expires_at is not None:
            attributes["expiresAt"] = lot.expires_at.isoformat()
        elif default_expiry is not None and days == 0:
            attributes["expiresAt"] = default_expiry
        if lot.rule:
            attributes["rule"] = lot.rule
        status = EntryStatus.COMMITTED
        if days > 0 and lot.points > 0:
            attributes[MATURES_AT] = window_stamp(matures_at(message.accepted_at, days, time_zone))
            status = EntryStatus.PENDING
        drafts.append(EntryDraft(EntryType.EARN, lot.points, status=status, attributes=attributes, wallet=wallet,
                                 **base))
    if not drafts:
        drafts.append(EntryDraft(EntryType.EARN, 0, **base))
    drafts[0] = EntryDraft(**{**drafts[0].__dict__, "counts_order": True})
    points = sum(d.signed_amount for d in drafts)
    outcome = {
        "status": "credited", "orderId": order.order_id, "customerId": order.customer_id, "points": points,
        "ruleSetId": result.rule_set_id, "ruleSetVersion": result.rule_set_version, "arm": result.arm,
        **({"tagsAdded": list(result.tags_to_add)} if result.tags_to_add else {}),
    }
    record = {
        "id": order_record_id(order.order_id), "docType": "order", "orderId": order.order_id,
        "order": payload, "fingerprint": fingerprint, "acceptedAt": iso(message.accepted_at),
        "status": "credited", "points": points, "ruleSetId": result.rule_set_id,
        "ruleSetVersion": result.rule_set_version, "arm": result.arm, "trace": trace,
    }
    return Plan(entries=drafts, outcome=outcome, records=[record])


def _rejection(message: OrderMessage, code: str, detail: str, payload: dict[str, Any], fingerprint: str) -> Plan:
    order = message.order
    reason = {"code": code, "detail": detail}
    outcome = {"status": "rejected", "orderId": order.order_id, "customerId": order.customer_id,
               "points": 0, "reason": reason}
    record = {"id": order_record_id(order.order_id), "docType": "order", "orderId": order.order_id,
              "order": payload, "fingerprint": fingerprint, "acceptedAt": iso(message.accepted_at),
              "status": "rejected", "points": 0, "reason": reason}
    return Plan(entries=[], outcome=outcome, records=[record])
