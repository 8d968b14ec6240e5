"""Property-based (stateful) tests of the ledger's invariants against a simple model.

Random sequences of orders, redelivered orders, refunds, adjustments and two
writers with their own head caches (two "processes" over one store), through
the real ingest handler and corrections service. After every step:

* each entry's running balance = the previous running balance + its amount;
* the balance = the sum of the entries, and equals the model's;
* sequence numbers are gap-free from 1;
* every acknowledged order is credited exactly once (never lost, never twice).
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import date, datetime, timezone
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


LedgerMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow])
TestLedgerInvariants = LedgerMachine.TestCase
