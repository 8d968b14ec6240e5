"""The qualifying values of one customer over a window, from their ledger partition alone.

Chosen definitions (documented in docs/tiers.md):

* **points** = the sum of ``signedAmount`` of COMMITTED ``EARN`` and ``REVERSAL``
  entries created inside the window. A held earn (PENDING) counts only once it
  is approved (the approving EARN entry is COMMITTED, dated at approval); a
  refund's clawback (REVERSAL) counts when the refund happens. Redemptions,
  expiry, conversions and manual adjustments do not qualify. Never below 0.
* **spend** = the order amounts of the customer's order records (``docType``
  ``order``) created inside the window whose status is ``credited``, plus
  ``held`` orders once a COMMITTED EARN entry referencing the order exists in the
  window (the hold was approved), minus the ``refundAmount`` of REVERSAL entries
  created inside the window. Rejected orders never count. Never below 0.

The window is ``[start, end]`` on the documents' ``createdAt`` (the moment the
ledger recorded them), not on the merchant's order timestamp, which a merchant
could backdate. Both reads are single-partition queries, paged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Iterable, Iterator

from shared.clock import iso
from shared.ledger.entries import ENTRY_DOC, ORDER_DOC
from shared.store.layout import LEDGER, customer_pk
from shared.store.port import DocumentStore, Filter, Query

PAGE = 1000
QUALIFYING_TYPES = ("EARN", "REVERSAL")


@dataclass(frozen=True)
class Qualifying:
    points: int
    spend: Decimal
    window_start: datetime
    window_end: datetime

    def to_json(self) -> dict[str, Any]:
        return {"points": self.points, "spend": str(self.spend), "windowStart": iso(self.window_start),
                "windowEnd": iso(self.window_end)}


def compute(entries: Iterable[dict[str, Any]], orders: Iterable[dict[str, Any]], start: datetime,
            end: datetime) -> Qualifying:
    """The values from already-selected documents (the pure part, shared with tests' models)."""
    points = 0
    refunded = Decimal(0)
    approved_orders: set[str] = set()
    for entry in entries:
        if entry.get("status") != "COMMITTED" or entry.get("entryType") not in QUALIFYING_TYPES:
            continue
        points += entry["signedAmount"]
        if entry["entryType"] == "EARN" and entry.get("referenceOrderId"):
            approved_orders.add(entry["referenceOrderId"])
        if entry["entryType"] == "REVERSAL":
            refunded += Decimal(str((entry.get("attributes") or {}).get("refundAmount", "0")))
    spend = Decimal(0)
    for record in orders:
        status = record.get("status")
        if status == "credited" or (status == "held" and record.get("orderId") in approved_orders):
            spend += Decimal(str((record.get("order") or {}).get("amount", "0")))
    return Qualifying(points=max(points, 0), spend=max(spend - refunded, Decimal(0)), window_start=start,
                      window_end=end)


def _paged(store: DocumentStore, pk: str, filters: tuple[Filter, ...], key: str) -> Iterator[dict[str, Any]]:
    after: Any = None
    while True:
        bound = () if after is None else (Filter(key, ">", after),)
        docs = store.query(LEDGER, Query(pk=pk, filters=filters + bound, order_by=key, limit=PAGE))
        yield from docs
        if len(docs) < PAGE:
            return
        after = docs[-1][key]  # seq and id are unique in a partition: no ties to read


def read(store: DocumentStore, tenant_id: str, customer_id: str, start: datetime, end: datetime) -> Qualifying:
    pk = customer_pk(tenant_id, customer_id)
    window = (Filter("createdAt", ">=", iso(start)), Filter("createdAt", "<=", iso(end)))
    entries = _paged(store, pk, (Filter("docType", "=", ENTRY_DOC), Filter("entryType", "in", list(QUALIFYING_TYPES)))
                     + window, "seq")
    entry_list = list(entries)
    orders = _paged(store, pk, (Filter("docType", "=", ORDER_DOC),) + window, "id")
    return compute(entry_list, orders, start, end)
