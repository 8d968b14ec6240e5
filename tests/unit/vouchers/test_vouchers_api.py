"""Vouchers over the HTTP API: bought with points through the ledger, redeemed at a
point of sale exactly once per use, cancelled or expired with points returned by the
tenant's policy, and every bad input refused with nothing changed."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

from shared.jobs import BY_NAME, run_job
from shared.vouchers import codes
from tests.conftest import auth
from tests.unit.spend.conftest import fund, ledger_invariants

REDEEM = "/v1/customers/{}/redemptions"
TEN_OFF = {"rewardId": "ten-off", "name": "10 EUR off", "pointsCost": 500, "type": "voucher",
           "voucher": {"value": {"amount": "10.00", "currency": "EUR"}, "validDays": 30}}


def _snapshot(platform) -> list:
    db = sqlite3.connect(platform.store.path)
    rows = db.execute("SELECT container, pk, id, etag FROM docs WHERE container != 'audit' "
                      "ORDER BY container, pk, id").fetchall()
    db.close()
    return rows


def _reward(client, tenant, body=None) -> None:
    response = client.post("/v1/rewards", json=body or TEN_OFF, headers=auth(tenant.admin))
    assert response.status_code == 201, response.text


def _buy(client, tenant, customer="c1", key="buy-1") -> dict:
    response = client.post(REDEEM.format(customer), json={"idempotencyKey": key, "rewardId": "ten-off"},
                           headers=auth(tenant.merchant))
    assert response.status_code == 201, response.text
    return response.json()


def _use(client, tenant, code, key="pos-1", channel="in-store"):
    return client.post(f"/v1/vouchers/{code}/redeem", json={"channel": channel, "orderId": "o-1"},
                       headers={**auth(tenant.merchant), "Idempotency-Key": key})


def test_points_buy_a_voucher_once_and_a_replay_gives_the_same_code(client, platform, tenant) -> None:
    fund(platform, "acme", "c1", 1000)
    _reward(client, tenant)
    bought = _buy(client, tenant)
    voucher = bought["voucher"]
    assert bought["status"] == "completed" and bought["available"] == 500
    assert voucher["status"] == "active" and voucher["uses"] == 1 and voucher["value"] == {"amount": "10.00",
                                                                                          "currency": "EUR"}
    assert codes.normalise(voucher["code"])  # a well-formed code with a valid check symbol
    replay = client.post(REDEEM.format("c1"), json={"idempotencyKey": "buy-1", "rewardId": "ten-off"},
                         headers=auth(tenant.merchant))
    assert replay.status_code == 200 and replay.json()["voucher"]["code"] == voucher["code"]
    entries = ledger_invariants(platform, "acme", "c1")
    assert [(e["entryType"], e["signedAmount"]) for e in entries] == [("ADJUST", 1000), ("REDEEM", -500)]
    listed = client.get("/v1/customers/c1/vouchers", headers=auth(tenant.analyst)).json()["items"]
    assert [v["voucherId"] for v in listed] == [voucher["voucherId"]] and "code" not in listed[0]
    # The code rests nowhere in the clear.
    db = sqlite3.connect(platform.store.path)
    for code_form in (voucher["code"], codes.normalise(voucher["code"])):
        assert db.execute("SELECT count(*) FROM docs WHERE body LIKE ?", (f"%{code_form}%",)).fetchone()[0] == 0
    db.close()


def test_a_single_use_voucher_is_redeemed_once_and_a_retry_is_answered_the_same(client, platform, tenant) -> None:
    fund(platform, "acme", "c1", 1000)
    _reward(client, tenant)
    code = _buy(client, tenant)["voucher"]["code"]
    checked = client.get(f"/v1/vouchers/{code}", headers=auth(tenant.merchant))
    assert checked.status_code == 200 and checked.json()["status"] == "active"
    first = _use(client, tenant, code.lower())  # typed in lower case, as a cashier might
    assert first.status_code == 201, first.text
    assert first.json()["use"] == 1 and first.json()["usesLeft"] == 0
    retry = _use(client, tenant, code)
    assert retry.status_code == 200 and retry.json()["duplicate"] is True and retry.json()["use"] == 1
    second = _use(client, tenant, code, key="pos-2")
    assert second.status_code == 409 and second.json()["type"].endswith("/voucher-not-redeemable")
    assert second.json()["state"] == "used"
    reused = client.post(f"/v1/vouchers/{code}/redeem", json={"channel": "online"},
                         headers={**auth(tenant.merchant), "Idempotency-Key": "pos-1"})
    assert reused.status_code == 409 and "different" in reused.json()["detail"]


def test_bad_codes_and_requests_change_nothing(client, platform, tenant) -> None:
    fund(platform, "acme", "c1", 1000)
    _reward(client, tenant)
    code = _buy(client, tenant)["voucher"]["code"]
    data = codes.normalise(code)
    typo = data[:3] + codes.ALPHABET[(codes.ALPHABET.index(data[3]) + 1) % 32] + data[4:]
    before = _snapshot(platform)
    mistyped = _use(client, tenant, typo)
    assert mistyped.status_code == 422 and mistyped.json()["type"].endswith("/voucher-code-invalid")
    assert _use(client, tenant, "not-a-code").status_code == 422
    unknown = codes.encode(b"\x00" * 9 + b"\x07")
    assert _use(client, tenant, unknown).status_code == 404
    no_key = client.post(f"/v1/vouchers/{code}/redeem", json={"channel": "online"}, headers=auth(tenant.merchant))
    assert no_key.status_code == 422
    bad_channel = client.post(f"/v1/vouchers/{code}/redeem", json={"channel": "phone"},
                              headers={**auth(tenant.merchant), "Idempotency-Key": "k"})
    assert bad_channel.status_code == 422
    assert client.post(f"/v1/vouchers/{code}/redeem", json={"channel": "online"},
                       headers={**auth(tenant.analyst), "Idempotency-Key": "k"}).status_code == 403
    assert _snapshot(platform) == before
    bad_reward = client.post("/v1/rewards", json={**TEN_OFF, "rewardId": "x", "voucher": {"validDays": 3}},
                             headers=auth(tenant.admin))
    assert bad_reward.status_code == 422  # neither a value nor a product
    reserve = client.post(REDEEM.format("c1"), json={"idempotencyKey": "b2", "rewardId": "ten-off",
                                                     "mode": "reserve"}, headers=auth(tenant.merchant))
    assert reserve.status_code == 422 and reserve.json()["errors"][0]["field"] == "mode"
    assert _snapshot(platform) == before


def test_a_multi_use_voucher_on_its_channel(client, platform, tenant) -> None:
    fund(platform, "acme", "c1", 1000)
    _reward(client, tenant, {**TEN_OFF, "voucher": {"productSku": "COFFEE", "uses": 3, "channel": "in-store"}})
    code = _buy(client, tenant)["voucher"]["code"]
    online = _use(client, tenant, code, key="a", channel="online")
    assert online.status_code == 409 and online.json()["channel"] == "in-store"
    uses = [_use(client, tenant, code, key=k).json() for k in ("a", "b", "c")]
    assert [(u["use"], u["usesLeft"], u["productSku"]) for u in uses] == [(1, 2, "COFFEE"), (2, 1, "COFFEE"),
                                                                          (3, 0, "COFFEE")]
    assert _use(client, tenant, code, key="d").json()["state"] == "used"


def test_cancel_refunds_by_policy_once_and_expiry_by_its_own_policy(client, platform, tenant, clock) -> None:
    fund(platform, "acme", "c1", 2000)
    _reward(client, tenant)
    first = _buy(client, tenant, key="b1")["voucher"]
    second = _buy(client, tenant, key="b2")["voucher"]
    assert platform.ledger.head("acme", "c1").balance == 1000
    url = f"/v1/customers/c1/vouchers/{first['voucherId']}/cancel"
    cancelled = client.post(url, headers=auth(tenant.merchant))
    assert cancelled.status_code == 201, cancelled.text
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["refund"] == "refunded"
    assert platform.ledger.head("acme", "c1").balance == 1500
    again = client.post(url, headers=auth(tenant.merchant))
    assert again.status_code == 200 and platform.ledger.head("acme", "c1").balance == 1500
    assert _use(client, tenant, first["code"]).json()["state"] == "cancelled"
    assert client.post(f"/v1/customers/c2/vouchers/{first['voucherId']}/cancel",
                       headers=auth(tenant.merchant)).status_code == 404
    # Expiry: the default policy forfeits; a tenant that says refund gets the points back.
    assert client.put("/v1/spend/policy", json={"voucherExpiry": "refund"}, headers=auth(tenant.admin)
                      ).status_code == 200
    clock.advance(timedelta(days=31))
    assert _use(client, tenant, second["code"]).json()["state"] == "expired"
    report = run_job(BY_NAME["vouchers"], platform)
    assert report == {"expired": 1, "refunded": 1, "announced": 0}
    assert run_job(BY_NAME["vouchers"], platform) == {"expired": 0, "refunded": 0, "announced": 0}
    assert platform.ledger.head("acme", "c1").balance == 2000
    refunds = [e for e in ledger_invariants(platform, "acme", "c1") if e["entryType"] == "ADJUST"][1:]
    assert sorted(e["attributes"]["reason"] for e in refunds) == ["voucher-cancelled", "voucher-expired"]


def test_a_used_voucher_cannot_be_cancelled(client, platform, tenant) -> None:
    fund(platform, "acme", "c1", 1000)
    _reward(client, tenant)
    voucher = _buy(client, tenant)["voucher"]
    assert _use(client, tenant, voucher["code"]).status_code == 201
    refused = client.post(f"/v1/customers/c1/vouchers/{voucher['voucherId']}/cancel", headers=auth(tenant.merchant))
    assert refused.status_code == 409 and platform.ledger.head("acme", "c1").balance == 500


def test_voucher_events_reach_the_outbox_without_the_code(client, platform, tenant) -> None:
    import json

    from shared.store.layout import WEBHOOK_MESSAGES
    from shared.store.port import Filter, Query
    from shared.webhooks.ssrf import TestAllowance

    platform.webhooks.allowance = TestAllowance(frozenset({"127.0.0.1"}))
    assert client.post("/v1/webhooks/endpoints", json={"url": "http://127.0.0.1:9/hook", "eventTypes": [
        "voucher.issued", "voucher.redeemed"]}, headers=auth(tenant.admin)).status_code == 201
    fund(platform, "acme", "c1", 1000)
    _reward(client, tenant)
    voucher = _buy(client, tenant)["voucher"]
    assert _use(client, tenant, voucher["code"]).status_code == 201
    assert _use(client, tenant, voucher["code"]).status_code == 200  # a retry: no second event
    messages = platform.store.query(WEBHOOK_MESSAGES, Query(pk=None, filters=(
        Filter("createdAt", ">=", "0"),), limit=100))
    bodies = [json.loads(m["body"]) for m in messages if m.get("eventType", "").startswith("voucher.")]
    assert sorted(b["type"] for b in bodies) == ["voucher.issued", "voucher.redeemed"]
    assert all(voucher["code"] not in json.dumps(b) for b in bodies)
    assert [b["data"]["use"] for b in bodies if b["type"] == "voucher.redeemed"] == [1]


def test_a_refunded_voucher_gives_back_its_stock_unit_and_its_place_in_the_customer_limit(client, platform, tenant,
                                                                                        clock) -> None:
    """A voucher cancelled (or expired) with its points refunded was never used: its unit of a
    limited reward and its place in the customer's limit come back with the points, once."""
    fund(platform, "acme", "c1", 2000)
    fund(platform, "acme", "c2", 2000)
    _reward(client, tenant, dict(TEN_OFF, stock=1, perCustomerLimit=1))
    first = _buy(client, tenant, key="b1")["voucher"]
    refused = client.post(REDEEM.format("c2"), json={"idempotencyKey": "b2", "rewardId": "ten-off"},
                          headers=auth(tenant.merchant))
    assert refused.status_code == 409 and refused.json()["type"].endswith("out-of-stock")
    url = f"/v1/customers/c1/vouchers/{first['voucherId']}/cancel"
    assert client.post(url, headers=auth(tenant.merchant)).status_code == 201
    assert client.post(url, headers=auth(tenant.merchant)).status_code == 200  # a repeat gives nothing back
    again = _buy(client, tenant, key="b3")["voucher"]  # within the limit again, and the unit is free
    assert again["voucherId"] != first["voucherId"]
    refused = client.post(REDEEM.format("c2"), json={"idempotencyKey": "b4", "rewardId": "ten-off"},
                          headers=auth(tenant.merchant))
    assert refused.status_code == 409 and refused.json()["type"].endswith("out-of-stock")  # one unit, not two
    # Expired with the refund policy: the same.
    assert client.put("/v1/spend/policy", json={"voucherExpiry": "refund"}, headers=auth(tenant.admin)
                      ).status_code == 200
    clock.advance(timedelta(days=31))
    assert run_job(BY_NAME["vouchers"], platform) == {"expired": 1, "refunded": 1, "announced": 0}
    assert run_job(BY_NAME["vouchers"], platform) == {"expired": 0, "refunded": 0, "announced": 0}
    assert _buy(client, tenant, customer="c2", key="b5")["voucher"]["status"] == "active"
    ledger_invariants(platform, "acme", "c1")


