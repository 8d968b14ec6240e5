"""Reconciliation: recompute every customer's balances from their ledger entries and
report any drift.

For each customer partition (every partition with entries, and every read-model
balance, so a balance whose entries vanished is seen too) it re-reads the entries
in sequence order and recomputes, from the signed amounts and statuses alone,
what each entry's running totals must be:

* ``runningBalance`` (available): COMMITTED entries and PENDING debits;
* ``runningPending``: PENDING credits, minus the held earns later entries settle;
* ``runningReserved``: PENDING debits, minus the reservations later entries settle;
* ``runningLifetimeEarned``: COMMITTED EARN and REVERSAL entries;
* ``runningWallets`` (tenants with wallets): the wallets before plus the entry's
  ``walletSplit``, which adds up to what the entry moved; the wallets add up to
  ``runningBalance``.

A settlement is resolved through ``settlesEntryId`` to the settled entry's own
amount; settling an unknown entry, or one entry twice, is drift too. So is a gap
in the sequence numbers, and an idempotency key applied twice: every entry of one
``idempotencyKey`` must come from one transaction (``transactionId``), since a
second transaction under a key is a request counted twice (drift kind
``key-applied-twice``; a replayed debit that wrote a second entry was one). Each field is reported once per customer, at **the first
entry where it diverges**, with the expected (recomputed) and found (stored)
values and how many entries disagree in all. Then the read model (``balances``:
``available``, ``pending``, ``reserved``) is compared with the recomputed totals
when it reflects the newest entry; a read model behind the ledger is only counted
as ``stale`` (the projector catches up on its own), one ahead of it is drift.

It also walks each partition's hash chain (shared/ledger/chain.py): an entry
whose content no longer matches its ``hash``, a ``prevHash`` that does not link,
entries without hashes after hashed ones, or unhashed entries without a matching
genesis record are drift of kinds ``chain-*`` (once per kind, at the first entry).
The tenant digest (a partition rewritten whole) is checked by ``accrue ledger
verify`` (shared/app/ledger_chain.py), not here: reconciliation reads no blobs.

It only reads: drift is reported, never patched, because the ledger is the truth
and a drift means a bug (or tampering) to investigate. Runs nightly (the
``reconcile`` job in shared/jobs.py), on demand from the command line
(``python -m shared.local reconcile [--tenant T]``) and over the API
(``GET /v1/reconciliation``, tenant-admin, the caller's tenant).

The nightly job does not walk every tenant in one timer run: it enqueues one
work item per tenant (``shared.jobs``, ``shared.workitems``), and each item runs
``reconcile_slice`` repeatedly, a bounded number of customer partitions per
slice, from a cursor that carries the partial report. The cursor and the counts
so far are stored in one write after each slice, so a slice redone after a
crash is counted once, and the item's final report equals ``reconcile(store,
tenant)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

from shared.ledger.chain import GENESIS_ID, ChainWalker
from shared.ledger.entries import ENTRY_DOC, EntryType, counts_toward_available, entry_id
from shared.store.layout import BALANCES, LEDGER
from shared.store.port import DocumentStore, Filter, Query

PAGE = 500
# Customer partitions one slice of the nightly job checks (each is re-read whole).
SLICE_PARTITIONS = 200

# The running field of an entry, and the read-model field that copies it.
FIELDS = (("balance", "runningBalance", "available"), ("pending", "runningPending", "pending"),
          ("reserved", "runningReserved", "reserved"), ("lifetimeEarned", "runningLifetimeEarned", "lifetimeEarned"))


@dataclass
class Drift:
    tenant_id: str
    customer_id: str
    kind: str          # running-balance | running-pending | running-reserved | running-lifetimeEarned |
    #                    read-model-available | ... | sequence-gap | settles-unknown-entry | settled-twice
    expected: Any
    found: Any
    entry_id: str | None = None
    seq: int | None = None
    entries_diverging: int = 1

    def line(self) -> str:
        where = f" at {self.entry_id} (seq {self.seq})" if self.entry_id else ""
        more = f", {self.entries_diverging} entries disagree" if self.entries_diverging > 1 else ""
        return (f"{self.tenant_id}/{self.customer_id}: {self.kind}: expected {self.expected}, "
                f"found {self.found}{where}{more}")


@dataclass
class ReconciliationReport:
    customers: int = 0
    entries: int = 0
    stale: int = 0
    drifts: list[Drift] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.drifts

    def summary(self) -> str:
        head = (f"reconciled {self.customers} customers, {self.entries} entries: {len(self.drifts)} drift(s)"
                + (f", {self.stale} read model(s) behind the ledger" if self.stale else ""))
        return "\n".join([head, *("  " + d.line() for d in self.drifts)])

    def to_json(self) -> dict[str, Any]:
        return {"customers": self.customers, "entries": self.entries, "stale": self.stale,
                "drifts": [asdict(d) for d in self.drifts]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ReconciliationReport":
        return cls(customers=data["customers"], entries=data["entries"], stale=data["stale"],
                   drifts=[Drift(**d) for d in data["drifts"]])

    def view(self) -> dict[str, Any]:
        return {"ok": self.ok, "customers": self.customers, "entries": self.entries, "stale": self.stale,
                "drifts": [{_camel(k): v for k, v in asdict(d).items()} for d in self.drifts]}


def reconcile(store: DocumentStore, tenant_id: str | None = None) -> ReconciliationReport:
    report = ReconciliationReport()
    for pk in _ledger_partitions(store, tenant_id):
        _check_partition(store, pk, report)
    # Read models whose partition has no first entry: their ledger lost entries (or never had any).
    for balance in _balances(store, tenant_id):
        if store.read(LEDGER, balance["pk"], entry_id(1)) is None:
            _check_partition(store, balance["pk"], report, balance)
    return report


def reconcile_slice(store: DocumentStore, tenant_id: str, cursor: dict[str, Any] | None,
                    max_partitions: int = SLICE_PARTITIONS) -> tuple[dict[str, Any], bool]:
    """One bounded piece of ``reconcile(store, tenant_id)``: at most ``max_partitions``
    customer partitions after the cursor's. Returns the next cursor (the partial
    report inside) and whether the tenant is done; ``report_of(cursor)`` is then
    the same report ``reconcile`` gives."""
    assert max_partitions >= 1
    cursor = cursor or {"phase": "ledger", "after": "", "report": ReconciliationReport().to_json()}
    report = ReconciliationReport.from_json(cursor["report"])
    phase, after = cursor["phase"], cursor["after"]
    if phase == "ledger":
        page = _ledger_page(store, tenant_id, after, max_partitions)
        for pk in page:
            _check_partition(store, pk, report)
        if len(page) == max_partitions:
            return {"phase": "ledger", "after": page[-1], "report": report.to_json()}, False
        phase, after = "balances", ""
        if page:  # this slice's partitions are spent: the balance pass starts in the next
            return {"phase": phase, "after": after, "report": report.to_json()}, False
    assert phase == "balances", f"unknown reconciliation phase {phase!r}"
    balances = _balances_page(store, tenant_id, after, max_partitions)
    for balance in balances:
        if store.read(LEDGER, balance["pk"], entry_id(1)) is None:
            _check_partition(store, balance["pk"], report, balance)
    done = len(balances) < max_partitions
    return {"phase": phase, "after": balances[-1]["pk"] if balances else after, "report": report.to_json()}, done


def report_of(cursor: dict[str, Any]) -> ReconciliationReport:
    return ReconciliationReport.from_json(cursor["report"])


def _ledger_page(store: DocumentStore, tenant_id: str | None, after: str, limit: int) -> list[str]:
    filters = [Filter("docType", "=", ENTRY_DOC), Filter("seq", "=", 1), Filter("pk", ">", after)]
    if tenant_id:
        filters.append(Filter("tenantId", "=", tenant_id))
    return [doc["pk"] for doc in store.query(LEDGER, Query(pk=None, filters=tuple(filters), order_by="pk",
                                                            limit=limit))]


def _balances_page(store: DocumentStore, tenant_id: str | None, after: str, limit: int) -> list[dict[str, Any]]:
    filters = [Filter("docType", "=", "balance"), Filter("pk", ">", after)]
    if tenant_id:
        filters.append(Filter("tenantId", "=", tenant_id))
    return store.query(BALANCES, Query(pk=None, filters=tuple(filters), order_by="pk", limit=limit))


def _ledger_partitions(store: DocumentStore, tenant_id: str | None) -> Iterator[str]:
    after = ""
    while True:
        filters = [Filter("docType", "=", ENTRY_DOC), Filter("seq", "=", 1), Filter("pk", ">", after)]
        if tenant_id:
            filters.append(Filter("tenantId", "=", tenant_id))
        page = store.query(LEDGER, Query(pk=None, filters=tuple(filters), order_by="pk", limit=PAGE))
        for doc in page:
            yield doc["pk"]
        if len(page) < PAGE:
            return
        after = page[-1]["pk"]


def _balances(store: DocumentStore, tenant_id: str | None) -> Iterator[dict[str, Any]]:
    after = ""
    while True:
        filters = [Filter("docType", "=", "balance"), Filter("pk", ">", after)]
        if tenant_id:
            filters.append(Filter("tenantId", "=", tenant_id))
        page = store.query(BALANCES, Query(pk=None, filters=tuple(filters), order_by="pk", limit=PAGE))
        yield from page
        if len(page) < PAGE:
            return
        after = page[-1]["pk"]


def _entries(store: DocumentStore, pk: str) -> Iterator[dict[str, Any]]:
    seq = 0
    while True:
        page = store.query(LEDGER, Query(pk=pk, filters=(Filter("docType", "=", ENTRY_DOC), Filter("seq", ">", seq)),
                                         order_by="seq", limit=PAGE))
        yield from page
        if len(page) < PAGE:
            return
        seq = page[-1]["seq"]


class _Partition:
    """The recomputation of one partition, entry by entry."""

    def __init__(self, tenant_id: str, customer_id: str) -> None:
        self.tenant_id, self.customer_id = tenant_id, customer_id
        self.totals = {"balance": 0, "pending": 0, "reserved": 0, "lifetimeEarned": 0}
        self.amounts: dict[str, int] = {}      # entry id -> signed amount (to resolve settlements)
        self.settled: set[str] = set()
        self.transactions: dict[str, str] = {}  # idempotency key -> the transaction that applied it
        self.first: dict[str, Drift] = {}      # kind -> the first drift of that kind
        self.seq = 0
        self.last: dict[str, Any] | None = None
        self.wallets: dict[str, int] | None = None  # running wallets, once the tenant has them

    def drift(self, kind: str, expected: Any, found: Any, entry: dict[str, Any] | None) -> None:
        if kind in self.first:
            self.first[kind].entries_diverging += 1
            return
        self.first[kind] = Drift(self.tenant_id, self.customer_id, kind, expected, found,
                                 entry["id"] if entry else None, entry.get("seq") if entry else None)

    def step(self, entry: dict[str, Any]) -> None:
        seq, amount, status = entry["seq"], entry["signedAmount"], entry["status"]
        if seq != self.seq + 1:
            self.drift("sequence-gap", self.seq + 1, seq, entry)
        key, transaction = entry.get("idempotencyKey"), entry.get("transactionId")
        if key is not None and transaction is not None:
            first = self.transactions.setdefault(key, transaction)
            if first != transaction:
                self.drift("key-applied-twice", first, transaction, entry)
        t = self.totals
        if counts_toward_available(status, amount):
            t["balance"] += amount
        if status == "COMMITTED":
            if entry["entryType"] in (EntryType.EARN.value, EntryType.REVERSAL.value):
                t["lifetimeEarned"] += amount
        elif amount < 0:
            t["reserved"] -= amount
        else:
            t["pending"] += amount
        settles = entry.get("settlesEntryId")
        if settles:
            if settles not in self.amounts:
                self.drift("settles-unknown-entry", "an earlier PENDING entry", settles, entry)
            elif settles in self.settled:
                self.drift("settled-twice", "one settlement", settles, entry)
            else:
                settled_amount = self.amounts[settles]
                if settled_amount > 0:
                    t["pending"] -= settled_amount
                else:
                    t["reserved"] += settled_amount
            self.settled.add(settles)
        if status == "PENDING":
            self.amounts[entry["id"]] = amount
        for name, running, _ in FIELDS:
            found = entry.get(running, 0)
            if found != t[name]:
                self.drift(f"running-{name}", t[name], found, entry)
        self._wallets(entry)
        self.seq, self.last = seq, entry

    def _wallets(self, entry: dict[str, Any]) -> None:
        """Per wallet (shared/ledger/wallets.py): each running wallet is the one before plus the
        entry's split, the split adds up to what the entry moved, the wallets to the balance."""
        running = entry.get("runningWallets")
        if running is None:
            return
        split = entry.get("walletSplit") or {}
        moved = entry["signedAmount"] if counts_toward_available(entry["status"], entry["signedAmount"]) else 0
        if sum(split.values()) != moved:
            self.drift("wallet-split", moved, sum(split.values()), entry)
        if self.wallets is None:  # the first entry with wallets: what came before was the default's
            self.wallets = {name: value - split.get(name, 0) for name, value in running.items()}
        expected = dict(self.wallets)
        for name, points in split.items():
            expected[name] = expected.get(name, 0) + points
        if {k: v for k, v in expected.items() if v} != {k: v for k, v in running.items() if v}:
            self.drift("running-wallets", expected, running, entry)
        if sum(running.values()) != entry.get("runningBalance"):
            self.drift("wallets-balance", entry.get("runningBalance"), sum(running.values()), entry)
        self.wallets = dict(running)

    def read_model(self, balance: dict[str, Any] | None, report: ReconciliationReport) -> None:
        if balance is None:
            return
        last_seq = self.last["seq"] if self.last else 0
        if balance.get("lastSeq", 0) < last_seq:
            report.stale += 1
            return
        if balance.get("lastSeq", 0) > last_seq:
            self.drift("read-model-lastSeq", last_seq, balance.get("lastSeq"), self.last)
            return
        for name, _, model in FIELDS:
            if balance.get(model, 0) != self.totals[name]:
                self.drift(f"read-model-{model}", self.totals[name], balance.get(model, 0), self.last)


def _check_partition(store: DocumentStore, pk: str, report: ReconciliationReport,
                     balance: dict[str, Any] | None = None) -> None:
    tenant_id, _, customer_id = pk.partition(":")
    partition = _Partition(tenant_id, customer_id)
    chain = ChainWalker(pk)
    for entry in _entries(store, pk):
        report.entries += 1
        partition.step(entry)
        chain.step(entry)
    chain.check_genesis(store.read(LEDGER, pk, GENESIS_ID) if chain.legacy_through else None)
    for problem in chain.problems:
        if problem.kind == "chain-gap":
            continue  # reported as sequence-gap already
        partition.drift(problem.kind, "an intact chain", problem.detail,
                        {"id": entry_id(problem.seq), "seq": problem.seq} if problem.seq else None)
    report.customers += 1
    partition.read_model(balance if balance is not None else store.read(BALANCES, pk, "balance"), report)
    report.drifts.extend(partition.first.values())


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)
