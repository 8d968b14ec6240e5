"""The concurrency harness's model: what the answers of the API promised, checked
against the state the platform ended in.

The harness (``test_concurrency_harness.py``) records every request it sent and
the answer it got (``Model.record``). Once the platform is quiet, ``Model.check``
reads the final state (the ledger partitions of the tenant, the balances) and
returns every broken promise as a line of text. The promises are simple on
purpose; each is what a merchant may rely on:

* **orders**: an order id is credited at most once, to one customer, and only
  with the body that won its claim; every 2xx answer for an order id was given
  for that winning body (a changed body or another customer is refused);
* **refunds, adjustments, redemptions**: an idempotency key has at most one
  effect (per customer, as keys are scoped), every 2xx answer names that effect
  and its amount is the amount asked by that request; a reservation ends once,
  and an answered confirm or cancel is how it ended;
* **the ledger**: every partition's running totals equal the sum of its entries
  (``shared.app.reconcile``), sequence numbers have no gaps, and nothing goes
  negative that may not: reserved and pending never, the available balance only
  through a refund's clawback (never through a spend, an expiry or a negative
  adjustment), and refunds never exceed the order's amount;
* **balances**: the read model, once caught up, equals the ledger's head.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from shared.app.reconcile import reconcile
from shared.ledger.entries import ENTRY_DOC, ORDER_DOC
from shared.store.layout import LEDGER, customer_pk
from shared.store.port import DocumentStore, Query

DEBITS_THAT_MUST_BE_COVERED = ("REDEEM", "CONVERT", "EXPIRE", "ADJUST")


@dataclass(frozen=True)
class Sent:
    """One request and its answer (``status`` None: no answer, e.g. a timeout)."""

    op: str
    customer: str | None
    key: str | None
    body: dict[str, Any] | None
    status: int | None
    answer: dict[str, Any] | None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class Model:
    tenant_id: str
    customers: tuple[str, ...]
    sent: list[Sent] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, item: Sent) -> None:
        with self._lock:
            self.sent.append(item)

    def of(self, op: str) -> list[Sent]:
        return [s for s in self.sent if s.op == op]

    def summary(self, store: DocumentStore) -> str:
        """What the run did: answers per operation and status, entries per type (to see
        that the races happened: conflicts refused, expiries and releases written)."""
        answers: dict[str, dict[Any, int]] = defaultdict(lambda: defaultdict(int))
        for sent in self.sent:
            answers[sent.op][sent.status] += 1
        kinds: dict[str, int] = defaultdict(int)
        for customer in self.customers:
            for doc in store.query(LEDGER, Query(pk=customer_pk(self.tenant_id, customer), limit=10_000)):
                if doc["docType"] == ENTRY_DOC:
                    kinds[f"{doc['entryType']}/{doc['status']}"] += 1
        lines = [f"  {op}: " + ", ".join(f"{status}: {n}" for status, n in sorted(counts.items(), key=str))
                 for op, counts in sorted(answers.items())]
        return "\n".join(["answers:", *lines, "entries: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))])

    # --- the check ---------------------------------------------------------------------

    def check(self, store: DocumentStore, balances: dict[str, dict[str, Any]]) -> list[str]:
        docs = {c: store.query(LEDGER, Query(pk=customer_pk(self.tenant_id, c), limit=10_000)) for c in self.customers}
        entries = {c: sorted((d for d in ds if d["docType"] == ENTRY_DOC), key=lambda d: d["seq"])
                   for c, ds in docs.items()}
        problems: list[str] = []
        problems += self._orders(docs, entries)
        problems += self._refunds(docs, entries)
        problems += self._keyed("adjust", entries, lambda e, c, k: e["entryType"] == "ADJUST"
                                and e["idempotencyKey"] == f"adjust:{k}",
                                lambda e, s: e["signedAmount"] == s.body["points"]
                                and e["transactionId"] == s.answer.get("transactionId"))
        problems += self._redemptions(docs)
        problems += self._ledger(store, entries)
        problems += self._balances(entries, balances)
        return problems

    def _orders(self, docs: dict[str, list[dict]], entries: dict[str, list[dict]]) -> list[str]:
        problems = []
        records: dict[str, list[dict]] = defaultdict(list)
        earns: dict[str, list[tuple[str, dict]]] = defaultdict(list)
        for customer, ds in docs.items():
            for d in ds:
                if d["docType"] == ORDER_DOC:
                    records[d["orderId"]].append(d)
        for customer, es in entries.items():
            for e in es:
                if e["entryType"] == "EARN" and e.get("referenceOrderId") and e["signedAmount"] != 0:
                    earns[e["referenceOrderId"]].append((customer, e))
        for order_id, found in sorted(records.items()):
            if len(found) > 1:
                problems.append(f"order {order_id} has {len(found)} order records, for customers "
                                f"{sorted(r['customerId'] for r in found)} (credited more than once)")
        for order_id, found in sorted(earns.items()):
            committed = [(c, e) for c, e in found if e["status"] == "COMMITTED"]
            if len({c for c, _ in found}) > 1 or len(committed) > 1:
                problems.append(f"order {order_id} earned points {len(found)} times, for customers "
                                f"{sorted({c for c, _ in found})}")
        for sent in self.of("order"):
            if not sent.ok:
                continue
            order_id = sent.body["orderId"]
            won = records.get(order_id, [])
            if not won:
                problems.append(f"order {order_id}: answered {sent.status} for customer {sent.customer} "
                                "but the ledger has no record of it")
                continue
            record = won[0]
            if record["customerId"] != sent.customer or \
                    Decimal(str(record["order"]["amount"])) != Decimal(sent.body["amount"]):
                problems.append(f"order {order_id}: answered {sent.status} for customer {sent.customer}, amount "
                                f"{sent.body['amount']}, but the ledger credited customer {record['customerId']}, "
                                f"amount {record['order']['amount']}")
        return problems

    def _refunds(self, docs: dict[str, list[dict]], entries: dict[str, list[dict]]) -> list[str]:
        problems = []
        reversals: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for es in entries.values():
            for e in es:
                if e["entryType"] == "REVERSAL":
                    reversals[(e["referenceOrderId"], e["attributes"]["refundId"])].append(e)
        for key, found in sorted(reversals.items()):
            if len(found) > 1:
                problems.append(f"refund {key[1]} of order {key[0]} was applied {len(found)} times")
        for sent in self.of("refund"):
            if not sent.ok:
                continue
            found = reversals.get((sent.key, sent.body["refundId"]), [])
            if len(found) != 1:
                problems.append(f"refund {sent.body['refundId']} of order {sent.key}: answered {sent.status} but "
                                f"{len(found)} reversal(s) in the ledger")
                continue
            entry = found[0]
            if Decimal(entry["attributes"]["refundAmount"]) != Decimal(sent.body["amount"]) or \
                    -entry["signedAmount"] != sent.answer["pointsClawedBack"]:
                problems.append(f"refund {sent.body['refundId']} of order {sent.key}: answered {sent.body['amount']} "
                                f"/ {sent.answer['pointsClawedBack']} points, the ledger has "
                                f"{entry['attributes']['refundAmount']} / {-entry['signedAmount']}")
        refunded: dict[str, Decimal] = defaultdict(Decimal)
        for found in reversals.values():
            for e in found:
                refunded[e["referenceOrderId"]] += Decimal(e["attributes"]["refundAmount"])
        for ds in docs.values():
            for d in ds:
                if d["docType"] == ORDER_DOC and refunded[d["orderId"]] > Decimal(str(d["order"]["amount"])):
                    problems.append(f"order {d['orderId']}: {refunded[d['orderId']]} refunded of "
                                    f"{d['order']['amount']}")
        return problems

    def _keyed(self, op: str, entries: dict[str, list[dict]], belongs, matches) -> list[str]:  # type: ignore[no-untyped-def]
        problems = []
        for customer in self.customers:
            for key in sorted({s.key for s in self.of(op) if s.customer == customer}):
                found = [e for e in entries[customer] if belongs(e, customer, key)]
                if len(found) > 1:
                    problems.append(f"{op} {key} of {customer} has {len(found)} effects")
                for sent in self.of(op):
                    if sent.ok and sent.customer == customer and sent.key == key and \
                            not (len(found) == 1 and matches(found[0], sent)):
                        problems.append(f"{op} {key} of {customer}: answered {sent.status} with {sent.body}, "
                                        f"the ledger has {[e['signedAmount'] for e in found]}")
        return problems

    def _redemptions(self, docs: dict[str, list[dict]]) -> list[str]:
        problems = []
        records = {d["redemptionId"]: d for ds in docs.values() for d in ds if d["docType"] == "redemption"}
        settlements: dict[str, list[dict]] = defaultdict(list)
        for ds in docs.values():
            for d in ds:
                if d["docType"] == "settlement":
                    settlements[d["redemptionId"]].append(d)
        for rid, found in settlements.items():
            if len(found) > 1:
                problems.append(f"redemption {rid} ended {len(found)} times: {[s['resolution'] for s in found]}")
        by_key: dict[tuple[str, str], set[str]] = defaultdict(set)
        for sent in self.of("redeem"):
            if not sent.ok:
                continue
            rid = sent.answer["redemptionId"]
            by_key[(sent.customer, sent.key)].add(rid)
            record = records.get(rid)
            if record is None or record["customerId"] != sent.customer or record["points"] != sent.body["points"]:
                problems.append(f"redemption {sent.key} of {sent.customer}: answered {sent.status} for "
                                f"{sent.body['points']} points, the ledger has {record and record['points']}")
        for key, rids in by_key.items():
            if len(rids) > 1:
                problems.append(f"redemption key {key[1]} of {key[0]} answered with {len(rids)} redemptions")
        for op, resolution in (("confirm", "confirmed"), ("cancel", "cancelled")):
            for sent in self.of(op):
                if sent.ok:
                    ended = [s["resolution"] for s in settlements.get(sent.key, [])]
                    if ended != [resolution]:
                        problems.append(f"redemption {sent.key}: {op} answered {sent.status}, but it ended {ended}")
        return problems

    def _ledger(self, store: DocumentStore, entries: dict[str, list[dict]]) -> list[str]:
        problems = [f"reconciliation: {d.line()}" for d in reconcile(store, self.tenant_id).drifts
                    if d.kind not in ("stale",)]
        for customer, es in entries.items():
            if [e["seq"] for e in es] != list(range(1, len(es) + 1)):
                problems.append(f"{customer}: the ledger's sequence has gaps")
            for e in es:
                if e["runningReserved"] < 0 or e["runningPending"] < 0:
                    problems.append(f"{customer} {e['id']}: reserved {e['runningReserved']}, "
                                    f"pending {e['runningPending']}")
                if e["signedAmount"] < 0 and e["entryType"] in DEBITS_THAT_MUST_BE_COVERED \
                        and e["runningBalance"] < 0:
                    problems.append(f"{customer} {e['id']}: a {e['entryType']} of {e['signedAmount']} took the "
                                    f"balance to {e['runningBalance']}")
        return problems

    def _balances(self, entries: dict[str, list[dict]], balances: dict[str, dict[str, Any]]) -> list[str]:
        problems = []
        for customer, es in entries.items():
            head = es[-1] if es else {"runningBalance": 0, "runningReserved": 0}
            balance = balances.get(customer)
            if balance is None or balance["available"] != head["runningBalance"] \
                    or balance["reserved"] != head["runningReserved"]:
                problems.append(f"{customer}: the balance read {balance} but the ledger's head has available "
                                f"{head['runningBalance']}, reserved {head['runningReserved']}")
        return problems
