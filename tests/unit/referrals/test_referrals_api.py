"""Referrals over the HTTP API: a code per customer, a referee registered with it, both
parties credited once when the referee's first qualifying order is credited (also under
redelivery of the change feed), self-referral refused, the cap per period, the velocity
hold and the reversal of a fully refunded order within the return window."""

from __future__ import annotations

import sqlite3

from shared.store.layout import CODES, LEDGER
from shared.store.port import Filter, Query
from tests.conftest import StoreThatInterleaves, auth, drain, order_body
from tests.unit.spend.conftest import ledger_invariants

PROGRAMME = {"referrerPoints": 500, "refereePoints": 250, "minimumAmount": "20.00", "currency": "EUR"}


def _snapshot(platform) -> list:
    db = sqlite3.connect(platform.store.path)
    rows = db.execute("SELECT container, pk, id, etag FROM docs WHERE container != 'audit' "
                      "ORDER BY container, pk, id").fetchall()
    db.close()
    return rows


def _setup(client, tenant, **programme) -> str:
    assert client.put("/v1/referrals/programme", json={**PROGRAMME, **programme}, headers=auth(tenant.admin)
                      ).status_code == 200
    assert client.post("/v1/customers", json={"customerId": "ann", "joinDate": "2026-01-01",
                                              "email": "ann.smith+shop@gmail.com", "phone": "+33 6 11 22 33 44"},
                       headers=auth(tenant.admin)).status_code == 201
    code = client.post("/v1/customers/ann/referral-code", headers=auth(tenant.merchant))
    assert code.status_code == 200, code.text
    again = client.post("/v1/customers/ann/referral-code", headers=auth(tenant.merchant))
    assert again.json()["code"] == code.json()["code"]
    return code.json()["code"]


def _register(client, tenant, customer_id, code, **personal):
    return client.post("/v1/customers", json={"customerId": customer_id, "joinDate": "2026-11-01",
                                              "referralCode": code, **personal}, headers=auth(tenant.merchant))


def _order(client, platform, tenant, customer_id, order_id, amount="40.00"):
    sent = client.post("/v1/orders", json=order_body(customer_id, order_id, amount), headers=auth(tenant.merchant))
    assert sent.status_code in (200, 202), sent.text
    drain(platform)


def _referral_points(platform, customer_id) -> list[int]:
    return [e["signedAmount"] for e in ledger_invariants(platform, "acme", customer_id)
            if (e.get("attributes") or {}).get("referralId")]


def test_the_first_qualifying_order_credits_both_once(client, platform, tenant) -> None:
    code = _setup(client, tenant)
    assert _register(client, tenant, "bob", code.lower(), email="bob@example.org").status_code == 201
    assert client.get("/v1/customers/bob/referral", headers=auth(tenant.analyst)).json()["status"] == "pending"
    _order(client, platform, tenant, "bob", "small", "5.00")  # below the minimum: does not qualify
    assert _referral_points(platform, "ann") == []
    _order(client, platform, tenant, "bob", "big")
    _order(client, platform, tenant, "bob", "bigger")  # only the first qualifying order counts
    referral = client.get("/v1/customers/bob/referral", headers=auth(tenant.analyst)).json()
    assert referral["status"] == "qualified" and referral["orderId"] == "big"
    assert _referral_points(platform, "ann") == [500] and _referral_points(platform, "bob") == [250]
    # The change feed delivers again (at least once): nothing more is written.
    docs = platform.store.query(LEDGER, Query(pk="acme:bob", filters=(Filter("docType", "=", "order"),)))
    platform.referrals.project(docs)
    platform.referrals.project(docs)
    assert _referral_points(platform, "ann") == [500] and _referral_points(platform, "bob") == [250]


def test_self_referral_and_bad_codes_register_nobody(client, platform, tenant) -> None:
    code = _setup(client, tenant)
    before = _snapshot(platform)
    same_email = _register(client, tenant, "ann2", code, email="AnnSmith@googlemail.com")
    assert same_email.status_code == 422 and "themselves" in same_email.json()["detail"]
    same_phone = _register(client, tenant, "ann3", code, phone="+33 (0)6 11 22 33 44")
    assert same_phone.status_code == 422
    typo = code[:-1] + ("0" if code[-1] != "0" else "1")
    assert _register(client, tenant, "carl", typo).status_code == 422
    assert _register(client, tenant, "ann", code).status_code in (409, 422)
    assert _snapshot(platform) == before