def test_twenty_cancels_of_one_voucher_at_once_refund_it_once(client, platform, tenant) -> None:
    """Twenty cancellations race: one refund entry, one stock unit back, and every answer says
    the voucher is cancelled and refunded."""
    import threading

    fund(platform, "acme", "c1", 2000)
    fund(platform, "acme", "c2", 2000)
    _reward(client, tenant, dict(TEN_OFF, stock=1))
    voucher = _buy(client, tenant, key="b1")["voucher"]
    start = threading.Barrier(20)
    answers: list[dict] = []

    def cancel() -> None:
        start.wait()
        answers.append(platform.vouchers.cancel("acme", "c1", voucher["voucherId"], "admin").body)

    threads = [threading.Thread(target=cancel) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 20 and all((a["status"], a["refund"]) == ("cancelled", "refunded") for a in answers)
    refunds = [e for e in ledger_invariants(platform, "acme", "c1") if e["entryType"] == "ADJUST"][1:]
    assert [e["signedAmount"] for e in refunds] == [500]
    assert _buy(client, tenant, customer="c2", key="b2")["voucher"]["status"] == "active"  # the one unit is back
    refused = client.post(REDEEM.format("c1"), json={"idempotencyKey": "b3", "rewardId": "ten-off"},
                          headers=auth(tenant.merchant))
    assert refused.status_code == 409 and refused.json()["type"].endswith("out-of-stock")  # and only one
