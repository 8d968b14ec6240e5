"""Verifying the ledger's hash chains for a customer or a tenant, and the daily tenant digest.

The chain itself (what an entry's hash covers, anchors, the genesis record of
migrated partitions) is shared/ledger/chain.py; this module works at the tenant
level, with the audit log (docs/ledger-chain.md):

* ``digest_slice`` (a ``ledger-digest`` work item per tenant and day, in
  bounded, resumable slices; ``write_digest`` runs them all): the tenant's
  chain heads ``(customerId, seq, hash)``, in chunks of ``DIGEST_CHUNK``
  customers, each chunk to the audit archive (immutable blob storage) as
  ``<tenant>/ledger-digest/<day>/<n>.json`` and its Merkle root kept in the
  cursor; the last slice writes the root over the chunks' roots, the count
  and the prefix to the audit log as ``ledger.digest`` (target
  ``ledger:<day>``). Once per tenant and day: a re-run that finds the record
  does nothing; a slice redone after a crash uses its chunk as archived.
* ``verify_tenant``: every customer's chain, then the newest digest: its
  leaves must hash to the recorded root (the blob was not swapped), and each
  recorded head must still be in the ledger with the same hash. So a partition
  rewritten and re-chained, or whose newest entries were dropped, is caught
  even though its chain is internally consistent.

Both read only; tampering is reported, never repaired.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterator

from shared.audit.log import AuditLog
from shared.blobs.port import BlobExists, BlobSinkError
from shared.clock import Clock
from shared.errors import NotFound
from shared.ledger.chain import ChainProblem, CustomerChain, leaf, merkle_root, migrate, verify_customer
from shared.ledger.entries import ENTRY_DOC, entry_id
from shared.store.layout import AUDIT, LEDGER, customer_pk
from shared.store.port import DocumentStore, Filter, Query

DIGEST_ACTION = "ledger.digest"
PAGE = 500
# Customers one digest slice reads the chain head of (one chunk blob each slice).
DIGEST_CHUNK = 500


def ledger_customers(store: DocumentStore, tenant_id: str) -> Iterator[str]:
    """The tenant's customers with a ledger (a first entry), in partition-key order."""
    after = ""
    while True:
        page = store.query(LEDGER, Query(pk=None, filters=(
            Filter("docType", "=", ENTRY_DOC), Filter("seq", "=", 1), Filter("pk", ">", after),
            Filter("tenantId", "=", tenant_id)), order_by="pk", limit=PAGE))
        for doc in page:
            yield doc["customerId"]
        if len(page) < PAGE:
            return
        after = page[-1]["pk"]


def _customer_page(store: DocumentStore, tenant_id: str, after_pk: str, limit: int) -> list[str]:
    return [doc["customerId"] for doc in store.query(LEDGER, Query(pk=None, filters=(
        Filter("docType", "=", ENTRY_DOC), Filter("seq", "=", 1), Filter("pk", ">", after_pk),
        Filter("tenantId", "=", tenant_id)), order_by="pk", limit=limit))]


def chain_head(store: DocumentStore, tenant_id: str, customer_id: str) -> tuple[int, str | None]:
    newest = store.query(LEDGER, Query(pk=customer_pk(tenant_id, customer_id), filters=(
        Filter("docType", "=", ENTRY_DOC), Filter("seq", ">", 0)), order_by="seq", descending=True, limit=1))
    return (newest[0]["seq"], newest[0].get("hash")) if newest else (0, None)


