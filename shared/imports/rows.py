"""Row kinds of an import: what a row of each kind is, and how a chunk of them is applied.

An import file holds rows of one kind. A kind (``RowKind``) is three things:

* ``model``: the pydantic model one row must satisfy (a row that does not is a
  failed row with its line number and reason, and changes nothing);
* ``check``: the store-aware checks of a chunk of valid rows (the customer
  exists...), batched: one store call per chunk, not per row. Run by the
  validation pass of ``mode=all-or-nothing`` and again before applying;
* ``apply``: writes a chunk, **idempotent by each row's own key** (an order's
  id, a customer's id, an award's id): applying a row twice, in one import or
  in two, changes nothing the second time. Every ledger write goes through
  ``Ledger.append`` with an idempotency key derived from the row's key (never
  from the import), the row's own instant as the entries' ``createdAt`` and
  ``imported: true``.

``KINDS`` is the registry: another area adds a kind (a partner's voucher code
pool, say) with ``register``; the job, the API and the CLI take any registered kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Sequence

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from typing_extensions import Annotated

from shared.app.claims import CLAIM_DOC, claim_key, is_order_claim
from shared.app.customers import CustomerExists, CustomerProfile
from shared.clock import iso
from shared.domain.inputs import Instant
from shared.domain.orders import EntityId, Order
from shared.expiry.policy import credit_expiry
from shared.ledger.entries import MAX_POINTS, EntryDraft, EntryType, Head, order_record_id
from shared.ledger.service import Plan, TransactionRequest, fingerprint_of
from shared.store.layout import ORDER_STATUS, SYSTEM
from shared.store.port import Create, PartitionBatch, read_many

if TYPE_CHECKING:
    from shared.imports.service import ImportContext

Points = Annotated[int, Field(ge=0, le=MAX_POINTS)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str
    field: str | None = None


Check = Callable[["ImportContext", Sequence[tuple[int, Any]]], list[RowError]]
Apply = Callable[["ImportContext", Sequence[tuple[int, Any]]], list[RowError]]


def _no_check(ctx: "ImportContext", rows: Sequence[tuple[int, Any]]) -> list[RowError]:
    return []


@dataclass(frozen=True)
class RowKind:
    name: str
    model: type[BaseModel]
    apply: Apply
    check: Check = _no_check
    description: str = ""
    # Whether rows of this kind write the ledger (``evaluate`` is meaningful).
    ledger: bool = True
    extras: dict[str, Any] = field(default_factory=dict)


KINDS: dict[str, RowKind] = {}


def register(kind: RowKind) -> RowKind:
    assert kind.name not in KINDS, f"row kind {kind.name!r} is registered twice"
    KINDS[kind.name] = kind
    return kind


# --- customers --------------------------------------------------------------------------


def _apply_customers(ctx: "ImportContext", rows: Sequence[tuple[int, CustomerProfile]]) -> list[RowError]:
    # Runs of rows with distinct ids, each registered together (register_many: the documents
    # the API's register writes, in a few store calls); an id's next row starts the next run,
    # so it meets its first row's outcome exactly as one by one.
    errors: list[RowError] = []
    run: list[tuple[int, CustomerProfile]] = []
    in_run: set[str] = set()
    for line, profile in rows:
        if profile.customer_id in in_run:
            errors += _register_run(ctx, run)
            run, in_run = [], set()
        run.append((line, profile))
        in_run.add(profile.customer_id)
    return errors + _register_run(ctx, run)


def _register_run(ctx: "ImportContext", run: list[tuple[int, CustomerProfile]]) -> list[RowError]:
    if not run:
        return []
    outcomes = ctx.customers.register_many(ctx.tenant_id, [profile for _, profile in run])
    # An id that exists is a row done: imported before, registered through the API, or
    # registered meanwhile by a concurrent run of it.
    return [RowError(line, error.message) for (line, _), error in zip(run, outcomes)
            if error is not None and not isinstance(error, CustomerExists)]


register(RowKind("customers", CustomerProfile, _apply_customers, ledger=False,
                 description="customer profiles (personal fields are encrypted on the way in)"))


# --- ledger kinds: a shared shape ------------------------------------------------------


def _check_customers_exist(ctx: "ImportContext", rows: Sequence[tuple[int, Any]]) -> list[RowError]:
    found = ctx.customers.find_many(ctx.tenant_id, [row.customer_id for _, row in rows])
    ctx.customer_docs.update({k: v for k, v in found.items() if v is not None})  # evaluate reads them
    errors = []
    for line, row in rows:
        doc = found.get(row.customer_id)
        if doc is None:
            errors.append(RowError(line, f"customer {row.customer_id!r} does not exist (import customers first)",
                                   "customerId"))
        elif doc.get("erasedAt"):  # no new points for an erased customer, as for a live order
            errors.append(RowError(line, f"customer {row.customer_id!r} was erased", "customerId"))
    return errors


def _append(ctx: "ImportContext", rows: Sequence[tuple[int, Any]],
            request_of: Callable[[Any], TransactionRequest]) -> list[RowError]:
    requests = [request_of(row) for _, row in rows]
    # Rows whose key is already in the ledger replay their first outcome without an append:
    # a re-run writes nothing (and does not lean on the store's batch being atomic).
    outcomes = ctx.ledger.known(requests)
    todo = [i for i, outcome in enumerate(outcomes) if outcome is None]
    for index, outcome in zip(todo, ctx.ledger.append([requests[i] for i in todo])):
        outcomes[index] = outcome
    errors: list[RowError] = []
    for (line, _), outcome in zip(rows, outcomes):
        assert outcome is not None
        if outcome.error is not None:
            message = outcome.error.message
            if "idempotency key" in message and "different request" in message:
                message = "this row's key was already imported with other content; nothing was changed"
            errors.append(RowError(line, message))
    return errors


def _expiry(ctx: "ImportContext") -> dict[str, str]:
    """``expiresAt`` of an imported credit: the tenant's expiry policy (its default wallet's),
    counted from the import, as ingestion and adjustments stamp theirs when the entry is
    written (docs/expiry.md). Not from the row's own date: a lot dated years back would be
    past its expiry on arrival, and the old programme's expiries are its own to settle before
    the export (import what is left). Before, imported credits never expired (found by an
    outside review): customers spent their live, expiring points first and kept these."""
    return credit_expiry(ctx.tenant, ctx.now)


def _repeats(rows: Sequence[tuple[int, Any]], errors: list[RowError], keyed: list[tuple[str, Any]],
             refusal: Callable[[int, Any, int], RowError]) -> list[RowError]:
    """The rows of a chunk that repeat an earlier row's key (``keyed``: each row's key and
    content) with other content, each refused by ``refusal(line, row, earlier line)``. The
    same row twice is one row, applied once; a row already in ``errors`` takes no key, so a
    later twin of it is free."""
    failing = {e.line for e in errors}
    first: dict[str, tuple[int, Any]] = {}
    refused: list[RowError] = []
    for (line, row), (key, content) in zip(rows, keyed):
        if line in failing:
            continue
        earlier, held = first.setdefault(key, (line, content))
        if held != content:
            refused.append(refusal(line, row, earlier))
    return refused


def _not_future(ctx: "ImportContext", line: int, moment: datetime, name: str) -> RowError | None:
    if moment > ctx.now:
        return RowError(line, f"{name} is in the future: an import records history", name)
    return None


# --- historical orders ------------------------------------------------------------------


class HistoricalOrder(Order):
    """An order as the API takes it, plus the points the old programme gave it (kept
    as given unless the import asks for ``evaluate``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    points: Points | None = None


def _check_orders(ctx: "ImportContext", rows: Sequence[tuple[int, HistoricalOrder]]) -> list[RowError]:
    errors = _check_customers_exist(ctx, rows)
    for line, order in rows:
        if order.currency != ctx.tenant.currency:
            errors.append(RowError(line, f"currency {order.currency} is not the tenant's ({ctx.tenant.currency})",
                                   "currency"))
        future = _not_future(ctx, line, order.timestamp, "timestamp")
        if future:
            errors.append(future)
    # Read only (the validation pass of all-or-nothing writes nothing): an order id another
    # order holds, or one repeated in this chunk with other content, fails here, before any
    # row is applied. (Repeats further apart in the file fail when applied: left open.)
    fingerprints = [_order_fingerprint(ctx, order)[1] for _, order in rows]
    errors += _repeats(rows, errors, [(order.order_id, (order.customer_id, fingerprint))
                                      for (_, order), fingerprint in zip(rows, fingerprints)],
                       lambda line, order, earlier: RowError(
                           line, f"order id {order.order_id!r} is on line {earlier} too, with other content",
                           "orderId"))
    if ctx.store is not None:
        keys = [claim_key(ctx.tenant_id, order.order_id) for _, order in rows]
        ctx.order_claims.update(zip(keys, read_many(ctx.store, ORDER_STATUS, keys)))
        for (line, order), fingerprint, key in zip(rows, fingerprints, keys):
            held = ctx.order_claims[key]
            if held is not None and (conflict := _claim_conflict(line, order, fingerprint, held)) is not None:
                errors.append(conflict)
    return errors


def _claim_conflict(line: int, order: HistoricalOrder, fingerprint: str, held: dict[str, Any]) -> RowError | None:
    """Why ``held`` (the claim of the row's order id) is not this row's own, or None."""
    if held.get("customerId") == order.customer_id and held.get("fingerprint") == fingerprint:
        return None
    if held.get("customerId") != order.customer_id or not is_order_claim(held):
        return RowError(line, f"order id {order.order_id!r} is already used by another order of this tenant "
                              "(another customer, or an idempotency key)", "orderId")
    return RowError(line, f"order id {order.order_id!r} was already imported with other content (or sent through "
                          "the API); nothing was changed", "orderId")


def _order_fingerprint(ctx: "ImportContext", order: HistoricalOrder) -> tuple[dict[str, Any], str]:
    made = ctx.fingerprints.get(id(order))
    if made is not None and made[0] is order:
        return made[1], made[2]
    payload = order.model_dump(mode="json", by_alias=True, exclude_none=True)
    fingerprint = fingerprint_of({"kind": "orders", "row": payload, "evaluate": ctx.evaluate_key})
    ctx.fingerprints[id(order)] = (order, payload, fingerprint)
    return payload, fingerprint


def _claim_orders(ctx: "ImportContext", rows: Sequence[tuple[int, HistoricalOrder]]
                  ) -> tuple[list[RowError], list[tuple[int, HistoricalOrder]]]:
    """Each imported order claims its id for the tenant, as a send through the API does
    (``shared.app.claims``: a conditional create of the order's status document), so an
    order id names one order: an id already sent or imported for another customer, or with
    other content, fails its row instead of crediting a second customer (found by an outside
    review). A claim this import made before (a re-run, a resumed slice) or the status the
    projector wrote from its record is the row's own. The claim is ``queued`` without a
    ``publishDue``: the relay never publishes it; the projector's status replaces it."""
    if ctx.store is None:
        return [], list(rows)
    store = ctx.store
    keyed = [(line, order, _order_fingerprint(ctx, order)[1]) for line, order in rows]
    keys = [claim_key(ctx.tenant_id, order.order_id) for _, order, _ in keyed]
    # What the chunk's check read (one read for the chunk: a re-run finds every claim and
    # writes nothing); claims it did not read, read now.
    unread = [key for key in keys if key not in ctx.order_claims]
    held = {**ctx.order_claims, **dict(zip(unread, read_many(store, ORDER_STATUS, unread)))} if unread \
        else ctx.order_claims
    return _claim(store, ORDER_STATUS, keyed, keys, [held[key] for key in keys],
                  lambda order, fingerprint, pk, doc_id: {
                      "id": doc_id, "pk": pk, "docType": CLAIM_DOC, "tenantId": ctx.tenant_id,
                      "customerId": order.customer_id, "orderId": order.order_id, "status": "queued",
                      "acceptedAt": iso(order.timestamp), "fingerprint": fingerprint, "imported": True},
                  _claim_conflict)


def _claim(store: Any, container: str, keyed: list[tuple[int, Any, str]], keys: list[tuple[str, str]],
           held: list[dict[str, Any] | None], make: Callable[[Any, str, str, str], dict[str, Any]],
           conflict_of: Callable[[int, Any, str, dict[str, Any]], RowError | None]
           ) -> tuple[list[RowError], list[tuple[int, Any]]]:
    """Claim each row's key (``keyed``: line, row, fingerprint; ``keys`` and what is ``held``
    there already, in the same order) by a conditional create of ``make``'s document, in one
    group of batches; a claim already there (a re-run, another row or writer meanwhile) is the
    row's own unless ``conflict_of`` says why not. The rows claimed, and the others' errors."""
    creating: dict[int, PartitionBatch] = {}  # row index -> the batch creating its claim
    for index, ((_, row, fingerprint), (pk, doc_id), doc) in enumerate(zip(keyed, keys, held)):
        if doc is None:
            creating[index] = PartitionBatch(pk, [Create(make(row, fingerprint, pk, doc_id))])
    if creating:
        store.batches(container, list(creating.values()))
    errors: list[RowError] = []
    claimed: list[tuple[int, Any]] = []
    for index, ((line, row, fingerprint), key, doc) in enumerate(zip(keyed, keys, held)):
        batch = creating.get(index)
        if batch is not None and batch.error is None:
            claimed.append((line, row))
            continue
        # Claimed before this chunk, or by another row or writer while it ran: whose is it?
        doc = doc if batch is None else store.read(container, *key)
        if doc is None:
            assert batch is not None and batch.error is not None
            raise batch.error  # no claim exists: the store's own failure
        conflict = conflict_of(line, row, fingerprint, doc)
        if conflict is None:
            claimed.append((line, row))
        else:
            errors.append(conflict)
    return errors, claimed


def _order_request(ctx: "ImportContext", order: HistoricalOrder) -> TransactionRequest:
    payload, fingerprint = _order_fingerprint(ctx, order)

    def plan(head: Head) -> Plan:
        if ctx.evaluate:
            result = ctx.evaluate_order(order, head)
            points, rule_set_id, version = result.points, result.rule_set_id, result.rule_set_version
        else:
            points, rule_set_id, version = order.points or 0, "import", None
        entry = EntryDraft(EntryType.EARN, points, reference_order_id=order.order_id, rule_set_id=rule_set_id,
                           rule_set_version=version, counts_order=True, attributes=_expiry(ctx))
        outcome = {"status": "credited", "orderId": order.order_id, "customerId": order.customer_id,
                   "points": points, "ruleSetId": rule_set_id, "ruleSetVersion": version, "imported": True}
        record = {"id": order_record_id(order.order_id), "docType": "order", "orderId": order.order_id,
                  "order": payload, "fingerprint": fingerprint, "acceptedAt": order.timestamp.isoformat(),
                  "status": "credited", "points": points, "ruleSetId": rule_set_id, "ruleSetVersion": version,
                  "arm": None, "trace": []}
        return Plan(entries=[entry], outcome=outcome, records=[record])

    return TransactionRequest(ctx.tenant_id, order.customer_id, f"import:order:{order.order_id}", fingerprint,
                              plan, occurred_at=order.timestamp)


def _apply_orders(ctx: "ImportContext", rows: Sequence[tuple[int, HistoricalOrder]]) -> list[RowError]:
    errors, claimed = _claim_orders(ctx, rows)
    return errors + _append(ctx, claimed, lambda order: _order_request(ctx, order))


register(RowKind("orders", HistoricalOrder, _apply_orders, _check_orders,
                 description="historical orders, credited with their own points (or evaluate=true)"))


# --- opening balances -------------------------------------------------------------------


class OpeningBalance(BaseModel):
    """A customer's balance in the old programme, once per customer."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    customer_id: EntityId = Field(alias="customerId")
    points: Points
    as_of: Instant = Field(alias="asOf")


def _check_openings(ctx: "ImportContext", rows: Sequence[tuple[int, OpeningBalance]]) -> list[RowError]:
    errors = _check_customers_exist(ctx, rows)
    errors += [e for line, row in rows if (e := _not_future(ctx, line, row.as_of, "asOf"))]
    # Read only: a second opening balance of a customer (in this chunk, or already in the
    # ledger with other figures) fails here, before any row is applied.
    requests = [_opening_request(ctx, row) for _, row in rows]
    errors += _repeats(rows, errors, [(row.customer_id, request.fingerprint)
                                      for (_, row), request in zip(rows, requests)],
                       lambda line, row, earlier: RowError(
                           line, f"customer {row.customer_id!r} has another opening balance on line {earlier}: "
                                 "one per customer", "customerId"))
    known = ctx.ledger.known(requests)
    errors += [RowError(line, f"customer {row.customer_id!r} already has another opening balance; nothing was "
                              "changed", "customerId")
               for (line, row), outcome in zip(rows, known) if outcome is not None and outcome.error is not None]
    return errors


def _opening_request(ctx: "ImportContext", row: OpeningBalance) -> TransactionRequest:
    payload = row.model_dump(mode="json", by_alias=True)
    outcome = {"status": "opened", "customerId": row.customer_id, "points": row.points, "imported": True}

    def plan(head: Head) -> Plan:
        return Plan(entries=[EntryDraft(EntryType.ADJUST, row.points,
                                        attributes={"reason": "opening-balance", **_expiry(ctx)})],
                    outcome=outcome)

    # One opening balance per customer, whatever file carries it.
    return TransactionRequest(ctx.tenant_id, row.customer_id, f"import:opening:{row.customer_id}",
                              fingerprint_of({"kind": "opening-balances", "row": payload}), plan,
                              occurred_at=row.as_of)


register(RowKind("opening-balances", OpeningBalance,
                 lambda ctx, rows: _append(ctx, rows, lambda row: _opening_request(ctx, row)), _check_openings,
                 description="one opening balance per customer (an ADJUST entry at asOf)"))


# --- bulk awards ------------------------------------------------------------------------


class Award(BaseModel):
    """Points given outside any order (a goodwill gesture, a campaign), by its own id."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    award_id: EntityId = Field(alias="awardId")
    customer_id: EntityId = Field(alias="customerId")
    points: Annotated[int, Field(gt=0, le=MAX_POINTS)]
    reason: Reason
    awarded_at: Instant | None = Field(default=None, alias="awardedAt")


AWARD_CLAIM_DOC = "awardClaim"


def _award_claim_key(tenant_id: str, award_id: str) -> tuple[str, str]:
    """Where an award id's claim lives: a partition of its own in ``system`` (never expires)."""
    return f"award:{tenant_id}:{award_id}", "award-claim"


def _award_conflict(line: int, row: Award, fingerprint: str, held: dict[str, Any]) -> RowError | None:
    """Why ``held`` (the claim of the row's award id) is not this row's own, or None."""
    if held.get("customerId") == row.customer_id and held.get("fingerprint") == fingerprint:
        return None
    if held.get("customerId") != row.customer_id:
        return RowError(line, f"award id {row.award_id!r} was already given to another customer; nothing was "
                              "changed", "awardId")
    return RowError(line, f"award id {row.award_id!r} was already imported with other content; nothing was "
                          "changed", "awardId")


def _check_awards(ctx: "ImportContext", rows: Sequence[tuple[int, Award]]) -> list[RowError]:
    errors = _check_customers_exist(ctx, rows)
    errors += [e for line, row in rows if row.awarded_at and (e := _not_future(ctx, line, row.awarded_at,
                                                                                "awardedAt"))]
    # Read only (the validation pass of all-or-nothing writes nothing): an award id given to
    # another customer or with other content, in this chunk, in the award's claim or in the
    # customer's ledger, fails here, before any row is applied.
    requests = [_award_request(ctx, row) for _, row in rows]
    errors += _repeats(rows, errors, [(row.award_id, (row.customer_id, request.fingerprint))
                                      for (_, row), request in zip(rows, requests)],
                       lambda line, row, earlier: RowError(
                           line, f"award id {row.award_id!r} is on line {earlier} too, for another customer or "
                                 "with other content", "awardId"))
    if ctx.store is not None:
        held = read_many(ctx.store, SYSTEM, [_award_claim_key(ctx.tenant_id, row.award_id) for _, row in rows])
        errors += [conflict for (line, row), request, doc in zip(rows, requests, held)
                   if doc is not None and (conflict := _award_conflict(line, row, request.fingerprint, doc))]
    known = ctx.ledger.known(requests)
    errors += [RowError(line, f"award id {row.award_id!r} was already imported with other content; nothing was "
                              "changed", "awardId")
               for (line, row), outcome in zip(rows, known) if outcome is not None and outcome.error is not None]
    return errors


def _claim_awards(ctx: "ImportContext", rows: Sequence[tuple[int, Award]]
                  ) -> tuple[list[RowError], list[tuple[int, Award]]]:
    """Each award id is claimed for the tenant before its points are written (a conditional
    create, as an order's id is claimed): the ledger's key ``import:award:<id>`` lives in the
    customer's partition, so the same id for another customer was a new key there and the
    award was paid twice (found by an outside review). A claim of the same customer and
    content (a re-run, a resumed slice) is the row's own."""
    if ctx.store is None:
        return [], list(rows)
    store = ctx.store
    keyed = [(line, row, _award_request(ctx, row).fingerprint) for line, row in rows]
    keys = [_award_claim_key(ctx.tenant_id, row.award_id) for _, row in rows]
    return _claim(store, SYSTEM, keyed, keys, read_many(store, SYSTEM, keys),
                  lambda row, fingerprint, pk, doc_id: {
                      "id": doc_id, "pk": pk, "docType": AWARD_CLAIM_DOC, "tenantId": ctx.tenant_id,
                      "awardId": row.award_id, "customerId": row.customer_id, "fingerprint": fingerprint},
                  _award_conflict)


def _apply_awards(ctx: "ImportContext", rows: Sequence[tuple[int, Award]]) -> list[RowError]:
    errors, claimed = _claim_awards(ctx, rows)
    return errors + _append(ctx, claimed, lambda row: _award_request(ctx, row))


def _award_request(ctx: "ImportContext", row: Award) -> TransactionRequest:
    payload = row.model_dump(mode="json", by_alias=True, exclude_none=True)
    outcome = {"status": "awarded", "awardId": row.award_id, "customerId": row.customer_id, "points": row.points}

    def plan(head: Head) -> Plan:
        return Plan(entries=[EntryDraft(EntryType.EARN, row.points, rule_set_id="award",
                                        attributes={"awardId": row.award_id, "reason": row.reason,
                                                    **_expiry(ctx)})],
                    outcome=outcome)

    return TransactionRequest(ctx.tenant_id, row.customer_id, f"import:award:{row.award_id}",
                              fingerprint_of({"kind": "awards", "row": payload}), plan, occurred_at=row.awarded_at)


register(RowKind("awards", Award, _apply_awards, _check_awards,
                 description="bulk awards: points by award id (one customer per id), with a reason"))
