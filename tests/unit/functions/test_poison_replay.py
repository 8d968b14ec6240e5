"""Replay of the poison store (shared.app.replay): what goes back, in which
order, and what stays."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

import pytest

from shared.app.messages import order_message
from shared.app.replay import replay_poison
from shared.bus.port import BusMessage
from shared.domain.orders import Order
from shared.errors import BusUnavailable
from shared.platform import Platform
from tests.conftest import order_body

T0 = datetime(2026, 11, 1, 11, 0, tzinfo=timezone.utc)


class RecordingBus:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.published: list[BusMessage] = []

    def publish(self, messages: Sequence[BusMessage]) -> None:
        if self.fail:
            raise BusUnavailable("hub down")
        self.published.extend(messages)

    def close(self) -> None:
        pass


def body(customer: str, order_id: str, minutes: int) -> dict[str, Any]:
    order = Order.model_validate(order_body(customer, order_id))
    return order_message("acme", order, T0 + timedelta(minutes=minutes)).to_body()


def test_ingest_entries_go_back_to_the_bus_in_acceptance_order(tenant: Any, platform: Platform) -> None:
    # Poisoned out of order (o2 first), as an isolating batch may do.
    platform.poison.put("ingest", body("c1", "o2", 2), "bug")
    platform.poison.put("ingest", body("c1", "o1", 1), "bug")
    platform.poison.put("ingest", body("c2", "o3", 3), "bug")
    bus = RecordingBus()

    report = replay_poison(platform.poison, bus, platform.projector)

    assert [m.body["order"]["orderId"] for m in bus.published] == ["o1", "o2", "o3"]
    assert [m.partition_key for m in bus.published] == ["acme:c1", "acme:c1", "acme:c2"]
    assert len(report.republished) == 3 and platform.poison.list_all() == []


def test_nothing_is_removed_when_the_bus_is_down(tenant: Any, platform: Platform) -> None:
    platform.poison.put("ingest", body("c1", "o1", 1), "bug")
    with pytest.raises(BusUnavailable):
        replay_poison(platform.poison, RecordingBus(fail=True), platform.projector)
    assert len(platform.poison.list_all()) == 1


def test_still_malformed_and_unknown_entries_stay(tenant: Any, platform: Platform) -> None:
    platform.poison.put("ingest", "not json", "malformed")
    platform.poison.put("webhooks", {"tenantId": "acme"}, "other component")
    bus = RecordingBus()

    report = replay_poison(platform.poison, bus, platform.projector)

    assert bus.published == [] and report.replayed == 0
    assert sorted(item.detail.split(":")[0] for item in report.skipped) == ["still malformed", "unknown source 'webhooks'"]
    assert len(platform.poison.list_all()) == 2


def test_one_tenant_only(tenant: Any, other_tenant: Any, platform: Platform) -> None:
    platform.poison.put("ingest", body("c1", "o1", 1), "bug")
    other = order_message("globex", Order.model_validate(order_body("c1", "g1")), T0).to_body()
    platform.poison.put("ingest", other, "bug")
    bus = RecordingBus()

    replay_poison(platform.poison, bus, platform.projector, tenant_id="globex")

    assert [m.body["tenantId"] for m in bus.published] == ["globex"]
    assert [p["tenantId"] for p in platform.poison.list_all()] == ["acme"]


def test_a_projection_entry_that_still_fails_stays(tenant: Any, platform: Platform) -> None:
    platform.poison.put("projection", {"docType": "entry", "pk": "acme:c1", "tenantId": "acme"}, "bug")
    report = replay_poison(platform.poison, RecordingBus(), platform.projector)
    assert len(report.failed) == 1 and "KeyError" in report.failed[0].detail
    assert len(platform.poison.list_all()) == 1
