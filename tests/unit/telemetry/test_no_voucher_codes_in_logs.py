"""Voucher codes are secrets: a scenario that buys, checks, redeems (also with a typo),
cancels and expires vouchers, and uploads and hands out a partner's codes, logs at
DEBUG without a single code in any spelling (as shown, normalised, lower case)."""

from __future__ import annotations

import json
from datetime import timedelta

from shared.jobs import BY_NAME, run_job
from shared.vouchers import codes
from tests.conftest import auth
from tests.unit.spend.conftest import fund
from tests.unit.telemetry.test_no_personal_data_in_logs import captured  # noqa: F401 - the fixture

POOL_CODES = ["PARTNERQX-7781", "PARTNERQX-7782"]
TEN_OFF = {"rewardId": "ten-off", "name": "10 EUR off", "pointsCost": 100, "type": "voucher",
           "voucher": {"value": {"amount": "10.00", "currency": "EUR"}, "validDays": 5}}
CINEMA = {"rewardId": "cinema", "name": "Cinema", "pointsCost": 100, "type": "voucher",
          "voucher": {"poolId": "cine", "validDays": 5}}


def test_no_voucher_code_reaches_a_log_line(platform, client, tenant, clock, captured) -> None:  # noqa: F811
    merchant, admin = auth(tenant.merchant), auth(tenant.admin)
    fund(platform, "acme", "c1", 1000)
    assert client.post("/v1/rewards", json=TEN_OFF, headers=admin).status_code == 201
    assert client.post("/v1/rewards", json=CINEMA, headers=admin).status_code == 201
    assert client.post("/v1/voucher-pools/cine/codes", content="code\n" + "\n".join(POOL_CODES) + "\n",
                       headers={**admin, "Content-Type": "text/csv"}).status_code == 201
    shown = []
    for key, reward in (("b1", "ten-off"), ("b2", "ten-off"), ("b3", "ten-off"), ("b4", "cinema")):
        bought = client.post("/v1/customers/c1/redemptions", json={"idempotencyKey": key, "rewardId": reward},
                             headers=merchant)
        assert bought.status_code == 201, bought.text
        shown.append(bought.json()["voucher"])
    first, second, third, _ = shown
    data = codes.normalise(first["code"])
    typo = data[:5] + codes.ALPHABET[(codes.ALPHABET.index(data[5]) + 1) % 32] + data[6:]
    pos = {**merchant, "Idempotency-Key": "pos-1"}
    assert client.get(f"/v1/vouchers/{first['code']}", headers=merchant).status_code == 200
    assert client.post(f"/v1/vouchers/{typo}/redeem", json={"channel": "online"}, headers=pos).status_code == 422
    assert client.post(f"/v1/vouchers/{first['code']}/redeem", json={"channel": "online"}, headers=pos
                       ).status_code == 201
    assert client.post(f"/v1/vouchers/{first['code']}/redeem", json={"channel": "online"},
                       headers={**merchant, "Idempotency-Key": "pos-2"}).status_code == 409
    assert client.post(f"/v1/customers/c1/vouchers/{second['voucherId']}/cancel", headers=merchant
                       ).status_code == 201
    clock.advance(timedelta(days=6))
    run_job(BY_NAME["vouchers"], platform)
    assert client.get(f"/v1/vouchers/{third['code']}", headers=merchant).json()["status"] == "expired"
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    # The test client is the point of sale: its own request lines (httpx, to the test's
    # base URL) are not the platform's logs.
    platform_lines = [line for line in lines if not (line["logger"].startswith("httpx")
                                                     and "http://accrue.test" in line["message"])]
    assert platform_lines, "the scenario logged nothing at DEBUG"
    text = "\n".join(json.dumps(line) for line in platform_lines)
    needles = set(POOL_CODES)
    for voucher in (first, second, third):
        needles |= {voucher["code"], codes.normalise(voucher["code"]), voucher["code"].lower(),
                    codes.normalise(voucher["code"])[:16]}
    needles.add(typo)
    leaked = sorted(n for n in needles if n in text or n.lower() in text.lower())
    assert not leaked, f"voucher codes in the logs: {leaked}"
