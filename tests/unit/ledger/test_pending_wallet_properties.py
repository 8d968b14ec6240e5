"""Property-based (stateful) tests of pending points and wallets against a simple model
(issue 19 A), beside the ledger machine of test_ledger_properties.py.

Random sequences of orders (pending through a return window or available at once,
into the ``main`` or the ``promo`` wallet, redelivered), refunds (inside the window:
cancelling pending points; after it: clawing back), the maturation job run by either
of two writers (each with its own head cache) after the clock moves, and adjustments
that take from a named wallet or in the spending order. After every step:

* sequence numbers are gap-free; each running balance, pending total and running
  wallet is the previous one plus what the entry moved, and equals the model's;
* the running wallets add up to the running balance;
* every pending earn is settled at most once (matured or cancelled, never both);
* reconciliation finds no drift.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from shared.app.corrections import AdjustmentRequest, RefundRequest
from shared.app.customers import CustomerProfile
from shared.app.messages import order_message
from shared.app.projections import Projector
from shared.app.reconcile import reconcile
from shared.clock import ManualClock
from shared.domain.orders import Order
from shared.domain.tenants import TenantSettings
from shared.domain.wallets import WalletSettings
from shared.earning import EarnLot, EarnResult
from shared.errors import InsufficientPoints, ValidationFailed
from shared.ledger.entries import counts_toward_available
from shared.ledger.service import Ledger
from shared.platform import Platform
from shared.settings import Settings
from shared.store.layout import CONTAINERS, LEDGER
from shared.store.port import Filter, Query
from shared.store.sqlite import SqliteDocumentStore
from tests.conftest import claimed
from tests.unit.ledger.test_ledger_properties import _NullBus

CUSTOMERS = ("c1", "c2")
NOW = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)
WALLETS = WalletSettings.model_validate({"wallets": [{"name": "main"}, {"name": "promo"}], "default": "main",
                                         "spendingOrder": ["promo", "main"]})


class _ChosenRules:
    """One lot of ``amount`` points per order, into the wallet and window the test chose for it."""

    def __init__(self) -> None:
        self.choices: dict[str, tuple[str, int]] = {}

    def for_tenant(self, tenant, customer_id):  # noqa: ANN001 - the EarningRulesProvider protocol
        return self

    def evaluate(self, tenant, order, customer):  # noqa: ANN001
        wallet, days = self.choices[order.order_id]
        points = int(order.amount)
        return EarnResult((EarnLot(points, wallet=wallet, pending_days=days),), "chosen")


def _spend(wallets: dict[str, int], points: int) -> None:
    """The model of a debit in the spending order (what no wallet holds goes on the default)."""
    for name in WALLETS.spending_order:
        take = min(points, max(0, wallets[name]))
        wallets[name] -= take
        points -= take
    wallets[WALLETS.default] -= points


class PendingWalletMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="pending-props-"))
        store = SqliteDocumentStore(self.folder / "s.db", CONTAINERS, synchronous="NORMAL")
        env = Settings.from_env({"ACCRUE_DATA_DIR": str(self.folder)})
        self.clock = ManualClock(NOW)
        self.rules = _ChosenRules()
        self.writers = [Platform(settings=env, store=store, bus=_NullBus(), clock=self.clock, rules=self.rules)
                        for _ in range(2)]
        self.store = store
        self.writers[0].tenants.save(TenantSettings(tenantId="t", name="t", currency="EUR", pointsPerUnit=Decimal(1),
                                                    timeZone="UTC", pendingDays=2, wallets=WALLETS))
        for customer in CUSTOMERS:
            self.writers[0].customers.register("t", CustomerProfile(customerId=customer, joinDate=date(2025, 1, 1)))
        self.available = {c: 0 for c in CUSTOMERS}
        self.pending = {c: 0 for c in CUSTOMERS}
        self.wallets = {c: {"main": 0, "promo": 0} for c in CUSTOMERS}
        # order id -> customer, amount, wallet, due (None: available at once), matured, refunded, taken
        self.orders: dict[str, dict] = {}
        self.counter = 0

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _body(self, customer: str, order_id: str, amount: int) -> dict:
        order = Order(customerId=customer, orderId=order_id, amount=Decimal(amount), currency="EUR", timestamp=NOW)
        return claimed(self.writers[0], order_message("t", order, self.clock.now()).to_body())

    @rule(writer=st.integers(0, 1), customer=st.sampled_from(CUSTOMERS), amount=st.integers(1, 300),
          wallet=st.sampled_from(["main", "promo"]), days=st.sampled_from([0, 1, 3]), copies=st.integers(1, 2))
    def send_order(self, writer: int, customer: str, amount: int, wallet: str, days: int, copies: int) -> None:
        self.counter += 1
        order_id = f"o{self.counter}"
        self.rules.choices[order_id] = (wallet, days)
        report = self.writers[writer].ingest.handle([self._body(customer, order_id, amount)] * copies)
        assert report.credited == 1 and report.duplicates == copies - 1
        due = self.clock.now() + timedelta(days=days) if days else None
        self.orders[order_id] = {"customer": customer, "amount": amount, "wallet": wallet, "due": due,
                                 "matured": due is None, "refunded": 0, "taken": 0}
        if due is None:
            self.available[customer] += amount
            self.wallets[customer][wallet] += amount
        else:
            self.pending[customer] += amount

    @rule(writer=st.integers(0, 1), hours=st.integers(1, 60))
    def mature(self, writer: int, hours: int) -> None:
        self.clock.advance(timedelta(hours=hours))
        report = self.writers[writer].maturation.mature_customers("t", list(CUSTOMERS))
        assert not report.failed
        now = self.clock.now()
        for order in self.orders.values():
            if not order["matured"] and order["due"] <= now:
                order["matured"] = True
                rest = order["amount"] - order["taken"]
                self.pending[order["customer"]] -= rest
                self.available[order["customer"]] += rest
                self.wallets[order["customer"]][order["wallet"]] += rest

    @precondition(lambda self: bool(self.orders))
    @rule(writer=st.integers(0, 1), data=st.data(), share=st.integers(1, 100))
    def refund(self, writer: int, data: st.DataObject, share: int) -> None:
        order_id = data.draw(st.sampled_from(sorted(self.orders)))
        order = self.orders[order_id]
        amount = max(1, order["amount"] * share // 100)
        self.counter += 1
        platform = self.writers[writer]
        records = self.store.query(LEDGER, Query(pk=None, filters=(Filter("docType", "=", "order"),), limit=10_000))
        Projector(self.store, platform.clock).apply(records)
        try:
            outcome = platform.corrections.refund("t", order_id, RefundRequest(
                refundId=f"r{self.counter}", amount=Decimal(amount), currency="EUR")).outcome
        except ValidationFailed:
            assert order["refunded"] + amount > order["amount"]
            return
        order["refunded"] += amount
        take = order["refunded"] - order["taken"]  # rate 1: the order's points are its amount
        order["taken"] += take
        customer = order["customer"]
        if order["matured"]:
            assert outcome.get("pointsCancelledPending", 0) == 0
            assert outcome["pointsClawedBack"] == take
            self.available[customer] -= take
            _spend(self.wallets[customer], take)
        else:
            assert (outcome["pointsCancelledPending"], outcome["pointsClawedBack"]) == (take, 0)
            self.pending[customer] -= take

    @rule(writer=st.integers(0, 1), customer=st.sampled_from(CUSTOMERS), points=st.integers(-200, 200).filter(bool),
          wallet=st.sampled_from([None, "main", "promo"]))
    def adjust(self, writer: int, customer: str, points: int, wallet: str | None) -> None:
        self.counter += 1
        request = AdjustmentRequest(points=points, reasonCode="correction", reason="test",
                                    idempotencyKey=f"adj{self.counter}", wallet=wallet)
        try:
            self.writers[writer].corrections.adjust("t", customer, request, "key")
        except InsufficientPoints:
            assert self.available[customer] + points < 0 or (
                wallet is not None and self.wallets[customer][wallet] + points < 0)
            return
        self.available[customer] += points
        target = wallet or (WALLETS.default if points > 0 else None)
        if target is not None:
            self.wallets[customer][target] += points
        else:
            _spend(self.wallets[customer], -points)

    @invariant()
    def ledger_matches_model(self) -> None:
        ledger = Ledger(self.store, self.clock)
        for customer in CUSTOMERS:
            entries = ledger.entries("t", customer, newest_first=False, limit=10_000)
            assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1)), "sequence has a gap"
            running, wallets = 0, {"main": 0, "promo": 0}
            for entry in entries:
                if counts_toward_available(entry["status"], entry["signedAmount"]):
                    running += entry["signedAmount"]
                assert entry["runningBalance"] == running, f"running balance broke at {entry['id']}"
                for name, points in (entry.get("walletSplit") or {}).items():
                    wallets[name] += points
                assert entry["runningWallets"] == wallets, f"running wallets broke at {entry['id']}"
                assert sum(entry["runningWallets"].values()) == entry["runningBalance"]
            settled = [e["settlesEntryId"] for e in entries if e.get("settlesEntryId")]
            assert len(settled) == len(set(settled)), "a pending earn was settled twice"
            head = ledger.head("t", customer)
            assert (head.balance, head.pending) == (self.available[customer], self.pending[customer])
            assert {name: head.wallet(name, WALLETS.default) for name in WALLETS.names} == self.wallets[customer]
        assert reconcile(self.store, "t").ok


PendingWalletMachine.TestCase.settings = settings(max_examples=30, stateful_step_count=25, deadline=None,
                                                  suppress_health_check=[HealthCheck.too_slow])
TestPendingWalletInvariants = PendingWalletMachine.TestCase
