"""Money, instants and dates over HTTP, as properties (issue 12).

For each field: any string the server accepts is read as exactly one value (the
independent oracle's), and that value is what is carried on (the bus message, the
stored profile, the answer); any other string is a 422 problem naming the field,
and a refused request wrote nothing (no document in any container, no message)."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import re
import sqlite3
import time
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.clock import EARLIEST_INSTANT, LATEST_INSTANT
from shared.domain.inputs import EARLIEST_BIRTH_DATE, EARLIEST_JOIN_DATE, latest_birth_date, latest_join_date
from tests.conftest import PerPlatform, auth, drain, order_body

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
_ids = itertools.count(1)

# --- oracles, written apart from the parsers ---------------------------------------------


def amount_oracle(text: Any, minor: int, positive: bool) -> Decimal | None:
    if not isinstance(text, str) or not re.fullmatch(r"(0|[1-9][0-9]*)(\.[0-9]+)?", text, re.ASCII):
        return None
    whole, _, fraction = text.partition(".")
    if len(whole) > 8 or len(fraction) > minor:
        return None
    value = Decimal(text)
    if value > Decimal(10_000_000) or (positive and value == 0):
        return None
    return value


def instant_oracle(text: Any) -> datetime | None:
    match = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(Z|([+-])(\d\d):(\d\d))",
                         text, re.ASCII) if isinstance(text, str) else None
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    micro = int((match.group(7) or "0").ljust(6, "0"))
    try:
        from datetime import timedelta
        offset = timedelta(0) if match.group(8) == "Z" else (
            (1 if match.group(9) == "+" else -1) * timedelta(hours=int(match.group(10)), minutes=int(match.group(11))))
        moment = datetime(year, month, day, hour, minute, second, micro, tzinfo=timezone(offset))
    except (ValueError, OverflowError):
        return None
    return moment if EARLIEST_INSTANT <= moment <= LATEST_INSTANT else None


def date_oracle(text: Any, earliest: date, latest: date) -> date | None:
    if not isinstance(text, str) or not re.fullmatch(r"\d{4}-\d\d-\d\d", text, re.ASCII):
        return None
    try:
        value = date(int(text[:4]), int(text[5:7]), int(text[8:]))
    except ValueError:
        return None
    return value if earliest <= value <= latest else None


# --- generated inputs: mostly near misses, many good ones --------------------------------

NEAR = "0123456789.-+eE_ \n\u0661\uff11"
amounts = st.one_of(
    st.from_regex(r"(0|[1-9][0-9]{0,8})(\.[0-9]{1,4})?", fullmatch=True),
    st.from_regex(r"0[0-9]{1,3}(\.[0-9]{1,2})?", fullmatch=True),
    st.text(alphabet=st.sampled_from(NEAR), max_size=14),
    st.sampled_from([" 10 ", "1_000", "\u0661\u0660", "1e3", "10.", ".5", "-1", "+1", "10.000", "0", "0.00",
                     "10000000", "10000000.01", "9999999.99"]),
    st.integers(min_value=-5, max_value=10**8), st.floats(allow_nan=False, allow_infinity=False),
)
instants = st.one_of(
    st.datetimes(min_value=datetime(1960, 1, 1), max_value=datetime(9100, 1, 1),
                 timezones=st.sampled_from([timezone.utc, timezone.max, timezone.min])).map(
        lambda m: m.isoformat().replace("+00:00", "Z")),
    st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,7})?(Z|[+-][0-9]{2}:[0-9]{2})?",
                  fullmatch=True),
    st.text(alphabet=st.sampled_from("0123456789-:TZ+. "), max_size=26),
    st.sampled_from(["1700000000", "1700000000.5", "2026-11-01 11:00:00Z", "2026-11-01T11:00:00"]),
    st.integers(min_value=0, max_value=2**33),
)
dates = st.one_of(
    st.dates(min_value=date(1800, 1, 1), max_value=date(3000, 1, 1)).map(date.isoformat),
    st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", fullmatch=True),
    st.text(alphabet=st.sampled_from("0123456789-T: "), max_size=12),
    st.sampled_from(["2999-01-01", "9999-12-31", "1899-12-31", "20250101", "1700000000"]),
    st.integers(min_value=0, max_value=2**33),
)


def snapshot(platform) -> tuple[str, int]:
    """A digest of every row of every table of the store (read through a connection of
    its own, as any reader would see it) and the queue's depth: any write changes one.
    Taken at rest: an earlier accepted order's publish confirmation (written after its
    answer, fire-and-forget) must not land between two snapshots of one example."""
    deadline = time.monotonic() + 10
    while platform.intake.confirmations_in_flight and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not platform.intake.confirmations_in_flight, "publish confirmations still in flight after 10 s"
    digest = hashlib.sha256()
    with contextlib.closing(sqlite3.connect(platform.settings.data_dir / "accrue.db")) as conn:
        tables = [name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}" ORDER BY rowid'):
                digest.update(repr((table, row)).encode())
    return digest.hexdigest(), platform.bus.depth()


def carried_order(platform) -> dict:
    """The order the last accepted request put on the bus (taken off again)."""
    deliveries = platform.bus.claim(10)
    assert len(deliveries) == 1, deliveries
    platform.bus.ack(deliveries)

    def find(node: Any) -> dict | None:
        if isinstance(node, dict):
            if "orderId" in node and "amount" in node:
                return node
            return next((f for v in node.values() if (f := find(v)) is not None), None)
        if isinstance(node, list):
            return next((f for v in node if (f := find(v)) is not None), None)
        return None

    found = find(deliveries[0].body)
    assert found is not None, deliveries[0].body
    return found


def assert_refused(response, field: str, before: tuple, platform) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in response.json()["errors"]], response.json()
    assert snapshot(platform) == before, "a refused request wrote something"


# --- the properties ----------------------------------------------------------------------


@SETTINGS
@given(text=amounts)
def test_an_order_amount_is_one_value_or_a_422_that_wrote_nothing(client, platform, tenant, text) -> None:
    order_id = f"p{next(_ids)}"
    body = order_body(order_id=order_id, amount=text)
    body["items"][0]["unitPrice"] = "1.00"
    before = snapshot(platform)
    response = client.post("/v1/orders", json=body, headers=auth(tenant.merchant))
    expected = amount_oracle(text, minor=2, positive=True)  # the tenant's orders are in EUR
    if expected is None:
        assert_refused(response, "amount", before, platform)
        return
    assert response.status_code == 202, (text, response.text)
    assert snapshot(platform) != before  # the snapshot sees a write (the order's "queued" status)
    carried = carried_order(platform)["amount"]
    assert Decimal(carried) == expected and carried == text


@SETTINGS
@given(text=amounts)
def test_a_unit_price_is_one_value_or_a_422_that_wrote_nothing(client, platform, tenant, text) -> None:
    order_id = f"u{next(_ids)}"
    body = order_body(order_id=order_id, amount="10.00")
    body["items"][0]["unitPrice"] = text
    before = snapshot(platform)
    response = client.post("/v1/orders", json=body, headers=auth(tenant.merchant))
    expected = amount_oracle(text, minor=2, positive=False)
    if expected is None:
        assert_refused(response, "items[0].unitPrice", before, platform)
        return
    assert response.status_code == 202, (text, response.text)
    carried = carried_order(platform)["items"][0]["unitPrice"]
    assert Decimal(carried) == expected and carried == text


@SETTINGS
@given(text=instants)
def test_an_order_timestamp_is_one_instant_or_a_422_that_wrote_nothing(client, platform, tenant, text) -> None:
    body = order_body(order_id=f"t{next(_ids)}", timestamp=text)
    before = snapshot(platform)
    response = client.post("/v1/orders", json=body, headers=auth(tenant.merchant))
    expected = instant_oracle(text)
    if expected is None:
        assert_refused(response, "timestamp", before, platform)
        return
    assert response.status_code == 202, (text, response.text)
    carried = datetime.fromisoformat(carried_order(platform)["timestamp"])
    assert carried == expected and carried.utcoffset() == expected.utcoffset()


@SETTINGS
@given(text=instants)
def test_a_balance_as_of_is_one_instant_or_a_422(client, platform, tenant, text) -> None:
    response = client.get("/v1/customers/c1/balance", params={"asOf": str(text)}, headers=auth(tenant.merchant))
    expected = instant_oracle(str(text))
    if expected is None:
        assert response.status_code == 422 and [e["field"] for e in response.json()["errors"]] == ["query.asOf"]
        return
    assert response.status_code == 200, (text, response.text)
    assert datetime.fromisoformat(response.json()["asOf"]) == expected


@SETTINGS
@given(joined=dates, born=dates)
def test_join_and_birth_dates_are_one_day_or_a_422_that_wrote_nothing(client, platform, tenant, joined,
                                                                      born) -> None:
    customer_id = f"d{next(_ids)}"
    before = snapshot(platform)
    response = client.post("/v1/customers", json={"customerId": customer_id, "joinDate": joined, "birthDate": born},
                           headers=auth(tenant.merchant))
    join = date_oracle(joined, EARLIEST_JOIN_DATE, latest_join_date())
    birth = date_oracle(born, EARLIEST_BIRTH_DATE, latest_birth_date())
    if join is None or birth is None:
        assert response.status_code == 422, response.text
        fields = {e["field"] for e in response.json()["errors"]}
        assert fields == {name for name, value in (("joinDate", join), ("birthDate", birth)) if value is None}
        assert snapshot(platform) == before, "a refused request wrote something"
        return
    assert response.status_code == 201, (joined, born, response.text)
    assert response.json()["joinDate"] == join.isoformat() == joined
    read = client.get(f"/v1/customers/{customer_id}", headers=auth(tenant.merchant)).json()
    assert read["personalData"]["birthDate"] == birth.isoformat() == born


_refunded = PerPlatform()  # one credited order per platform, refunded bit by bit


@SETTINGS
@given(text=amounts)
def test_a_refund_amount_is_one_value_or_a_422_that_wrote_nothing(client, platform, tenant, text) -> None:
    def big_order() -> dict[str, Decimal]:
        response = client.post("/v1/orders", json=order_body(order_id="big", amount="1000.00"),
                               headers=auth(tenant.merchant))
        assert response.status_code == 202, response.text
        drain(platform)
        return {"refunded": Decimal(0)}

    refunds = _refunded.get(platform, big_order)
    left = Decimal("1000.00") - refunds["refunded"]
    expected = amount_oracle(text, minor=2, positive=True)
    before = snapshot(platform)
    response = client.post("/v1/orders/big/refunds", json={"refundId": f"r{next(_ids)}", "amount": text,
                                                           "currency": "EUR"}, headers=auth(tenant.merchant))
    if expected is None or expected > left:
        assert_refused(response, "amount", before, platform)
        return
    assert response.status_code == 201, (text, response.text)
    refunds["refunded"] += expected
    newest = platform.ledger.entries("acme", "c1", limit=1)[0]
    assert newest["entryType"] == "REVERSAL" and newest["attributes"]["refundAmount"] == text


@SETTINGS
@given(text=instants)
def test_a_reward_window_start_is_one_instant_or_a_422_that_wrote_nothing(client, platform, tenant, text) -> None:
    reward_id = f"w{next(_ids)}"
    before = snapshot(platform)
    response = client.post("/v1/rewards", json={"rewardId": reward_id, "name": "Mug", "pointsCost": 100,
                                                "validFrom": text}, headers=auth(tenant.admin))
    expected = instant_oracle(text)
    if expected is None:
        assert_refused(response, "validFrom", before, platform)
        return
    assert response.status_code == 201, (text, response.text)
    stored = datetime.fromisoformat(response.json()["validFrom"])
    assert stored == expected


@SETTINGS
@given(text=amounts)
def test_points_per_unit_is_one_value_or_a_422_that_wrote_nothing(client, platform, tenant, text) -> None:
    before = snapshot(platform)
    response = client.patch("/v1/tenant", json={"pointsPerUnit": text}, headers=auth(tenant.admin))
    expected = amount_oracle(text, minor=4, positive=False)
    if expected is not None and (expected > 1000 or len(text.partition(".")[0]) > 4):
        expected = None
    if expected is None:
        assert_refused(response, "pointsPerUnit", before, platform)
        return
    assert response.status_code == 200, (text, response.text)
    assert response.json()["pointsPerUnit"] == text and Decimal(text) == expected
