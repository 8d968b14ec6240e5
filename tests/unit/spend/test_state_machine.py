"""The reservation state machine, property-tested against a model: any sequence
of funding, direct redemptions, reservations, confirmations, cancellations,
replays, clock jumps and expiry-job runs keeps the ledger equal to the model,
and no step ever takes the available balance below zero."""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from shared.app.corrections import AdjustmentRequest
from shared.clock import ManualClock
from shared.domain.tenants import TenantSettings
from shared.errors import AccrueError
from shared.platform import build_platform
from shared.settings import Settings
from shared.spend.redemptions import RedeemRequest
from tests.conftest import add_customer
from tests.unit.spend.conftest import ledger_invariants

TTL = 900


class Reservations(RuleBasedStateMachine):
    reservations = Bundle("reservations")

    @initialize()
    def start(self) -> None:
        self.folder = tempfile.mkdtemp()
        self.clock = ManualClock(datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc))
        self.platform = build_platform(Settings.from_env({"ACCRUE_DATA_DIR": str(Path(self.folder) / "d"),
                                                          "ACCRUE_SQLITE_SYNCHRONOUS": "NORMAL"}),
                                       clock=self.clock)
        self.platform.tenants.save(TenantSettings(tenantId="t", name="t"))
        add_customer(self.platform, "t", "c")
        self.available = 0
        self.open: dict[str, tuple[int, datetime]] = {}  # rid -> (points, expiresAt)
        self.final: dict[str, str] = {}
        self.keys = 0

    def teardown(self) -> None:
        self.platform.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _key(self) -> str:
        self.keys += 1
        return f"k{self.keys}"

    @property
    def spend(self):
        return self.platform.spend.redemptions

    @rule(points=st.integers(1, 500))
    def fund(self, points: int) -> None:
        self.platform.corrections.adjust("t", "c", AdjustmentRequest(points=points, reasonCode="goodwill", reason="x",
                                                                     idempotencyKey=self._key()), "t")
        self.available += points

    @rule(points=st.integers(1, 600))
    def direct(self, points: int) -> None:
        try:
            result = self.spend.redeem("t", "c", RedeemRequest(idempotencyKey=self._key(), points=points), "t")
        except AccrueError as error:
            assert error.code == "insufficient-points" and points > self.available
            return
        assert points <= self.available and result.body["status"] == "completed"
        self.available -= points

    @rule(target=reservations, points=st.integers(1, 600))
    def reserve(self, points: int) -> str:
        try:
            result = self.spend.redeem("t", "c", RedeemRequest(idempotencyKey=self._key(), points=points,
                                                               mode="reserve"), "t")
        except AccrueError as error:
            assert error.code == "insufficient-points" and points > self.available
            return "rd-" + "0" * 24  # a redemption that does not exist
        assert points <= self.available
        self.available -= points
        rid = result.body["redemptionId"]
        self.open[rid] = (points, self.clock.now() + timedelta(seconds=TTL))
        return rid

    @rule(rid=reservations)
    def confirm(self, rid: str) -> None:
        try:
            result = self.spend.confirm("t", "c", rid)
        except AccrueError as error:
            if rid in self.open:
                assert error.code == "reservation-expired" and self.clock.now() >= self.open[rid][1]
            else:
                assert error.code in ("not-found", "reservation-settled")
            return
        if rid in self.open:
            assert self.clock.now() < self.open[rid][1] and result.created
            del self.open[rid]
            self.final[rid] = "confirmed"
        else:
            assert self.final.get(rid) == "confirmed" and not result.created  # a replay

    @rule(rid=reservations)
    def cancel(self, rid: str) -> None:
        try:
            result = self.spend.cancel("t", "c", rid)
        except AccrueError as error:
            assert rid not in self.open and error.code in ("not-found", "reservation-settled")
            return
        if rid in self.open:
            self.available += self.open.pop(rid)[0]
            self.final[rid] = "cancelled"
            assert result.created
        else:
            assert self.final.get(rid) == "cancelled" and not result.created

    @rule(seconds=st.integers(1, 1200))
    def wait(self, seconds: int) -> None:
        self.clock.advance(timedelta(seconds=seconds))

    @rule()
    def expiry_job(self) -> None:
        report = self.spend.release_expired()
        due = [rid for rid, (_, expires) in self.open.items() if self.clock.now() >= expires]
        assert report["released"] == len(due)
        for rid in due:
            self.available += self.open.pop(rid)[0]
            self.final[rid] = "expired"

    @invariant()
    def ledger_matches_the_model(self) -> None:
        if not hasattr(self, "platform"):
            return
        head = self.platform.ledger.head("t", "c")
        assert head.balance == self.available >= 0
        assert head.reserved == sum(points for points, _ in self.open.values())
        for rid, state in self.final.items():
            assert self.spend.get("t", "c", rid)["status"] == state

    @invariant()
    def running_totals_recompute(self) -> None:
        if hasattr(self, "platform"):
            ledger_invariants(self.platform, "t", "c")


Reservations.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow])
TestReservations = Reservations.TestCase