def test_the_cap_per_referrer_per_period(client, platform, tenant) -> None:
    code = _setup(client, tenant, capPerPeriod=1)
    for name in ("bob", "cid"):
        assert _register(client, tenant, name, code).status_code == 201
        _order(client, platform, tenant, name, f"o-{name}")
    states = [client.get(f"/v1/customers/{n}/referral", headers=auth(tenant.analyst)).json()["status"]
              for n in ("bob", "cid")]
    assert states == ["qualified", "capped"] and _referral_points(platform, "ann") == [500]
    assert _referral_points(platform, "cid") == []


def test_velocity_holds_for_review_and_approval_credits(client, platform, tenant) -> None:
    code = _setup(client, tenant, velocityPerDay=1)
    for name in ("bob", "cid"):
        assert _register(client, tenant, name, code).status_code == 201
        _order(client, platform, tenant, name, f"o-{name}")
    held = client.get("/v1/customers/cid/referral", headers=auth(tenant.analyst)).json()
    assert held["status"] == "held" and _referral_points(platform, "cid") == []
    [review] = platform.reviews.list("acme", status="open", kind="referral", limit=10)
    platform.reviews.decide("acme", review["reviewId"], "approve", None)
    assert client.get("/v1/customers/cid/referral", headers=auth(tenant.analyst)).json()["status"] == "qualified"
    assert _referral_points(platform, "ann") == [500, 500] and _referral_points(platform, "cid") == [250]


def test_a_full_refund_in_the_return_window_reverses_both(client, platform, tenant) -> None:
    code = _setup(client, tenant)
    assert _register(client, tenant, "bob", code).status_code == 201
    _order(client, platform, tenant, "bob", "big")
    partial = client.post("/v1/orders/big/refunds", json={"refundId": "r1", "amount": "10.00", "currency": "EUR"},
                          headers=auth(tenant.merchant))
    assert partial.status_code < 300, partial.text
    drain(platform)
    assert client.get("/v1/customers/bob/referral", headers=auth(tenant.analyst)).json()["status"] == "qualified"
    rest = client.post("/v1/orders/big/refunds", json={"refundId": "r2", "amount": "30.00", "currency": "EUR"},
                       headers=auth(tenant.merchant))
    assert rest.status_code < 300, rest.text
    drain(platform)
    assert client.get("/v1/customers/bob/referral", headers=auth(tenant.analyst)).json()["status"] == "reversed"
    assert _referral_points(platform, "ann") == [500, -500] and _referral_points(platform, "bob") == [250, -250]


def test_twenty_concurrent_redeliveries_credit_once_and_the_cap_holds_under_a_crowd(client, platform,
                                                                                    tenant) -> None:
    from tests.conftest import run_in_threads
    code = _setup(client, tenant, capPerPeriod=5)
    names = [f"r{n}" for n in range(20)]
    for name in names:
        assert _register(client, tenant, name, code).status_code == 201
        sent = client.post("/v1/orders", json=order_body(name, f"o-{name}", "40.00"), headers=auth(tenant.merchant))
        assert sent.status_code in (200, 202)
    # The orders are credited; the projector has not run: deliver each order record 20 times at once.
    from shared.local.workers import QueueConsumer
    consumer = QueueConsumer(platform, platform.bus)
    while platform.bus.depth():
        consumer.step()
    records = [d for name in names for d in platform.store.query(
        LEDGER, Query(pk=f"acme:{name}", filters=(Filter("docType", "=", "order"),)))]
    # Twenty referees qualify at once against a cap of 5, while the first one's record is redelivered 19 times.
    run_in_threads(lambda doc: platform.referrals.project([doc]), [(r,) for r in records] + [(records[0],)] * 19,
                   timeout=120)
    states = [platform.referrals.get("acme", n)["status"] for n in names]
    assert states.count("qualified") == 5 and states.count("capped") == 15
    assert _referral_points(platform, "ann") == [500] * 5
    for name in names:
        assert _referral_points(platform, name) in ([], [250])


def test_erasure_drops_the_referrers_email_and_phone_digests(client, platform, tenant) -> None:
    code = _setup(client, tenant)
    pk = f"acme:r:{code}"
    assert {"emailDigest", "phoneDigest"} <= platform.store.read("codes", pk, "referralcode").keys()
    assert client.post("/v1/customers/ann/erasure", json={"reason": "asked"}, headers=auth(tenant.admin)
                       ).status_code == 200
    kept = platform.store.read("codes", pk, "referralcode")
    assert kept is not None and not ({"emailDigest", "phoneDigest"} & kept.keys())
    assert _register(client, tenant, "bob", code).status_code == 201  # the code still refers


