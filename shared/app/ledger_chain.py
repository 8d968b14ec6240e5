"""Verifying the ledger's hash chains for a customer or a tenant, and the daily tenant digest.

The chain itself (what an entry's hash covers, anchors, the genesis record of
migrated partitions) is shared/ledger/chain.py; this module works at the tenant
level, with the audit log (docs/ledger-chain.md):

* ``write_digest``: the tenant's chain heads ``(customerId, seq, hash)``, one
  Merkle root over them. The leaves go to the audit archive (immutable blob
  storage) as ``<tenant>/ledger-digest/<day>.json``, then the root, the count
  and the blob's path to the audit log as ``ledger.digest`` (target
  ``ledger:<day>``): written once per tenant and day (a re-run that finds the
  record does nothing; one that stopped between the two writes rewrites the
  same leaves, ``BlobExists`` is fine when the bytes are the same day's).
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

    def write_digest(self, tenant_id: str) -> dict[str, Any]:
        day = self._clock.now().strftime("%Y-%m-%d")
        target = f"ledger:{day}"
        existing = self.latest_digest(tenant_id)
        if existing is not None and existing.get("target") == target:
            return {"tenantId": tenant_id, "day": day, "written": 0, **(existing.get("after") or {})}
        heads = [[c, *chain_head(self._store, tenant_id, c)] for c in ledger_customers(self._store, tenant_id)]
        root = merkle_root(leaf(c, seq, h) for c, seq, h in heads)
        path = f"{tenant_id}/ledger-digest/{day}.json"
        body = json.dumps({"tenantId": tenant_id, "day": day, "root": root, "heads": heads},
                          sort_keys=True, separators=(",", ":")).encode()
        try:
            self._audit.attach(path, body, metadata={"tenantId": tenant_id, "root": root})
        except BlobExists:
            pass  # a run that stopped before its audit record; verify checks the blob against the root
        summary = {"day": day, "root": root, "customers": len(heads), "blob": path}
        self._audit.record(tenant_id, DIGEST_ACTION, None, target=target, after=summary)
        return {"tenantId": tenant_id, "written": 1, **summary}

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
        try:
            data = json.loads(self._audit.read_attachment(summary["blob"]))
        except (BlobSinkError, NotFound, KeyError, ValueError):
            report.digest_problems.append(ChainProblem("digest-unreadable", "the digest's leaves cannot be read"))
            return
        heads = data.get("heads") or []
        if merkle_root(leaf(c, seq, h) for c, seq, h in heads) != summary.get("root"):
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
