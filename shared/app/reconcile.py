"""Reconciliation: recompute balances from the ledger and report any drift.

For each customer partition with a read-model balance, it re-reads every entry,
checks each running balance equals the previous one plus the signed amount
(the first entry where that breaks is reported), and compares the ledger's
head with the read model. It only reads: drift is reported, never patched,
because the ledger is the truth and a drift means a bug to investigate. (A
stale read model heals itself as the projector catches up; reported drift
lists the customer, the expected and found values and the first bad entry.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.ledger.entries import ENTRY_DOC, counts_toward_available
from shared.store.layout import BALANCES, LEDGER
from shared.store.port import DocumentStore, Filter, Query

PAGE = 500


@dataclass
class Drift:
    pk: str
    kind: str
    expected: int
    found: int
    entry_id: str | None = None


@dataclass
class ReconciliationReport:
    customers: int = 0
    entries: int = 0
    drifts: list[Drift] = field(default_factory=list)

    def summary(self) -> str:
        return (f"reconciled {self.customers} customers, {self.entries} entries: "
                f"{len(self.drifts)} drift(s)")


def reconcile(store: DocumentStore, tenant_id: str | None = None) -> ReconciliationReport:
    report = ReconciliationReport()
    after = ""
    while True:
        filters = [Filter("docType", "=", "balance"), Filter("pk", ">", after)]
        if tenant_id:
            filters.append(Filter("tenantId", "=", tenant_id))
        page = store.query(BALANCES, Query(pk=None, filters=tuple(filters), order_by="pk", limit=PAGE))
        for balance in page:
            report.customers += 1
            _check_partition(store, balance, report)
        if len(page) < PAGE:
            return report
        after = page[-1]["pk"]


def _check_partition(store: DocumentStore, balance: dict[str, Any], report: ReconciliationReport) -> None:
    pk = balance["pk"]
    running, seq, last = 0, 0, None
    while True:
        entries = store.query(LEDGER, Query(pk=pk, filters=(Filter("docType", "=", ENTRY_DOC),
                                                            Filter("seq", ">", seq)), order_by="seq", limit=PAGE))
        for entry in entries:
            report.entries += 1
            if entry["seq"] != seq + 1:
                report.drifts.append(Drift(pk, "sequence-gap", seq + 1, entry["seq"], entry["id"]))
            if counts_toward_available(entry["status"], entry["signedAmount"]):
                running += entry["signedAmount"]
            if entry["runningBalance"] != running:
                report.drifts.append(Drift(pk, "running-balance", running, entry["runningBalance"], entry["id"]))
                running = entry["runningBalance"]  # report the first break of each run, not every entry after
            seq, last = entry["seq"], entry
        if len(entries) < PAGE:
            break
    if last is not None and balance["lastSeq"] == last["seq"] and balance["available"] != last["runningBalance"]:
        report.drifts.append(Drift(pk, "read-model", last["runningBalance"], balance["available"], last["id"]))