def test_a_rule_condition_decides_which_order_qualifies(client, platform, tenant) -> None:
    bad = client.put("/v1/referrals/programme", json={**PROGRAMME, "condition": "order.amount >>= 3"},
                     headers=auth(tenant.admin))
    assert bad.status_code == 422
    code = _setup(client, tenant, condition='order.channel = "store" and order.amount >= 30')
    assert _register(client, tenant, "bob", code).status_code == 201
    _order(client, platform, tenant, "bob", "web-order")  # channel web: does not qualify
    assert _referral_points(platform, "ann") == []
    sent = client.post("/v1/orders", json=order_body("bob", "store-order", "40.00", channel="store"),
                       headers=auth(tenant.merchant))
    assert sent.status_code in (200, 202), sent.text
    drain(platform)
    assert client.get("/v1/customers/bob/referral", headers=auth(tenant.analyst)).json()["orderId"] == "store-order"
    assert _referral_points(platform, "ann") == [500]


def test_a_registration_that_died_before_its_enrolment_is_finished_by_its_retry(client, platform, tenant,
                                                                                monkeypatch) -> None:
    """The profile is written, then the process dies before the referral is recorded: the
    retry (same body) still learns the customer exists (409), and the referral is recorded, so
    both parties are credited on the first qualifying order. A registration of the same id
    without the code, or with another customer's code, enrols nothing."""
    from tests.conftest import crashing

    code = _setup(client, tenant)
    with monkeypatch.context() as patched:
        patched.setattr(platform.referrals, "enrol", crashing("died before the enrolment"))
        assert _register(client, tenant, "bob", code, email="bob@example.org").status_code == 500
    assert client.get("/v1/customers/bob/referral", headers=auth(tenant.analyst)).status_code == 404
    retry = _register(client, tenant, "bob", code, email="bob@example.org")
    assert retry.status_code == 409, retry.text
    assert client.get("/v1/customers/bob/referral", headers=auth(tenant.analyst)).json()["status"] == "pending"
    _order(client, platform, tenant, "bob", "big")
    assert _referral_points(platform, "ann") == [500] and _referral_points(platform, "bob") == [250]
    # An existing customer registered without a code cannot be enrolled by a later "registration".
    assert client.post("/v1/customers", json={"customerId": "carl", "joinDate": "2026-11-01"},
                       headers=auth(tenant.merchant)).status_code == 201
    assert _register(client, tenant, "carl", code).status_code == 409
    assert client.get("/v1/customers/carl/referral", headers=auth(tenant.analyst)).status_code == 404


def test_a_hold_whose_review_was_never_filed_gets_it_on_redelivery(client, platform, tenant, monkeypatch) -> None:
    """The projector holds the referral for review, then dies before filing the review; the
    change feed delivers the order again: the review is filed (it used to wait for good)."""
    code = _setup(client, tenant, velocityPerDay=1)
    assert _register(client, tenant, "bob", code).status_code == 201
    _order(client, platform, tenant, "bob", "o-bob")
    assert _register(client, tenant, "cid", code).status_code == 201
    real, failed = platform.reviews.submit, []

    def dies_once(*args, **kwargs):
        if not failed:
            failed.append(args)
            raise RuntimeError("the projector died before filing the review")
        return real(*args, **kwargs)
    monkeypatch.setattr(platform.reviews, "submit", dies_once)
    sent = client.post("/v1/orders", json=order_body("cid", "o-cid", "40.00"), headers=auth(tenant.merchant))
    assert sent.status_code in (200, 202), sent.text
    try:
        drain(platform)
    except Exception:  # noqa: BLE001 - the crash; the redelivery below is what is tested
        pass
    assert failed, "the review's filing was reached"
    assert client.get("/v1/customers/cid/referral", headers=auth(tenant.analyst)).json()["status"] == "held"
    docs = platform.store.query(LEDGER, Query(pk="acme:cid", filters=(Filter("docType", "=", "order"),)))
    platform.referrals.project(docs)  # the change feed delivers again
    [review] = platform.reviews.list("acme", status="open", kind="referral", limit=10)
    platform.reviews.decide("acme", review["reviewId"], "approve", None)
    assert _referral_points(platform, "ann") == [500, 500] and _referral_points(platform, "cid") == [250]


