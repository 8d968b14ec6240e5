"""Property-based (stateful) tests of the ledger's invariants against a simple model.

Random sequences of orders, redelivered orders, refunds, adjustments and two
writers with their own head caches (two "processes" over one store), through
the real ingest handler and corrections service. After every step:

* each entry's running balance = the previous running balance + its amount;
* the balance = the sum of the entries, and equals the model's;
* sequence numbers are gap-free from 1;
* every acknowledged order is credited exactly once (never lost, never twice);
* transfers (shared/transfers), some crashing after one of their steps and then
  recovered, move points exactly once: the model's total (balances plus points
  held by open transfers) is unchanged by them, and no balance goes negative
  through one;
* every customer's hash chain verifies (shared/ledger/chain.py).
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
from shared.bus.port import BusMessage
from shared.clock import ManualClock
from shared.domain.orders import Order
from shared.domain.tenants import TenantSettings
from shared.errors import InsufficientPoints, ValidationFailed
from shared.ledger.chain import verify_customer
from shared.transfers.saga import RECOVERY_GRACE, TransferRequest
from shared.ledger.service import Ledger
from shared.platform import Platform
from shared.settings import Settings
from shared.app.projections import Projector
from shared.earning import RateOnlyProvider
from shared.store.layout import CONTAINERS, LEDGER
from shared.store.port import Filter, Query
from shared.store.sqlite import SqliteDocumentStore
from tests.conftest import claimed

CUSTOMERS = ("c1", "c2", "c3")
NOW = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)


class _NullBus:
    def publish(self, messages: list[BusMessage]) -> None:
        pass

    def close(self) -> None:
        pass


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="ledger-props-"))
        store = SqliteDocumentStore(self.folder / "s.db", CONTAINERS, synchronous="NORMAL")
        settings = Settings.from_env({"ACCRUE_DATA_DIR": str(self.folder)})
        clock = ManualClock(NOW)
        # Two platforms over one store: two writers, each with its own head cache.
        self.writers = [Platform(settings=settings, store=store, bus=_NullBus(), clock=clock,
                                 rules=RateOnlyProvider())
                        for _ in range(2)]
        self.store = store
        self.writers[0].tenants.save(TenantSettings(tenantId="t", name="t", currency="EUR", pointsPerUnit=Decimal(1)))
        for customer in CUSTOMERS:
            self.writers[0].customers.register("t", CustomerProfile(customerId=customer, joinDate=date(2025, 1, 1)))
        self.balance = {c: 0 for c in CUSTOMERS}
        self.orders: dict[str, tuple[str, int, int]] = {}  # order id -> customer, amount, points clawed
        self.refunded: dict[str, int] = {}
        self.counter = 0
        # Points debited by a transfer that crashed before its credit: (receiver, points).
        self.in_flight: list[tuple[str, int]] = []

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _order(self, customer: str, order_id: str, amount: int) -> dict:
        order = Order(customerId=customer, orderId=order_id, amount=Decimal(amount), currency="EUR",
                      timestamp=NOW)
        return claimed(self.writers[0], order_message("t", order, NOW).to_body())

    @rule(writer=st.integers(0, 1), customer=st.sampled_from(CUSTOMERS), amount=st.integers(1, 500),
          copies=st.integers(1, 3))
    def send_order(self, writer: int, customer: str, amount: int, copies: int) -> None:
        self.counter += 1
        order_id = f"o{self.counter}"
        body = self._order(customer, order_id, amount)
        report = self.writers[writer].ingest.handle([body] * copies)
        assert report.credited == 1 and report.duplicates == copies - 1
        self.orders[order_id] = (customer, amount, 0)
        self.refunded[order_id] = 0
        self.balance[customer] += amount

    @precondition(lambda self: bool(self.orders))
    @rule(writer=st.integers(0, 1), data=st.data())
    def redeliver(self, writer: int, data: st.DataObject) -> None:
        order_id = data.draw(st.sampled_from(sorted(self.orders)))
        customer, amount, _ = self.orders[order_id]
        report = self.writers[writer].ingest.handle([self._order(customer, order_id, amount)])
        assert report.duplicates == 1 and report.credited == 0

    @precondition(lambda self: bool(self.orders))
    @rule(writer=st.integers(0, 1), data=st.data(), share=st.integers(1, 100))
    def refund(self, writer: int, data: st.DataObject, share: int) -> None:
        order_id = data.draw(st.sampled_from(sorted(self.orders)))
        customer, amount, clawed = self.orders[order_id]
        refund_amount = max(1, amount * share // 100)
        self.counter += 1
        platform = self.writers[writer]
        self._project(platform)
        try:
            outcome = platform.corrections.refund("t", order_id, RefundRequest(
                refundId=f"r{self.counter}", amount=Decimal(refund_amount), currency="EUR"))
        except ValidationFailed:
            assert self.refunded[order_id] + refund_amount > amount
            return
        self.refunded[order_id] += refund_amount
        expected_total = amount * self.refunded[order_id] // amount  # points = amount at rate 1
        claw = expected_total - clawed
        assert outcome.outcome["pointsClawedBack"] == claw
        self.orders[order_id] = (customer, amount, clawed + claw)
        self.balance[customer] -= claw

    @rule(writer=st.integers(0, 1), customer=st.sampled_from(CUSTOMERS), points=st.integers(-300, 300).filter(bool))
    def adjust(self, writer: int, customer: str, points: int) -> None:
        self.counter += 1
        request = AdjustmentRequest(points=points, reasonCode="correction", reason="test",
                                    idempotencyKey=f"adj{self.counter}")
        try:
            self.writers[writer].corrections.adjust("t", customer, request, "key")
        except InsufficientPoints:
            assert self.balance[customer] + points < 0
            return
        self.balance[customer] += points

    @rule(writer=st.integers(0, 1), sender=st.sampled_from(CUSTOMERS), receiver=st.sampled_from(CUSTOMERS),
          points=st.integers(1, 300), crash=st.sampled_from([None, "_debit", "_credit", "_complete"]))
    def transfer(self, writer: int, sender: str, receiver: str, points: int, crash: str | None) -> None:
        if sender == receiver:
            return
        self.counter += 1
        transfers = self.writers[writer].transfers
        if crash is not None:
            step = getattr(transfers, crash)

            def then_crash(*args: object) -> None:
                step(*args)
                raise _Crash(crash)

            setattr(transfers, crash, then_crash)
        request = TransferRequest.model_validate({"toCustomerId": receiver, "points": points,
                                                  "idempotencyKey": f"tr{self.counter}"})
        try:
            transfers.transfer("t", sender, request)
        except InsufficientPoints:
            assert self.balance[sender] < points
            return
        except _Crash:
            self.balance[sender] -= points
            if crash == "_debit":
                self.in_flight.append((receiver, points))
            else:
                self.balance[receiver] += points
            return
        finally:
            if crash is not None:
                delattr(transfers, crash)
        assert self.balance[sender] >= points
        self.balance[sender] -= points
        self.balance[receiver] += points

    @rule(writer=st.integers(0, 1))
    def recover_transfers(self, writer: int) -> None:
        platform = self.writers[writer]
        platform.clock.advance(RECOVERY_GRACE + timedelta(seconds=1))
        platform.transfers.recover()
        assert platform.transfers.open_transfers(due_only=False) == []
        for receiver, points in self.in_flight:
            self.balance[receiver] += points
        self.in_flight = []

    def _project(self, platform: Platform) -> None:
        # Refunds find the order's customer through the order-status read model.
        records = self.store.query(LEDGER, Query(pk=None, filters=(Filter("docType", "=", "order"),), limit=10_000))
        Projector(self.store, platform.clock).apply(records)

    @invariant()
    def ledger_matches_model(self) -> None:
        ledger = Ledger(self.store, self.writers[0].clock)
        for customer in CUSTOMERS:
            entries = ledger.entries("t", customer, newest_first=False, limit=10_000)
            assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1)), "sequence has a gap"
            running = 0
            for entry in entries:
                running += entry["signedAmount"]
                assert entry["runningBalance"] == running, f"running balance broke at {entry['id']}"
            assert running == self.balance[customer]
            assert ledger.head("t", customer).balance == self.balance[customer]
            earned = [e for e in entries if e["entryType"] == "EARN"]
            credited = [e["referenceOrderId"] for e in earned]
            expected = sorted(o for o, (c, _, _) in self.orders.items() if c == customer)
            assert sorted(credited) == expected, "an order was lost or credited twice"
            assert verify_customer(self.store, "t", customer).ok, "the hash chain broke"


class _Crash(Exception):
    """The process dies right after a step of a transfer."""


LedgerMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow])
TestLedgerInvariants = LedgerMachine.TestCase
