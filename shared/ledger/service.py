"""The ledger application service: atomic, idempotent, concurrent-safe appends.

A caller describes a transaction as a ``TransactionRequest``: the customer, an
idempotency key, a fingerprint of the request, and a ``plan`` function that,
given the partition's current ``Head``, returns the entries to write, any extra
immutable records (the order record), and the outcome to remember.

What ``append`` guarantees, for each request independently:

* **All or nothing.** The entries, the records and the idempotency marker are
  one partition batch: an SQLite savepoint or a Cosmos transactional batch.
* **Exactly once in effect.** The marker's id derives from the idempotency key;
  a second request with the key finds it and gets the first outcome back, with
  no new entry. The same key with a different fingerprint is a ``Conflict``.
* **No lost or doubled points under concurrency.** An entry's id is its
  per-customer sequence number, so two writers racing on one customer cannot
  both create seq N: the loser re-reads the head and re-plans (bounded retries,
  then ``LedgerConflict``), so running totals are always computed from the true
  predecessor. A plan made on a cached head that fails the running totals'
  invariant (it settles a reservation another process made after this one
  cached the head) is re-planned on the head read from the store; only on that
  true head does a broken invariant stop the append.
* **Group commit.** All requests of a call are written together
  (``DocumentStore.batches``); a customer's later requests are planned on the
  head its earlier ones leave, and the store skips them if an earlier one
  fails (a partition's batches form a chain), so they are re-planned.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, Callable, Iterable, Sequence

from shared.clock import Clock, iso
from shared.errors import (
    AccrueError,
    BatchFailed,
    BatchSkipped,
    Conflict,
    DocumentExists,
    FieldProblem,
    LedgerConflict,
    LedgerInvariantBroken,
    PointsOutOfRange,
    ValidationFailed,
)
from shared.ledger.chain import anchor, seal, sorted_ascii_json
from shared.ledger.entries import (
    ENTRY_DOC,
    MARKER_DOC,
    EntryDraft,
    EntryType,
    Head,
    advance,
    counts_toward_available,
    entry_id,
    within_range,
    MAX_RUNNING_TOTAL,
)
from shared.domain.wallets import WalletSettings
from shared.ledger import wallets
from shared.store.contention import ATTEMPTS as CONTENTION_ATTEMPTS, pause
from shared.store.layout import LEDGER, customer_pk
from shared.store.port import Create, DocumentStore, Filter, PartitionBatch, Query, read_many

# Rounds a request may lose the sequence number to other writers on its customer before
# LedgerConflict (409; the queue retries an order): the contention budget every
# compare-and-swap shares, with its jittered pause between rounds (shared/store/contention.py).
MAX_ATTEMPTS = CONTENTION_ATTEMPTS
# Ledger._documents builds a Head field by field (faster than dataclasses.replace): a
# field added to Head must be added there too.
assert [f.name for f in dataclasses.fields(Head)] == [
    "seq", "balance", "pending", "lifetime_earned", "orders_credited", "reserved", "hash", "wallets", "created_at",
    "imported_seq"], "Ledger._documents builds every field of Head"
HEAD_CACHE_SIZE = 100_000


@dataclass
class Plan:
    entries: list[EntryDraft]
    outcome: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class TransactionRequest:
    tenant_id: str
    customer_id: str
    idempotency_key: str
    fingerprint: str
    plan: Callable[[Head], Plan]
    # The W3C traceparent of the span appending it (shared.telemetry.tracing): kept on
    # its entries and records as ``traceContext`` so change-feed consumers continue the trace.
    trace_context: str | None = None
    # A historical import (shared/imports): the entries keep the row's own instant as
    # ``createdAt`` (so a balance as of a date before the import reflects them), carry
    # ``imported: true`` and the instant they were really written as ``recordedAt``.
    occurred_at: datetime | None = None

    @cached_property
    def pk(self) -> str:  # asked several times per append: made once
        return customer_pk(self.tenant_id, self.customer_id)


@dataclass
class TransactionOutcome:
    """The remembered result of a transaction; ``duplicate`` when it was replayed."""

    transaction_id: str | None
    outcome: dict[str, Any]
    entries: list[dict[str, Any]]
    duplicate: bool = False
    error: AccrueError | None = None


# json.dumps with these options builds a new encoder on every call (about 10 µs);
# one encoder gives the same text. Stored fingerprints depend on this exact text.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


# Every entry: ``seq`` starts at 1. The comparison is what lets SQLite order by the
# ledger's sparse seq index (ContainerSpec.sparse), which holds entries only.
_ENTRIES = (Filter("docType", "=", ENTRY_DOC), Filter("seq", ">", 0))
# Entries read at most to find the newest of those sharing one createdAt (head_as_of):
# past it the as-of read walks by seq (a test clock that never moves, say).
_SAME_INSTANT_MAX = 64


def fingerprint_of(payload: Any) -> str:
    """SHA-256 of ``_CANONICAL``'s text of ``payload`` (stored: the text must never change).

    orjson (sorted keys) writes the same bytes when the payload holds no float (the chain's
    ``plain`` check) and its output is printable ASCII: ``_CANONICAL`` escapes the
    characters beyond (and DEL), which then are absent. Anything else is written by ``_CANONICAL`` itself
    (tests/unit/ledger/test_chain_canonical.py holds the two to the same text)."""
    return hashlib.sha256(sorted_ascii_json(payload, _CANONICAL)).hexdigest()


class _TransactionIds:
    """Unique transaction ids, cheaply: 64 random bits per process, then a counter
    (uuid4 reads the OS's random source on every call, a system call per order).
    A forked child draws its own bits (``os.register_at_fork``) rather than asking
    for its pid on every call, which is a system call too. ``next`` on the counter
    is atomic under the GIL: no lock."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._prefix, self._count = secrets.token_hex(8), itertools.count(1)

    def __call__(self) -> str:
        return f"tx-{self._prefix}{next(self._count):016x}"


new_transaction_id = _TransactionIds()


def marker_id(idempotency_key: str) -> str:
    # Hashed so any printable key fits Cosmos id rules (no '/', '?', '#', '\\').
    return "idem-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]


class Ledger:
    def __init__(self, store: DocumentStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._heads: OrderedDict[str, Head] = OrderedDict()
        self._heads_lock = threading.Lock()
        # A tenant's wallets (shared/ledger/wallets.py), set by the platform; None (or an
        # answer of None): no wallets, and entries are written exactly as before.
        self.wallets_of: Callable[[str], WalletSettings | None] | None = None

    @property
    def clock(self) -> Clock:
        """The clock that stamps ``createdAt`` (lags are measured on it: shared.telemetry.metrics)."""
        return self._clock

    # --- reads ---------------------------------------------------------------------

    def head(self, tenant_id: str, customer_id: str) -> Head:
        return self._read_head(customer_pk(tenant_id, customer_id))

    def peek_head(self, tenant_id: str, customer_id: str) -> Head:
        """The head this process would plan on next (cached, else read): a hint for
        work done ahead of an append, never the basis of a decision (plans get the true head)."""
        return self._cached_head(customer_pk(tenant_id, customer_id))[0]

    def wallet_available(self, tenant_id: str, head: Head, name: str) -> int:
        """Available points in the tenant's wallet ``name`` on ``head`` (for a plan that draws
        from a named wallet). A wallet the tenant does not have is a ``ValidationFailed``."""
        settings = self.wallets_of(tenant_id) if self.wallets_of is not None else None
        if settings is None or name not in settings.names:
            known = ", ".join(settings.names) if settings is not None else "none"
            raise ValidationFailed(f"unknown wallet {name!r}", [FieldProblem(
                "wallet", f"this tenant's wallets: {known}")])
        return wallets.start(dict(head.wallets), head.balance, settings)[name]

    def _read_head(self, pk: str) -> Head:
        newest = self._store.query(
            LEDGER, Query(pk=pk, filters=_ENTRIES, order_by="seq", descending=True, limit=1),
        )
        return Head.from_entry(newest[0]) if newest else Head()

    def entries(
        self,
        tenant_id: str,
        customer_id: str,
        *,
        before_seq: int | None = None,
        limit: int = 50,
        entry_types: Sequence[str] = (),
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        newest_first: bool = True,
    ) -> list[dict[str, Any]]:
        filters = [Filter("docType", "=", ENTRY_DOC), Filter("seq", "<", before_seq)] if before_seq is not None \
            else list(_ENTRIES)
        if entry_types:
            filters.append(Filter("entryType", "in", list(entry_types)))
        if created_from is not None:
            filters.append(Filter("createdAt", ">=", iso(created_from)))
        if created_to is not None:
            filters.append(Filter("createdAt", "<", iso(created_to)))
        return self._store.query(
            LEDGER,
            Query(pk=customer_pk(tenant_id, customer_id), filters=tuple(filters), order_by="seq",
                  descending=newest_first, limit=limit),
        )

    def head_as_of(self, tenant_id: str, customer_id: str, moment: datetime) -> Head:
        """The running totals as of ``moment``: those of the newest entry (by seq) written
        at or before it. Imported history (shared/imports) keeps each row's own instant, so a
        partition can hold an entry dated after ``moment`` below that one (rows of a file
        out of time order, or history imported after live entries): then the totals are
        summed entry by entry over the partition (``_as_of_by_sum``), which only such
        partitions pay for. When the newest entry by then is a live one, it is one read."""
        pk = customer_pk(tenant_id, customer_id)
        at = iso(moment)
        seeked = self._as_of_by_seek(pk, at)
        if seeked is not None:
            return seeked
        newest = self._store.query(
            LEDGER, Query(pk=pk, filters=(*_ENTRIES, Filter("createdAt", "<=", at)),
                          order_by="seq", descending=True, limit=1),
        )
        if not newest:
            return Head()
        head = Head.from_entry(newest[0])
        if not newest[0].get("imported"):
            # A live entry is dated when it is written, and an imported row is never dated
            # after its import (shared/imports refuses future instants): nothing below a
            # live entry can be dated after it, so its totals are the answer.
            return head
        later_below = self._store.query(LEDGER, Query(pk=pk, filters=(
            Filter("docType", "=", ENTRY_DOC), Filter("seq", "<", head.seq), Filter("createdAt", ">", at)), limit=1))
        return self._as_of_by_sum(pk, at) if later_below else head

    def _as_of_by_seek(self, pk: str, at: str) -> Head | None:
        """``head_as_of`` in O(log n) for a partition whose newest entry says it holds no
        imported entry (``lastImportedSeq`` 0): its entries' createdAt never decreases
        along seq (``_documents``), so the answer is the newest entry by createdAt at or
        before ``at`` (the (pk, createdAt) index read backwards, one row), the highest seq
        among entries dated that same instant. None when the partition cannot promise
        that (imports, or begun before entries carried ``lastImportedSeq``), or when
        very many entries share that instant: the caller walks by seq instead."""
        head = self._read_head(pk)
        if head.seq == 0:
            return head
        if head.imported_seq != 0 or head.created_at is None:
            return None
        if head.created_at <= at:
            return head
        newest = self._store.query(LEDGER, Query(pk=pk, filters=(
            Filter("docType", "=", ENTRY_DOC), Filter("createdAt", "<=", at)),
            order_by="createdAt", descending=True, limit=1))
        if not newest:
            return Head()
        # One transaction's entries share their instant (so may several, when a clock was
        # stepped back): the last of them by seq is the state as of then.
        same = self._store.query(LEDGER, Query(pk=pk, filters=(
            Filter("docType", "=", ENTRY_DOC), Filter("createdAt", "=", newest[0]["createdAt"])),
            limit=_SAME_INSTANT_MAX))
        if len(same) >= _SAME_INSTANT_MAX:
            return None
        found = Head.from_entry(max(same, key=lambda doc: doc["seq"]))
        assert found.created_at is not None and found.created_at <= at, "as-of seek passed its instant"
        return found

    def _as_of_by_sum(self, pk: str, at: str) -> Head:
        """Each entry's own change of every running total (its totals minus its
        predecessor's), summed over the entries written at or before ``at``."""
        previous, included = Head(), []
        after = 0
        while True:
            page = self._store.query(LEDGER, Query(pk=pk, filters=(Filter("docType", "=", ENTRY_DOC),
                                                                   Filter("seq", ">", after)),
                                                   order_by="seq", limit=1000))
            for doc in page:
                current = Head.from_entry(doc)
                if doc["createdAt"] <= at:
                    included.append((current, previous))
                previous = current
            if len(page) < 1000:
                break
            after = page[-1]["seq"]
        total = [0, 0, 0, 0, 0]
        for current, before in included:
            for index, name in enumerate(("balance", "pending", "lifetime_earned", "orders_credited", "reserved")):
                total[index] += getattr(current, name) - getattr(before, name)
        return Head(seq=included[-1][0].seq if included else 0, balance=total[0], pending=total[1],
                    lifetime_earned=total[2], orders_credited=total[3], reserved=total[4])

    def entries_for_order(self, tenant_id: str, customer_id: str, order_id: str) -> list[dict[str, Any]]:
        """The order's entries, oldest first. Sorted here, not by the store: with ORDER BY
        seq, SQLite walked the customer's whole partition on the seq index instead of
        looking the order up on its referenceOrderId index (a refund's cost grew with
        the customer's history)."""
        found = self._store.query(
            LEDGER,
            Query(
                pk=customer_pk(tenant_id, customer_id),
                filters=(Filter("docType", "=", ENTRY_DOC), Filter("referenceOrderId", "=", order_id)),
                limit=10_000,
            ),
        )
        return sorted(found, key=lambda entry: entry["seq"])

    def record(self, tenant_id: str, customer_id: str, record_id: str) -> dict[str, Any] | None:
        return self._store.read(LEDGER, customer_pk(tenant_id, customer_id), record_id)

    def marker(self, tenant_id: str, customer_id: str, idempotency_key: str) -> dict[str, Any] | None:
        return self._store.read(LEDGER, customer_pk(tenant_id, customer_id), marker_id(idempotency_key))

    def known(self, requests: Sequence[TransactionRequest]) -> list[TransactionOutcome | None]:
        """For each request, its remembered outcome if its idempotency key was already
        used (one store call for all): what a bulk caller (shared/imports) skips before
        appending, so a re-run writes nothing and costs one read per chunk."""
        markers = read_many(self._store, LEDGER, [(r.pk, marker_id(r.idempotency_key)) for r in requests])
        return [self._replay(r, m) if m is not None else None for r, m in zip(requests, markers)]

    def prime_heads(self, newest_entries: Iterable[dict[str, Any]]) -> None:
        """Remember partitions' heads from their newest entries, read by a bulk caller (the
        expiry job reads its page's ledgers in one query), so planning skips a head read per
        partition. A hint like any cached head: one gone stale by the append collides on its
        sequence number and is re-planned on the head read from the store, and a refusal is
        never final on it."""
        for entry in newest_entries:
            assert entry.get("docType") == ENTRY_DOC, "a head comes from an entry"
            self._remember_head(entry["pk"], Head.from_entry(entry))

    # --- appends -------------------------------------------------------------------

    def append_one(self, request: TransactionRequest) -> TransactionOutcome:
        outcome = self.append([request])[0]
        if outcome.error is not None:
            raise outcome.error
        return outcome

    def append(self, requests: Sequence[TransactionRequest]) -> list[TransactionOutcome]:
        """Append each request atomically; outcomes are in request order.

        A plan that raises an ``AccrueError`` (a client mistake such as too few
        points) yields an outcome with ``error`` set and writes nothing; such a
        refusal is final only when planned on a head just read from the store.
        Store failures propagate: the caller retries the whole call, which is
        safe. A customer's requests are applied in the order given.
        """
        outcomes: list[TransactionOutcome | None] = [None] * len(requests)
        attempts = [0] * len(requests)
        todo = list(range(len(requests)))
        raced = False
        while todo:
            if raced:
                # Some request lost the sequence number to another writer: let that crowd
                # spread out before re-planning, or the same writers collide again in lockstep.
                pause(max(attempts[index] for index in todo) or 1)
                raced = False
            todo.sort()
            later: list[int] = []
            # Within a round, a customer's later requests are planned on the head its
            # earlier ones will leave; the store skips them if an earlier one fails.
            round_heads: dict[str, Head] = {}
            deferred: set[str] = set()
            work: list[tuple[int, PartitionBatch, Head, dict[str, Any], list[dict[str, Any]]]] = []
            # Read once per round: the instant its documents are recorded at.
            now = iso(self._clock.now())
            wallet_settings: dict[str, WalletSettings | None] = {}
            for index in todo:
                request = requests[index]
                if request.pk in deferred:
                    later.append(index)
                    continue
                attempts[index] += 1
                if attempts[index] > MAX_ATTEMPTS:
                    outcomes[index] = TransactionOutcome(None, {}, [], error=LedgerConflict(
                        f"customer {request.customer_id}: gave up after {MAX_ATTEMPTS} concurrent-write conflicts"))
                    deferred.add(request.pk)
                    continue
                if request.pk in round_heads:
                    head, fresh = round_heads[request.pk], False
                else:
                    head, cached = self._cached_head(request.pk)
                    fresh = not cached
                try:
                    plan = request.plan(head)
                except AccrueError as error:
                    if not fresh:
                        # A refusal must rest on the true head, not on a cached or
                        # tentative one: re-plan next round from the store.
                        self._forget_head(request.pk)
                        attempts[index] -= 1
                        deferred.add(request.pk)
                        later.append(index)
                        continue
                    outcomes[index] = self._refused(request, error)
                    continue
                try:
                    docs, new_head, entries, marker = self._documents(request, head, plan, now, wallet_settings)
                except (AssertionError, PointsOutOfRange) as refused:
                    if fresh and isinstance(refused, PointsOutOfRange):  # on the true head: a refusal
                        outcomes[index] = self._refused(request, refused)
                        continue
                    if fresh:
                        raise  # the true head: a broken invariant is a bug, stop loudly
                    # Planned on a cached (or tentative) head that another process has moved:
                    # a settlement of a reservation made since then settles "more than is
                    # reserved" on it. Re-plan next round on the head read from the store.
                    self._forget_head(request.pk)
                    attempts[index] -= 1
                    deferred.add(request.pk)
                    later.append(index)
                    continue
                round_heads[request.pk] = new_head
                work.append((index, PartitionBatch(request.pk, [Create(d) for d in docs]), new_head, marker, entries))
            if work:
                self._store.batches(LEDGER, [item[1] for item in work])
            for index, batch, new_head, marker, entries in work:
                request = requests[index]
                if batch.error is None:
                    self._remember_head(request.pk, new_head)
                    outcomes[index] = TransactionOutcome(marker["transactionId"], marker["outcome"], entries)
                    continue
                self._forget_head(request.pk)
                if isinstance(batch.error, BatchSkipped):
                    attempts[index] -= 1  # never tried: its predecessor failed
                    later.append(index)
                    continue
                if not isinstance(batch.error, (BatchFailed, DocumentExists)):
                    raise batch.error
                existing = self._store.read(LEDGER, request.pk, marker_id(request.idempotency_key))
                if existing is not None:
                    outcomes[index] = self._replay(request, existing)
                    continue
                failed_doc = batch.operations[batch.error.index].doc if isinstance(batch.error, BatchFailed) \
                    else batch.operations[0].doc
                if failed_doc.get("docType") not in (ENTRY_DOC, MARKER_DOC):
                    outcomes[index] = TransactionOutcome(None, {}, [], error=Conflict(
                        f"{failed_doc.get('docType')} {failed_doc['id']!r} is already recorded for customer "
                        f"{request.customer_id} under another idempotency key"))
                    continue
                later.append(index)  # lost a race on the sequence number: re-plan on the fresh head
                raced = True
            todo = later
        result = [o for o in outcomes if o is not None]
        assert len(result) == len(requests)
        return result

    def _replay(self, request: TransactionRequest, marker: dict[str, Any]) -> TransactionOutcome:
        if marker.get("fingerprint") != request.fingerprint:
            return TransactionOutcome(None, {}, [], error=Conflict(
                f"idempotency key {request.idempotency_key!r} was already used for a different request"))
        return TransactionOutcome(marker.get("transactionId"), marker["outcome"], [], duplicate=True)

    def _documents(
        self, request: TransactionRequest, head: Head, plan: Plan, now: str,
        wallet_settings: dict[str, WalletSettings | None],
    ) -> tuple[list[dict[str, Any]], Head, list[dict[str, Any]], dict[str, Any]]:
        """The request's documents (entries sealed in the hash chain, records, marker) and
        the head they leave. ``now``: the write's instant, read once per round of a
        call; ``wallet_settings``: the tenants' wallets looked up so far in the round
        (filled here)."""
        # A live entry is dated no earlier than the partition's newest entry (a clock stepped
        # back, two writers' clocks apart): with no imported entry in the partition, createdAt
        # then never decreases along seq, and head_as_of is one seek instead of a walk.
        created = iso(request.occurred_at) if request.occurred_at is not None else max(now, head.created_at or now)
        imported = {"imported": True, "recordedAt": now} if request.occurred_at is not None else {}
        transaction_id = new_transaction_id()
        entries: list[dict[str, Any]] = []
        current = head
        # The hash chain (shared/ledger/chain.py): sealed here, in the batch that writes the entry.
        prev_hash = head.hash if head.hash is not None else anchor(request.pk, head.seq)
        settings = None
        if self.wallets_of is not None and plan.entries:
            if request.tenant_id not in wallet_settings:
                wallet_settings[request.tenant_id] = self.wallets_of(request.tenant_id)
            settings = wallet_settings[request.tenant_id]
        own_keys = [d.idempotency_key for d in plan.entries if d.idempotency_key is not None]
        # TIGER_STYLE: an entry's own key (a grouped transaction's) names one effect: once per transaction.
        assert len(own_keys) == len(set(own_keys)), "an entry's own idempotency key appears twice in a transaction"
        for draft in plan.entries:
            after = advance(current, draft)
            # TIGER_STYLE: the running totals are asserted, not trusted.
            moves = draft.signed_amount if counts_toward_available(draft.status.value, draft.signed_amount) else 0
            if after.seq != current.seq + 1 or after.balance != current.balance + moves:
                raise LedgerInvariantBroken(f"running totals broke at seq {after.seq} for {request.pk}")
            wallet_fields: dict[str, Any] = {}
            if settings is not None:
                after, wallet_fields = self._wallets(request, current, after, draft, settings)
            if not within_range(after):
                raise PointsOutOfRange(f"the transaction would take a running total of customer "
                                       f"{request.customer_id!r} beyond ±{MAX_RUNNING_TOTAL:,} points")
            imported_seq = after.seq if request.occurred_at is not None else current.imported_seq
            entries.append({
                "id": entry_id(after.seq),
                "pk": request.pk,
                "docType": ENTRY_DOC,
                "tenantId": request.tenant_id,
                "customerId": request.customer_id,
                "seq": after.seq,
                "transactionId": transaction_id,
                "entryType": draft.entry_type.value,
                "signedAmount": draft.signed_amount,
                "runningBalance": after.balance,
                "runningPending": after.pending,
                "runningReserved": after.reserved,
                "runningLifetimeEarned": after.lifetime_earned,
                "ordersCredited": after.orders_credited,
                "referenceOrderId": draft.reference_order_id,
                "referenceEntryId": draft.reference_entry_id,
                "settlesEntryId": draft.settles_entry_id,
                "ruleSetId": draft.rule_set_id,
                "ruleSetVersion": draft.rule_set_version,
                "arm": draft.arm,
                "status": draft.status.value,
                "createdAt": created,
                "idempotencyKey": draft.idempotency_key or request.idempotency_key,
                **imported,
                **({"lastImportedSeq": imported_seq} if imported_seq is not None else {}),
                **({"attributes": draft.attributes} if draft.attributes else {}),
                **({"traceContext": request.trace_context} if request.trace_context else {}),
                **wallet_fields,
            })
            prev_hash = seal(entries[-1], prev_hash)["hash"]
            # ``after`` with the entry's instant, import mark and hash (built, not
            # dataclasses.replace'd: an import makes a million of these).
            current = Head(seq=after.seq, balance=after.balance, pending=after.pending,
                           lifetime_earned=after.lifetime_earned, orders_credited=after.orders_credited,
                           reserved=after.reserved, hash=prev_hash, wallets=after.wallets, created_at=created,
                           imported_seq=imported_seq)
        outcome = dict(plan.outcome)
        outcome.setdefault("entryIds", [e["id"] for e in entries])
        marker = {
            "id": marker_id(request.idempotency_key),
            "pk": request.pk,
            "docType": MARKER_DOC,
            "tenantId": request.tenant_id,
            "customerId": request.customer_id,
            "idempotencyKey": request.idempotency_key,
            "fingerprint": request.fingerprint,
            "transactionId": transaction_id if entries else None,
            "outcome": outcome,
            "createdAt": now,
        }
        records = [dict(r, pk=request.pk, tenantId=request.tenant_id, customerId=request.customer_id,
                        transactionId=transaction_id if entries else None, createdAt=created, **imported,
                        **({"traceContext": request.trace_context} if request.trace_context else {}))
                   for r in plan.records]
        return [*entries, *records, marker], current, entries, marker

    def _refused(self, request: TransactionRequest, error: AccrueError) -> TransactionOutcome:
        """The outcome of a request refused on the true head: the first outcome of its key if
        the key was applied before (a retry), else the refusal."""
        existing = self._store.read(LEDGER, request.pk, marker_id(request.idempotency_key))
        if existing is not None:
            return self._replay(request, existing)
        return TransactionOutcome(None, {}, [], error=error)

    def _wallets(self, request: TransactionRequest, current: Head, after: Head, draft: EntryDraft,
                 settings: WalletSettings) -> tuple[Head, dict[str, Any]]:
        """The draft's wallet split and the running wallets after it (shared/ledger/wallets.py)."""
        before = wallets.start(dict(current.wallets), current.balance, settings)
        released = None
        if (draft.settles_entry_id and draft.settles_amount < 0 and draft.wallet_split is None
                and wallets.moves(draft) > 0):
            # A RELEASE gives back to the wallets its reservation took from.
            reservation = self._store.read(LEDGER, request.pk, draft.settles_entry_id)
            released = (reservation or {}).get("walletSplit")
        given = wallets.split(before, draft, settings, released)
        running = wallets.apply(before, given)
        # TIGER_STYLE: per wallet, the running values add up to the balance, and a wallet goes
        # below zero only when named or when every other wallet is empty (a clawback).
        assert sum(running.values()) == after.balance, "running wallets must add up to the balance"
        for name, value in running.items():
            assert value >= 0 or value >= before[name] or draft.wallet == name or draft.wallet_split is not None \
                or all(v <= 0 for other, v in running.items() if other != name), f"wallet {name} went below zero"
        fields_ = {"runningWallets": dict(sorted(running.items()))}
        if given:
            fields_["walletSplit"] = dict(sorted(given.items()))
        if draft.wallet is not None:
            fields_["wallet"] = draft.wallet
        return dataclasses.replace(after, wallets=tuple(sorted(running.items()))), fields_

    # --- head cache ----------------------------------------------------------------
    # A stale head is harmless: its next seq collides with the real one and the
    # append re-plans from the store. The cache only saves the read.

    def _cached_head(self, pk: str) -> tuple[Head, bool]:
        with self._heads_lock:
            head = self._heads.get(pk)
            if head is not None:
                self._heads.move_to_end(pk)
                return head, True
        return self._read_head(pk), False

    def _remember_head(self, pk: str, head: Head) -> None:
        with self._heads_lock:
            self._heads[pk] = head
            self._heads.move_to_end(pk)
            while len(self._heads) > HEAD_CACHE_SIZE:
                self._heads.popitem(last=False)

    def _forget_head(self, pk: str) -> None:
        with self._heads_lock:
            self._heads.pop(pk, None)


def is_earn_like(entry: dict[str, Any]) -> bool:
    return entry["entryType"] in (EntryType.EARN.value, EntryType.REVERSAL.value)