@dataclass
class TenantVerification:
    tenant_id: str
    customers: int = 0
    entries: int = 0
    broken: list[CustomerChain] = field(default_factory=list)
    digest: dict[str, Any] | None = None
    digest_problems: list[ChainProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.broken and not self.digest_problems

    def view(self) -> dict[str, Any]:
        return {"tenantId": self.tenant_id, "ok": self.ok, "customers": self.customers, "entries": self.entries,
                "broken": [c.view() for c in self.broken],
                "digest": ({"day": self.digest.get("day"), "root": self.digest.get("root"),
                            "customers": self.digest.get("customers"), "auditSeq": self.digest.get("auditSeq")}
                           if self.digest else None),
                "digestProblems": [p.view() for p in self.digest_problems]}


class LedgerChains:
    def __init__(self, store: DocumentStore, audit: AuditLog, clock: Clock) -> None:
        self._store = store
        self._audit = audit
        self._clock = clock

    def verify_customer(self, tenant_id: str, customer_id: str) -> CustomerChain:
        return verify_customer(self._store, tenant_id, customer_id)

    def verify_tenant(self, tenant_id: str) -> TenantVerification:
        report = TenantVerification(tenant_id)
        for customer_id in ledger_customers(self._store, tenant_id):
            chain = verify_customer(self._store, tenant_id, customer_id)
            report.customers += 1
            report.entries += chain.entries
            if not chain.ok:
                report.broken.append(chain)
        self._check_digest(report)
        return report

    def migrate_tenant(self, tenant_id: str) -> int:
        """Genesis records for every partition with unhashed entries; returns how many exist now."""
        return sum(1 for c in ledger_customers(self._store, tenant_id) if migrate(self._store, tenant_id, c))

    # --- the digest ---------------------------------------------------------------

    def write_digest(self, tenant_id: str, day: str | None = None) -> dict[str, Any]:
        """The whole digest at once (the CLI, tests): ``digest_slice`` until done."""
        cursor: dict[str, Any] | None = None
        while True:
            cursor, done, result = self.digest_slice(tenant_id, day or self._clock.now().strftime("%Y-%m-%d"),
                                                     cursor)
            if done:
                assert result is not None
                return result

    def digest_slice(self, tenant_id: str, day: str, cursor: dict[str, Any] | None,
                     max_customers: int = DIGEST_CHUNK) -> tuple[dict[str, Any], bool, dict[str, Any] | None]:
        """One bounded piece of the day's digest (the ``ledger-digest`` work item): the chain
        heads of at most ``max_customers`` customers after the cursor's, written as one chunk
        ``<tenant>/ledger-digest/<day>/<n>.json`` with its Merkle root kept in the cursor.
        The last slice writes the audit record: the root over the chunks' roots. A slice redone
        after a crash finds its chunk written and uses it as written, so the roots always
        describe the archived heads."""
        target = f"ledger:{day}"
        existing = self.latest_digest(tenant_id)
        if existing is not None and existing.get("target") == target:
            return cursor or {}, True, {"tenantId": tenant_id, "written": 0, **(existing.get("after") or {})}
        cursor = cursor or {"after": "", "roots": [], "customers": 0}
        page = _customer_page(self._store, tenant_id, cursor["after"], max_customers)
        if page:
            path = f"{tenant_id}/ledger-digest/{day}/{len(cursor['roots']):06d}.json"
            heads = [[c, *chain_head(self._store, tenant_id, c)] for c in page]
            body = json.dumps({"tenantId": tenant_id, "day": day, "heads": heads},
                              sort_keys=True, separators=(",", ":")).encode()
            try:
                self._audit.attach(path, body, metadata={"tenantId": tenant_id})
            except BlobExists:  # written by this slice before a crash: the chunk as archived counts
                heads = json.loads(self._audit.read_attachment(path))["heads"]
            cursor = {"after": customer_pk(tenant_id, heads[-1][0]), "customers": cursor["customers"] + len(heads),
                      "roots": [*cursor["roots"], merkle_root(leaf(c, seq, h) for c, seq, h in heads)]}
            if len(heads) >= max_customers:
                return cursor, False, None
        summary = {"day": day, "root": merkle_root(cursor["roots"]), "customers": cursor["customers"],
                   "chunks": len(cursor["roots"]), "prefix": f"{tenant_id}/ledger-digest/{day}/"}
        self._audit.record(tenant_id, DIGEST_ACTION, None, target=target, after=summary)
        return cursor, True, {"tenantId": tenant_id, "written": 1, **summary}

    def latest_digest(self, tenant_id: str) -> dict[str, Any] | None:
        found = self._store.query(AUDIT, Query(pk=tenant_id, filters=(Filter("action", "=", DIGEST_ACTION),),
                                               order_by="seq", descending=True, limit=1))
        return found[0] if found else None

    def _check_digest(self, report: TenantVerification) -> None:
        record = self.latest_digest(report.tenant_id)
        if record is None:
            return
        summary = dict(record.get("after") or {}, auditSeq=record["seq"])
        report.digest = summary
        heads: list[list[Any]] = []
        roots: list[str] = []
        try:
            for n in range(summary["chunks"]):
                chunk = json.loads(self._audit.read_attachment(f"{summary['prefix']}{n:06d}.json"))["heads"]
                roots.append(merkle_root(leaf(c, seq, h) for c, seq, h in chunk))
                heads.extend(chunk)
        except (BlobSinkError, NotFound, KeyError, ValueError, TypeError):
            report.digest_problems.append(ChainProblem("digest-unreadable", "the digest's leaves cannot be read"))
            return
        if merkle_root(roots) != summary.get("root"):
            report.digest_problems.append(ChainProblem(
                "digest-root", "the archived heads do not hash to the root in the audit log"))
            return
        for customer_id, seq, head_hash in heads:
            if seq == 0:
                continue
            entry = self._store.read(LEDGER, customer_pk(report.tenant_id, customer_id), entry_id(seq))
            if entry is None:
                report.digest_problems.append(ChainProblem(
                    "digest-head-missing", f"customer {customer_id}: the entry recorded on {summary.get('day')} "
                    "is gone", seq))
            elif entry.get("hash") != head_hash:
                report.digest_problems.append(ChainProblem(
                    "digest-head-changed", f"customer {customer_id}: the entry recorded on {summary.get('day')} "
                    "has another hash now (the partition was rewritten)", seq))


def ledger_tenants(store: DocumentStore) -> list[str]:
    """Tenants of the tenants container (a tenant's own document is id == pk)."""
    from shared.store.layout import TENANTS  # noqa: PLC0415

    tenants, after = [], ""
    while True:
        docs = store.query(TENANTS, Query(pk=None, filters=(Filter("id", ">", after),), order_by="id", limit=PAGE))
        tenants.extend(d["id"] for d in docs if d["id"] == d["pk"])
        if len(docs) < PAGE:
            return tenants
        after = docs[-1]["id"]
