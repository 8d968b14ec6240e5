"""The tiers application service: programmes, the change-feed subscriber, the
periodic evaluation and the reads of a customer's tier.

Storage:

* the programme of a tenant is one document ``tierprogram`` in the tenant's
  partition of ``tenants`` (ETag-guarded, with a version number); the
  evaluation's progress is ``tierevaluation`` beside it;
* the tier history is in the customer's ledger partition (``shared.tiers.history``);
* the current tier is the profile's ``tier`` (what ``customer.tier`` reads), with
  ``tierChangeSeq`` (the history record it copies), ``tierSince`` and
  ``tierBelowSince`` (the grace clock).

Guarantees:

* **Idempotent and order-insensitive projection.** ``project`` does not apply
  documents as deltas: for each customer a batch touches it re-reads the window
  from the ledger and decides on the current state, so a redelivered, reordered
  or duplicated change decides the same (no-op) outcome. Two projectors racing
  on one customer race on the history record's id; one wins, the other re-decides.
* **A change is decided as of its own time.** The window the projection reads ends
  at the newest ``createdAt`` among the customer's changes in the batch, not at the
  projector's clock: the window value also moves with time alone (a refund's
  claw-back ageing out raises it), and a redelivery days later must not turn that
  drift into an upgrade. A change inside the window the customer's newest tier
  decision read (its ``qualifying.windowEnd``: that decision saw it) or older than the
  programme's tier table (saving one is never retroactive; a save that leaves the
  thresholds and the window as they were, a perk or a name, does not count) decides
  nothing; time-driven changes are the evaluation's job.
* **Upgrades at once, downgrades only at evaluations** (``shared.tiers.evaluation``).
* **Evaluation exactly once per scheduled date, in effect.** ``run_due`` evaluates
  a tenant as of its latest scheduled instant that is newer than the recorded
  one, then records it; a crash part-way is redone by the next run, and each
  customer's decision is idempotent for a given evaluation instant.
* **The profile copy heals.** If the profile missed a history record (a crash
  between the two writes), the next decision on that customer copies it over.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Callable, Iterable
from zoneinfo import ZoneInfo

from shared.app.customers import CustomerService
from shared.app.tenant_changes import TenantCache
from shared.app.tenants import TenantDirectory
from shared.clock import Clock, iso, parse_iso
from shared.domain.money import MINOR_UNITS, fits_minor_unit
from shared.errors import Conflict, DocumentExists, FieldProblem, NotFound, PreconditionFailed, StoreError, ValidationFailed
from shared.ledger.entries import ENTRY_DOC, ORDER_DOC
from shared.store.contention import attempts
from shared.store.layout import CUSTOMERS, TENANTS
from shared.store.port import DocumentStore, Filter, Query
from shared.store.replace import replace
from shared.tiers import evaluation, qualifying, schedule
from shared.tiers.history import TIER_CHANGE_DOC, TierHistory, view
from shared.tiers.model import DaysGrace, NextEvaluationGrace, TierProgram, check_program
from shared.telemetry.logs import fields

log = logging.getLogger("accrue.tiers")

PROGRAM_ID = "tierprogram"
EVALUATION_ID = "tierevaluation"
CACHE_SECONDS = 5.0
PAGE = 500

# (tenantId, customerId, fromTier, toTier, sourceId, changedAt): the tier.changed webhook.
Publisher = Callable[..., object]


@dataclass(frozen=True)
class StoredProgram:
    tenant_id: str
    version: int
    program: TierProgram
    updated_at: str
    # When what decides a tier last changed (``deciding``): a later save that only
    # renamed a tier or added a perk keeps it, so it cancels no upgrade in flight.
    deciding_since: str = ""

    def view(self) -> dict[str, Any]:
        return {"version": self.version, "updatedAt": self.updated_at, **self.program.to_json()}


@dataclass
class EvaluationReport:
    tenant_id: str
    evaluation_at: str
    customers: int = 0
    upgraded: int = 0
    downgraded: int = 0
    in_grace: int = 0
    changes: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"tenantId": self.tenant_id, "evaluationAt": self.evaluation_at, "customers": self.customers,
                "upgraded": self.upgraded, "downgraded": self.downgraded, "inGrace": self.in_grace}


class TierService:
    def __init__(self, store: DocumentStore, clock: Clock, tenants: TenantDirectory,
                 customers: CustomerService) -> None:
        self._store = store
        self._clock = clock
        self._tenants = tenants
        self._customers = customers
        self.history = TierHistory(store)
        # Set by the platform once the webhook service exists: ``WebhookService.tier_changed``.
        self.publish: Publisher | None = None
        self.cache: TenantCache[StoredProgram | None] = TenantCache(CACHE_SECONDS)

    # --- programmes ------------------------------------------------------------------

    def _load(self, tenant_id: str) -> tuple[dict[str, Any] | None, StoredProgram | None]:
        doc = self._store.read(TENANTS, tenant_id, PROGRAM_ID)
        if doc is None:
            return None, None
        return doc, _stored_program(tenant_id, doc)

    def program(self, tenant_id: str) -> StoredProgram | None:
        """The tenant's programme through a short cache (every order and change asks)."""
        return self.cache.get(tenant_id, lambda: self._load(tenant_id)[1])

    def current_program(self, tenant_id: str) -> StoredProgram | None:
        return self._load(tenant_id)[1]

    def save_program(self, tenant_id: str, program: TierProgram) -> tuple[StoredProgram | None, StoredProgram]:
        """Replace the programme (validated whole first); returns (before, after).

        Exactly once per change (``shared.store.replace``): concurrent saves are
        serialised, each built on the one before it (its ``before`` is that one's
        ``after``); a save of the programme already stored writes nothing and
        returns it as both before and after (same version)."""
        check_program(program)
        tenant = self._tenants.get(tenant_id)
        currency = tenant.currency
        # minSpend is money in the tenant's currency: no more decimals than it has (docs/input.md).
        extra = [FieldProblem(f"tiers[{index}].minSpend", f"{currency} amounts have at most {MINOR_UNITS[currency]} "
                              "decimals")
                 for index, tier in enumerate(program.tiers)
                 if tier.min_spend is not None and not fits_minor_unit(tier.min_spend, currency)]
        if extra:
            raise ValidationFailed("the tier table is invalid; nothing was saved", extra)
        now = self._clock.now()
        wanted = program.to_json()
        # Never retroactively: the scheduled date that passed before this save is written into
        # the programme itself, in the same write, so a crash before _start_schedule cannot make
        # the next run evaluate at it.
        passed = schedule.last_evaluation(program, now, ZoneInfo(tenant.time_zone))
        not_before = iso(passed)

        def build(doc: dict[str, Any] | None) -> dict[str, Any]:
            same_rules = doc is not None and deciding(TierProgram.model_validate(doc["program"])) == deciding(program)
            return {"id": PROGRAM_ID, "pk": tenant_id, "docType": "tierProgram", "tenantId": tenant_id,
                    "version": (doc["version"] + 1) if doc else 1, "program": wanted, "updatedAt": iso(now),
                    "decidingSince": (doc.get("decidingSince") or doc["updatedAt"]) if same_rules else iso(now),
                    "notBefore": not_before}

        result = replace(self._store, TENANTS, tenant_id, PROGRAM_ID, build, content=lambda d: d["program"])
        before = _stored_program(tenant_id, result.before) if result.before else None
        after = _stored_program(tenant_id, result.after)
        if result.changed:
            self.cache.invalidate(tenant_id)
            self._start_schedule(tenant_id, passed)
        return before, after

    def delete_program(self, tenant_id: str) -> StoredProgram:
        """No more tiers: evaluations stop, multipliers read 1. Customers keep their
        tier name and history (a programme saved later replaces unknown tiers at its
        first evaluation)."""
        for _ in attempts():
            doc, before = self._load(tenant_id)
            if doc is None or before is None:
                # Also the answer to a delete that lost to a concurrent one: it is gone.
                raise NotFound("the tenant has no tier programme")
            try:
                self._store.delete(TENANTS, tenant_id, PROGRAM_ID, if_match=doc["_etag"])
            except StoreError:
                continue  # deleted or replaced meanwhile (the precondition failed): read again and decide again
            self.cache.invalidate(tenant_id)
            return before
        raise Conflict("the tier programme kept changing while it was being deleted; try again")

    def _start_schedule(self, tenant_id: str, last: datetime) -> None:
        """A saved programme is first evaluated at its *next* scheduled date, never
        retroactively at ``last``, the one that passed before it was saved."""
        state = self._store.read(TENANTS, tenant_id, EVALUATION_ID)
        if state is not None and state.get("lastEvaluationAt") and parse_iso(state["lastEvaluationAt"]) >= last:
            return
        self._store.upsert(TENANTS, {"id": EVALUATION_ID, "pk": tenant_id, "docType": "tierEvaluation",
                                     "tenantId": tenant_id, "lastEvaluationAt": iso(last),
                                     "lastRunAt": state.get("lastRunAt") if state else None})

    def _zone(self, tenant_id: str) -> ZoneInfo | None:
        """The tenant's time zone; None if the tenant no longer exists."""
        try:
            return ZoneInfo(self._tenants.get(tenant_id).time_zone)
        except NotFound:
            return None

    def multiplier(self, tenant_id: str, tier: str | None) -> Decimal:
        """The earning multiplier of a tier (1 for no tier, an unknown tier, or no programme)."""
        stored = self.program(tenant_id) if tier else None
        definition = stored.program.tier(tier) if stored else None
        return definition.multiplier if definition else Decimal(1)

    # --- deciding for one customer ---------------------------------------------------

    def _decide(self, tenant_id: str, customer_id: str, stored: StoredProgram, zone: ZoneInfo, now: datetime,
                evaluation_at: datetime | None) -> tuple[str, dict[str, Any] | None]:
        """Decide and write; returns (outcome, history record or None).

        ``now`` is where the window ends: the run's time for an evaluation, the
        change's own time for the projection (see ``project``).

        Outcome: ``upgraded`` | ``downgraded`` | ``in-grace`` | ``unchanged`` | ``unknown``."""
        program = stored.program
        for _ in attempts():
            profile = self._customers.find(tenant_id, customer_id)
            if profile is None:
                return "unknown", None
            newest = self.history.newest(tenant_id, customer_id)
            if newest is not None and profile.get("tierChangeSeq") != newest["changeSeq"]:
                if not self._copy_to_profile(profile, newest):
                    continue
                profile = self._customers.find(tenant_id, customer_id) or profile
            if evaluation_at is None and not self._change_is_new(stored, newest, now):
                return "unchanged", None
            below = profile.get("tierBelowSince")
            state = evaluation.TierState(
                tier=newest["toTier"] if newest is not None else profile.get("tier"),
                below_since=parse_iso(below) if below else None)
            values = qualifying.read(self._store, tenant_id, customer_id,
                                     schedule.window_start(now, program.window_months, zone), now)
            decision = (evaluation.on_change(program, state, values) if evaluation_at is None
                        else evaluation.at_evaluation(program, state, values, evaluation_at, zone))
            if decision.changes:
                seq = (newest["changeSeq"] if newest is not None else 0) + 1
                up = program.rank(decision.tier) > program.rank(state.tier)
                record = {
                    "tenantId": tenant_id, "customerId": customer_id, "changeSeq": seq,
                    "fromTier": state.tier, "toTier": decision.tier, "direction": "up" if up else "down",
                    "reason": decision.reason, "trigger": "projection" if evaluation_at is None else "evaluation",
                    "qualifying": values.to_json(),
                    "evaluationAt": iso(evaluation_at) if evaluation_at is not None else None,
                    "belowSince": iso(state.below_since) if state.below_since else None,
                    "programVersion": stored.version, "at": iso(self._clock.now()),
                }
                try:
                    written = self.history.append(record)
                except DocumentExists:
                    continue  # another writer changed this customer's tier first: decide again
                self._copy_to_profile(profile, written)
                return ("upgraded" if up else "downgraded"), written
            if decision.below_since != state.below_since:
                try:
                    self._store.upsert(CUSTOMERS, dict(
                        _stored(profile), tierBelowSince=iso(decision.below_since) if decision.below_since else None,
                        updatedAt=iso(self._clock.now())),
                        if_match=profile["_etag"])
                except PreconditionFailed:
                    continue
            return ("in-grace" if decision.below_since else "unchanged"), None
        raise Conflict(f"customer {customer_id}: the tier kept changing under the decision; retry")

    @staticmethod
    def _change_is_new(stored: StoredProgram, newest: dict[str, Any] | None, changed_at: datetime) -> bool:
        """May a change recorded at ``changed_at`` still decide an upgrade?

        Not if the newest tier decision read a window holding the change (an
        evaluation may since have downgraded, and re-deciding the old change would
        undo it): its window ended after ``changed_at``. That end is the instant the
        decision was made *as of*, not when it was written (``at``, later by the
        projector's own work): an earn committed in between was not in the window,
        and comparing with ``at`` lost its upgrade (an outside review). Not if the
        programme's tier table was saved after it: a programme is never applied
        retroactively. Equal instants decide (two earns in one clock tick are both
        new), which is still idempotent: the decision as of that instant saw the
        same window."""
        if newest is not None and parse_iso(_decided_as_of(newest)) > changed_at:
            return False
        return parse_iso(stored.deciding_since or stored.updated_at) <= changed_at

    def _copy_to_profile(self, profile: dict[str, Any], record: dict[str, Any]) -> bool:
        """Make the profile show ``record`` (unless it already shows a newer one); False on a lost race."""
        if (profile.get("tierChangeSeq") or 0) >= record["changeSeq"]:
            return True
        updated = dict(_stored(profile), tier=record["toTier"], tierChangeSeq=record["changeSeq"],
                       tierSince=record["at"], tierBelowSince=None,
                       # The customers export selects changed profiles on updatedAt.
                       updatedAt=iso(self._clock.now()))
        try:
            self._store.upsert(CUSTOMERS, updated, if_match=profile["_etag"])
            return True
        except PreconditionFailed:
            fresh = self._customers.find(record["tenantId"], record["customerId"])
            return fresh is not None and self._copy_to_profile(fresh, record)

    # --- the change-feed subscriber --------------------------------------------------

    def project(self, docs: Iterable[dict[str, Any]]) -> int:
        """Ledger documents in: upgrades decided, ``tier.changed`` webhooks published."""
        # Per customer touched: the newest createdAt among its changes, where the window ends.
        touched: dict[tuple[str, str], datetime] = {}
        changes: list[dict[str, Any]] = []
        for doc in docs:
            kind = doc.get("docType")
            if kind == TIER_CHANGE_DOC:
                changes.append(doc)
                continue
            qualifies = (kind == ENTRY_DOC and doc.get("entryType") in qualifying.QUALIFYING_TYPES
                         and doc.get("status") == "COMMITTED") or \
                (kind == ORDER_DOC and doc.get("status") in ("credited", "held"))
            if qualifies:
                # Every ledger document carries the instant the ledger recorded it; without it
                # the change could not be decided reproducibly, so stop loudly.
                assert doc.get("createdAt"), f"ledger document {doc.get('id')} has no createdAt"
                key, at = (doc["tenantId"], doc["customerId"]), parse_iso(doc["createdAt"])
                touched[key] = max(at, touched.get(key, at))
        decided = 0
        for (tenant_id, customer_id), changed_at in touched.items():
            stored = self.program(tenant_id)
            zone = self._zone(tenant_id) if stored is not None else None
            if stored is None or zone is None:
                continue  # no programme, or a tenant deleted meanwhile: nothing to decide
            outcome, _ = self._decide(tenant_id, customer_id, stored, zone, changed_at, None)
            decided += outcome == "upgraded"
        for change in changes:
            if self.publish is not None:
                # Source = the record: a redelivered record maps to the same message id.
                self.publish(change["tenantId"], change["customerId"], change.get("fromTier"), change.get("toTier"),
                             source_id=f"{change['pk']}:{change['id']}", changed_at=change.get("at"))
        return decided

    # --- the periodic evaluation -----------------------------------------------------

    def evaluate_tenant(self, tenant_id: str, evaluation_at: datetime) -> EvaluationReport:
        """Evaluate every customer of the tenant as of the scheduled instant ``evaluation_at``.

        The window ends now (the run's time), so an upgrade the projection made
        after ``evaluation_at`` is not mistaken for a drop; grace is measured in
        scheduled instants."""
        stored = self.current_program(tenant_id)
        report = EvaluationReport(tenant_id, iso(evaluation_at))
        if stored is None:
            return report
        zone = ZoneInfo(self._tenants.get(tenant_id).time_zone)
        now = self._clock.now()
        after: str | None = None
        while True:
            page = self._customers.list(tenant_id, after, PAGE)
            for customer in page:
                report.customers += 1
                outcome, record = self._decide(tenant_id, customer["customerId"], stored, zone, now, evaluation_at)
                if outcome == "upgraded":
                    report.upgraded += 1
                elif outcome == "downgraded":
                    report.downgraded += 1
                elif outcome == "in-grace":
                    report.in_grace += 1
                if record is not None:
                    report.changes.append(view(record))
            if len(page) < PAGE:
                break
            after = page[-1]["customerId"]
        return report

    def run_due(self) -> list[EvaluationReport]:
        """The timer job: each tenant whose latest scheduled evaluation has not run yet."""
        reports = []
        failed = []
        for doc in self._programme_docs():
            tenant_id = doc["tenantId"]
            try:
                report = self.run_tenant(tenant_id)
            except Exception as exc:  # noqa: BLE001 - one tenant's failure must not stop the others
                failed.append(tenant_id)
                log.error("tier evaluation failed: %s: %s; the next run redoes it", type(exc).__name__, exc,
                          extra=fields(job="tiers", tenant=tenant_id, error=type(exc).__name__))
                continue
            if report is not None:
                reports.append(report)
        if failed:
            raise RuntimeError(f"tier evaluation failed for tenant(s) {', '.join(failed)}; see the log")
        return reports

    def run_tenant(self, tenant_id: str) -> EvaluationReport | None:
        doc, stored = self._load(tenant_id)
        zone = self._zone(tenant_id) if stored is not None else None
        if doc is None or stored is None or zone is None:
            return None  # a deleted tenant's leftover programme is never evaluated
        due = schedule.last_evaluation(stored.program, self._clock.now(), zone)
        if doc.get("notBefore") and parse_iso(doc["notBefore"]) >= due:
            return None  # the date passed before this programme was saved
        state = self._store.read(TENANTS, tenant_id, EVALUATION_ID)
        if state is not None and state.get("lastEvaluationAt") and parse_iso(state["lastEvaluationAt"]) >= due:
            return None
        # A scheduled evaluation is a local date: after the tenant's zone moved west, the date
        # already evaluated comes round again hours later as a later instant (found by an outside
        # review: a customer in grace was downgraded by that second run).
        day = due.astimezone(zone).date().isoformat()
        if state is not None and state.get("lastEvaluationDate") and state["lastEvaluationDate"] >= day:
            return None
        report = self.evaluate_tenant(tenant_id, due)
        self._store.upsert(TENANTS, {"id": EVALUATION_ID, "pk": tenant_id, "docType": "tierEvaluation",
                                     "tenantId": tenant_id, "lastEvaluationAt": iso(due), "lastEvaluationDate": day,
                                     "lastRunAt": iso(self._clock.now()), "lastReport": report.to_json()})
        log.info("tier evaluation as of %s: %s", iso(due), report.to_json(), extra=fields(job="tiers", tenant=tenant_id))
        return report

    def _programme_docs(self) -> Iterable[dict[str, Any]]:
        after = ""
        while True:
            page = self._store.query(TENANTS, Query(pk=None, filters=(Filter("docType", "=", "tierProgram"),
                                                                      Filter("pk", ">", after)),
                                                    order_by="pk", limit=PAGE))
            yield from page
            if len(page) < PAGE:
                return
            after = page[-1]["pk"]

    # --- reads -----------------------------------------------------------------------

    def customer_tier(self, tenant_id: str, customer_id: str) -> dict[str, Any]:
        profile = self._customers.get(tenant_id, customer_id)
        stored = self.program(tenant_id)
        tier = profile.get("tier")
        answer: dict[str, Any] = {"customerId": customer_id, "tier": tier, "since": profile.get("tierSince"),
                                  "multiplier": str(self.multiplier(tenant_id, tier)),
                                  "belowSince": profile.get("tierBelowSince"), "graceUntil": None,
                                  "qualifying": None, "nextEvaluationAt": None, "programVersion": None}
        if stored is None:
            return answer
        zone = ZoneInfo(self._tenants.get(tenant_id).time_zone)
        now = self._clock.now()
        program = stored.program
        values = qualifying.read(self._store, tenant_id, customer_id,
                                 schedule.window_start(now, program.window_months, zone), now)
        answer.update(qualifying=values.to_json(), programVersion=stored.version,
                      nextEvaluationAt=iso(schedule.next_evaluation(program, now, zone)))
        below = profile.get("tierBelowSince")
        if below:
            below_at = parse_iso(below)
            if isinstance(program.grace, DaysGrace):
                # The first evaluation on or after N local days; the instant N days on is the earliest.
                local = below_at.astimezone(zone)
                answer["graceUntil"] = iso((local.replace(tzinfo=None) + timedelta(days=program.grace.days))
                                           .replace(tzinfo=zone).astimezone(below_at.tzinfo))
            elif isinstance(program.grace, NextEvaluationGrace):
                answer["graceUntil"] = iso(schedule.next_evaluation(program, below_at, zone))
        return answer


def _stored_program(tenant_id: str, doc: dict[str, Any]) -> StoredProgram:
    return StoredProgram(tenant_id, doc["version"], TierProgram.model_validate(doc["program"]), doc["updatedAt"],
                         doc.get("decidingSince") or doc["updatedAt"])


def deciding(program: TierProgram) -> tuple[Any, ...]:
    """What decides a customer's tier on a change: the window and each tier's rank and
    thresholds (not its display name, multiplier or perks, nor the schedule or grace,
    which only evaluations use)."""
    return (program.window_months, tuple((t.name, t.min_points, t.min_spend) for t in program.tiers))


def _decided_as_of(record: dict[str, Any]) -> str:
    """The instant a tier record's decision read its window up to (its ``at`` for a record
    without one)."""
    return (record.get("qualifying") or {}).get("windowEnd") or record["at"]


def _stored(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in ("_etag", "_ts")}