def test_two_customers_whose_codes_collide_each_get_a_code_of_their_own(client, platform, tenant,
                                                                         monkeypatch) -> None:
    """Codes are 40-bit keyed digests of the customer id: in a programme of a million
    customers with codes, a pair sharing one is likely. The second customer gets their next
    candidate, never the first one's code (whose referrals would credit the first)."""
    real = platform.referrals._digest

    def colliding(tenant_id: str, purpose: str, data: str) -> bytes:
        return real(tenant_id, purpose, "ann" if purpose == "referral-code" and data == "cat" else data)

    monkeypatch.setattr(platform.referrals, "_digest", colliding)
    ann = _setup(client, tenant)
    assert client.post("/v1/customers", json={"customerId": "cat", "joinDate": "2026-01-01", "email": "cat@x.org"},
                       headers=auth(tenant.admin)).status_code == 201
    cat = client.post("/v1/customers/cat/referral-code", headers=auth(tenant.merchant)).json()["code"]
    assert cat != ann
    assert client.post("/v1/customers/cat/referral-code", headers=auth(tenant.merchant)).json()["code"] == cat
    assert platform.store.read("codes", f"acme:r:{cat}", "referralcode")["customerId"] == "cat"
    assert _register(client, tenant, "dan", cat).status_code == 201
    assert client.get("/v1/customers/dan/referral", headers=auth(tenant.analyst)).json()["referrerId"] == "cat"
    # Erasure finds the customer's own code (the second candidate) and drops its digests.
    assert client.post("/v1/customers/cat/erasure", json={"reason": "asked"}, headers=auth(tenant.admin)
                       ).status_code == 200
    assert "emailDigest" not in platform.store.read("codes", f"acme:r:{cat}", "referralcode")
    assert "emailDigest" in platform.store.read("codes", f"acme:r:{ann}", "referralcode")


def test_a_code_made_while_its_customer_was_erased_keeps_no_digest(client, platform, tenant, monkeypatch) -> None:
    """The code's digests come from the profile read before the erasure; the erasure's own
    clean-up looked before the code existed: the code must not keep them."""
    assert client.put("/v1/referrals/programme", json=PROGRAMME, headers=auth(tenant.admin)).status_code == 200
    assert client.post("/v1/customers", json={"customerId": "ann", "joinDate": "2026-01-01", "email": "a@x.org",
                                              "phone": "+33 6 11 22 33 44"}, headers=auth(tenant.admin)
                       ).status_code == 201
    profile = platform.customers.get("acme", "ann")
    racing = StoreThatInterleaves(platform.store, "create", CODES,
                                  before=lambda: platform.erasures.erase("acme", "ann", None, "asked"))
    monkeypatch.setattr(platform.referrals, "_store", racing)
    code = platform.referrals.code_for("acme", profile)
    assert racing.ran
    kept = platform.store.read(CODES, f"acme:r:{code}", "referralcode")
    assert kept["customerId"] == "ann" and not ({"emailDigest", "phoneDigest"} & kept.keys())


def test_the_return_window_counts_from_acceptance_not_the_point_of_sale_clock(client, platform, tenant,
                                                                              clock) -> None:
    """An outside review: the window started at the order's own timestamp, so an order whose
    point of sale's clock ran 31 days behind had a 30-day window closed before it qualified, and
    a full refund an hour after acceptance kept both rewards."""
    from datetime import timedelta

    code = _setup(client, tenant, returnWindowDays=30)
    assert _register(client, tenant, "bob", code).status_code == 201
    behind = (clock.now() - timedelta(days=31)).strftime("%Y-%m-%dT%H:%M:%SZ")
    sent = client.post("/v1/orders", json=order_body("bob", "late", "40.00", timestamp=behind),
                       headers=auth(tenant.merchant))
    assert sent.status_code in (200, 202), sent.text
    drain(platform)
    assert _referral_points(platform, "ann") == [500]
    clock.advance(timedelta(hours=1))
    refund = client.post("/v1/orders/late/refunds", json={"refundId": "r-late", "amount": "40.00",
                                                          "currency": "EUR"}, headers=auth(tenant.merchant))
    assert refund.status_code < 300, refund.text
    drain(platform)
    assert client.get("/v1/customers/bob/referral", headers=auth(tenant.analyst)).json()["status"] == "reversed"
    assert _referral_points(platform, "ann") == [500, -500] and _referral_points(platform, "bob") == [250, -250]
