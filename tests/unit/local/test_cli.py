"""The operator's command line (``accrue`` = ``python -m shared.local``), run in-process
on a data folder of its own."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from shared.app.messages import order_message
from shared.domain.orders import Order
from shared.local.__main__ import main
from shared.platform import build_platform
from shared.settings import Settings
from tests.conftest import add_customer, claimed, make_tenant


def test_poison_replay_puts_poisoned_orders_back_on_the_bus(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ACCRUE_DATA_DIR", str(tmp_path / "data"))
    platform = build_platform(Settings.from_env())
    try:
        order = Order(customerId="c1", orderId="o-late", amount=Decimal("4.00"), currency="EUR",
                      timestamp=datetime(2026, 11, 1, tzinfo=timezone.utc))
        body = order_message("acme", order, datetime(2026, 11, 1, 12, tzinfo=timezone.utc)).to_body()
        platform.ingest.handle([claimed(platform, body)])  # the tenant does not exist yet: kept in the poison store
        assert [e["body"]["order"]["orderId"] for e in platform.poison.list("acme")] == ["o-late"]
        make_tenant(platform, "acme")
        add_customer(platform, "acme", "c1")
    finally:
        platform.close()

    assert main(["poison", "replay", "--tenant", "acme"]) == 0
    assert "1 republished" in capsys.readouterr().out

    platform = build_platform(Settings.from_env())
    try:
        assert platform.poison.list("acme") == []
        assert platform.bus.depth() == 1
        platform.ingest.handle([d.body for d in platform.bus.claim(10)])
        assert platform.ledger.head("acme", "c1").balance == 40
    finally:
        platform.close()
