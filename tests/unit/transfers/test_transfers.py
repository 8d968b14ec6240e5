"""Transfers between members (shared/transfers/saga.py): the API, the limits and screens, lots moved
with their expiry dates, idempotency, and recovery from a crash after each step of the saga."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.app.corrections import AdjustmentRequest
from shared.app.ledger_chain import LedgerChains
from shared.app.reconcile import reconcile
from shared.errors import InsufficientPoints
from shared.jobs import BY_NAME, run_job
from shared.ledger.lots import replay
from shared.store.layout import SYSTEM
from shared.transfers.saga import RECOVERY_GRACE, Transfers, TransferRequest, intent_pk, transfer_id
from tests.conftest import StoreThatInterleaves, auth, drain, run_in_threads

URL = "/v1/customers/c1/transfers"


def _give(platform, customer: str, points: int, key: str) -> None:
    platform.corrections.adjust("acme", customer, AdjustmentRequest(
        points=points, reasonCode="goodwill", reason="test", idempotencyKey=key), "k1")


def _available(platform, customer: str) -> int:
    return platform.ledger.head("acme", customer).balance


def _open(platform) -> list:
    return platform.transfers.open_transfers(due_only=False)


def _request(to: str = "c2", points: int = 40, key: str = "t1", **extra) -> TransferRequest:
    return TransferRequest.model_validate({"toCustomerId": to, "points": points, "idempotencyKey": key, **extra})


@pytest.fixture
def funded(platform, tenant):
    _give(platform, "c1", 100, "g1")
    return platform


def test_a_transfer_moves_points_and_both_histories_show_it(funded, client, tenant) -> None:
    response = client.post(URL, json={"toCustomerId": "c2", "points": 40, "idempotencyKey": "t1", "note": "gift"},
                           headers=auth(tenant.merchant))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "completed" and body["points"] == 40 and body["balanceAfter"] == 60
    assert body["duplicate"] is False and body["parts"] == [{"points": 40, "expiresAt": None}]
    assert (_available(funded, "c1"), _available(funded, "c2")) == (60, 40)
    assert _open(funded) == []
    drain(funded)
    sender = client.get("/v1/customers/c1/ledger", headers=auth(tenant.analyst)).json()["items"][0]
    receiver = client.get("/v1/customers/c2/ledger", headers=auth(tenant.analyst)).json()["items"][0]
    assert sender["entryType"] == "TRANSFER_OUT" and sender["signedAmount"] == -40
    assert sender["attributes"]["counterpartyId"] == "c2" and sender["attributes"]["note"] == "gift"
    assert receiver["entryType"] == "TRANSFER_IN" and receiver["signedAmount"] == 40
    assert receiver["attributes"]["counterpartyId"] == "c1"
    assert sender["attributes"]["transferId"] == receiver["attributes"]["transferId"] == body["transferId"]
    assert reconcile(funded.store, "acme").ok and funded.chains.verify_tenant("acme").ok


def test_webhooks_go_out_for_both_customers(funded, client, tenant) -> None:
    client.post(URL, json={"toCustomerId": "c2", "points": 40, "idempotencyKey": "t1"}, headers=auth(tenant.merchant))
    events = [e for e in _events(funded) if e.get("transferId")]
    assert {(e["customerId"], e["counterpartyId"], e["points"]) for e in events} == {("c1", "c2", -40),
                                                                                    ("c2", "c1", 40)}


def _events(platform) -> list[dict]:
    """The data of every transaction.committed event the change feed produced, read back from the ledger."""
    from shared.webhooks.events import events_from_ledger
    docs = platform.ledger.entries("acme", "c1", limit=50) + platform.ledger.entries("acme", "c2", limit=50)
    return [e.data for e in events_from_ledger(docs) if e.type == "transaction.committed"]


def test_the_same_key_replays_and_another_body_conflicts(funded, client, tenant) -> None:
    body = {"toCustomerId": "c2", "points": 40, "idempotencyKey": "t1"}
    first = client.post(URL, json=body, headers=auth(tenant.merchant)).json()
    again = client.post(URL, json=body, headers=auth(tenant.merchant))
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert again.json()["transferId"] == first["transferId"]
    other = client.post(URL, json=dict(body, points=41), headers=auth(tenant.merchant))
    assert other.status_code == 409 and other.headers["content-type"].startswith("application/problem+json")
    assert (_available(funded, "c1"), _available(funded, "c2")) == (60, 40)


def test_dry_run_writes_nothing(funded, client, tenant) -> None:
    response = client.post(URL + "?dryRun=true", json={"toCustomerId": "c2", "points": 40, "idempotencyKey": "t1"},
                           headers=auth(tenant.merchant))
    assert response.status_code == 200 and response.json()["dryRun"] is True
    assert response.json()["balanceAfter"] == 60
    assert (_available(funded, "c1"), _available(funded, "c2")) == (100, 0) and _open(funded) == []
    real = client.post(URL, json={"toCustomerId": "c2", "points": 40, "idempotencyKey": "t1"},
                       headers=auth(tenant.merchant))
    assert real.status_code == 201  # the dry run left no marker


@pytest.mark.parametrize("body, status", [
    ({"toCustomerId": "c2", "points": 101, "idempotencyKey": "k"}, 422),      # more than available
    ({"toCustomerId": "c1", "points": 1, "idempotencyKey": "k"}, 422),        # to oneself
    ({"toCustomerId": "nobody", "points": 1, "idempotencyKey": "k"}, 422),    # unknown receiver
    ({"toCustomerId": "c2", "points": 0, "idempotencyKey": "k"}, 422),        # not a positive amount
    ({"toCustomerId": "c2", "points": 1.5, "idempotencyKey": "k"}, 422),      # not an integer
    ({"toCustomerId": "c2", "points": 1}, 422),                               # no key
])
def test_bad_transfers_change_nothing(funded, client, tenant, body, status) -> None:
    response = client.post(URL, json=body, headers=auth(tenant.merchant))
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert (_available(funded, "c1"), _available(funded, "c2")) == (100, 0) and _open(funded) == []


def test_unknown_sender_is_404(funded, client, tenant) -> None:
    response = client.post("/v1/customers/ghost/transfers", json={"toCustomerId": "c2", "points": 1,
                                                                  "idempotencyKey": "k"}, headers=auth(tenant.merchant))
    assert response.status_code == 404


def test_an_erased_receiver_is_refused(funded, client, tenant) -> None:
    assert client.post("/v1/customers/c2/erasure", json={"reason": "TICKET-1"}, headers=auth(tenant.admin)).status_code in (200, 202, 204)
    response = client.post(URL, json={"toCustomerId": "c2", "points": 1, "idempotencyKey": "k"},
                           headers=auth(tenant.merchant))
    assert response.status_code == 422 and "toCustomerId" in response.text
    assert _available(funded, "c1") == 100


def test_tenant_limits(funded, client, tenant) -> None:
    limits = {"minPoints": 5, "maxPoints": 30, "perDay": 50}
    assert client.patch("/v1/tenant", json={"transferLimits": limits}, headers=auth(tenant.admin)).status_code == 200
    send = lambda points, key: client.post(URL, json={"toCustomerId": "c2", "points": points,  # noqa: E731
                                                      "idempotencyKey": key}, headers=auth(tenant.merchant))
    assert send(4, "a").json()["type"].endswith("/transfer-refused")
    assert send(31, "b").status_code == 422
    assert send(30, "c").status_code == 201
    assert send(20, "d").status_code == 201
    refused = send(5, "e")
    assert refused.status_code == 422 and "daily limit" in refused.json()["detail"]
    assert _available(funded, "c2") == 50
    off = client.patch("/v1/tenant", json={"transferLimits": {"enabled": False}}, headers=auth(tenant.admin))
    assert off.status_code == 200 and send(5, "f").status_code == 422
    bad = client.patch("/v1/tenant", json={"transferLimits": {"minPoints": 10, "maxPoints": 5}},
                       headers=auth(tenant.admin))
    assert bad.status_code == 422


def test_fraud_velocity_screen(funded, client, tenant) -> None:
    policy = client.get("/v1/fraud/policy", headers=auth(tenant.admin)).json()
    policy["customer"]["transfersPerHour"] = 2
    assert client.put("/v1/fraud/policy", json=policy, headers=auth(tenant.admin)).status_code == 200
    codes = [client.post(URL, json={"toCustomerId": "c2", "points": 1, "idempotencyKey": f"v{n}"},
                         headers=auth(tenant.merchant)).status_code for n in range(3)]
    assert codes == [201, 201, 422]


def test_lots_move_first_expiring_first_with_their_dates(funded, client, tenant) -> None:
    patch = client.patch("/v1/tenant", json={"expiryPolicy": {"kind": "rolling", "months": 12}},
                         headers=auth(tenant.admin))
    if patch.status_code != 200:
        pytest.skip(f"expiry policy shape: {patch.text}")
    funded.clock.advance(timedelta(days=40))
    _give(funded, "c1", 30, "g2")  # expires in 12 months from now
    funded.clock.advance(timedelta(days=40))
    _give(funded, "c1", 20, "g3")  # expires later still
    body = client.post(URL, json={"toCustomerId": "c2", "points": 120, "idempotencyKey": "t1"},
                       headers=auth(tenant.merchant)).json()
    sender = replay(funded.ledger.entries("acme", "c1", newest_first=False, limit=100))
    # First the 30 (earliest dated), then the 20, then 70 of the undated 100 (never expires: last).
    dated = [p for p in body["parts"] if p["expiresAt"]]
    assert [p["points"] for p in body["parts"]] == [30, 20, 70] and len(dated) == 2
    assert dated[0]["expiresAt"] < dated[1]["expiresAt"]
    receiver = replay(funded.ledger.entries("acme", "c2", newest_first=False, limit=100))
    got = sorted(((lot.remaining, lot.expires_at is not None) for lot in receiver.lots.values()))
    assert got == [(20, True), (30, True), (70, False)]
    assert sum(lot.remaining for lot in sender.lots.values()) == 30


# --- the saga under crashes ------------------------------------------------------------


class Crash(Exception):
    pass


def _crash_after(monkeypatch, step: str) -> None:
    """The process dies right after ``step`` (its own write done, the next not started)."""
    original = getattr(Transfers, step)

    def then_die(self, *args):
        original(self, *args)
        raise Crash(step)

    monkeypatch.setattr(Transfers, step, then_die)


@pytest.mark.parametrize("step", ["_debit", "_credit", "_complete"])
def test_recovery_from_a_crash_after_each_step(funded, monkeypatch, step) -> None:
    with monkeypatch.context() as patched:
        _crash_after(patched, step)
        with pytest.raises(Crash):
            funded.transfers.transfer("acme", "c1", _request())
    assert len(_open(funded)) == 1  # the durable record says the transfer is open
    # Before its grace the job leaves it to its request.
    assert funded.transfers.recover()["scanned"] == 0
    funded.clock.advance(RECOVERY_GRACE + timedelta(seconds=1))
    report = run_job(BY_NAME["transfers"], funded)
    assert report == {"scanned": 1, "recovered": 1, "failed": 0}
    assert (_available(funded, "c1"), _available(funded, "c2")) == (60, 40)
    assert _open(funded) == [] and funded.transfers.recover()["scanned"] == 0
    tid = transfer_id("acme", "c1", "t1")
    assert funded.ledger.record("acme", "c1", f"transfer-done-{tid}") is not None
    # The client's retry answers the completed transfer, nothing moves twice.
    again = funded.transfers.transfer("acme", "c1", _request())
    assert not again.created and again.body["status"] == "completed"
    assert (_available(funded, "c1"), _available(funded, "c2")) == (60, 40)
    assert reconcile(funded.store, "acme").ok


def test_recovery_of_an_intent_that_never_debited(funded, monkeypatch) -> None:
    with monkeypatch.context() as patched:
        patched.setattr(Transfers, "_drive", lambda self, intent: (_ for _ in ()).throw(Crash("before debit")))
        with pytest.raises(Crash):
            funded.transfers.transfer("acme", "c1", _request())
    funded.clock.advance(RECOVERY_GRACE + timedelta(seconds=1))
    assert funded.transfers.recover()["recovered"] == 1
    assert (_available(funded, "c1"), _available(funded, "c2")) == (60, 40)


def test_an_intent_whose_debit_is_refused_later_closes_unmoved(funded, monkeypatch) -> None:
    with monkeypatch.context() as patched:
        patched.setattr(Transfers, "_drive", lambda self, intent: (_ for _ in ()).throw(Crash("before debit")))
        with pytest.raises(Crash):
            funded.transfers.transfer("acme", "c1", _request(points=90))
    _give(funded, "c1", -50, "spent")  # the points went elsewhere meanwhile
    funded.clock.advance(RECOVERY_GRACE + timedelta(seconds=1))
    assert funded.transfers.recover() == {"scanned": 1, "recovered": 0, "failed": 1}
    assert (_available(funded, "c1"), _available(funded, "c2")) == (50, 0) and _open(funded) == []


def test_a_request_and_recovery_driving_at_once_move_the_points_once(funded, monkeypatch) -> None:
    with monkeypatch.context() as patched:
        _crash_after(patched, "_debit")
        with pytest.raises(Crash):
            funded.transfers.transfer("acme", "c1", _request())
    funded.clock.advance(RECOVERY_GRACE + timedelta(seconds=1))
    run_in_threads(lambda n: funded.transfers.recover() if n % 2 else funded.transfers.transfer(
        "acme", "c1", _request()), [(n,) for n in range(8)], timeout=60)
    assert (_available(funded, "c1"), _available(funded, "c2")) == (60, 40) and _open(funded) == []


# --- concurrency ------------------------------------------------------------------------


def test_a_ring_of_100_concurrent_transfers_keeps_the_total(platform, tenant) -> None:
    from tests.conftest import add_customer
    ring = [f"r{n}" for n in range(20)]
    for customer in ring:
        add_customer(platform, "acme", customer)
        _give(platform, customer, 10, f"seed-{customer}")
    total = sum(_available(platform, c) for c in ring)
    failures: list[str] = []

    def send(n: int) -> None:
        sender, receiver = ring[n % len(ring)], ring[(n + 1) % len(ring)]
        try:
            platform.transfers.transfer("acme", sender, _request(to=receiver, points=1 + n % 7, key=f"ring-{n}"))
        except Exception as error:  # noqa: BLE001 - refusals (too few points) are expected; counted
            failures.append(type(error).__name__)

    run_in_threads(send, [(n,) for n in range(100)], timeout=120)
    platform.clock.advance(RECOVERY_GRACE + timedelta(seconds=1))
    platform.transfers.recover()  # anything a hot partition left open
    balances = {c: _available(platform, c) for c in ring}
    assert sum(balances.values()) == total
    assert min(balances.values()) >= 0
    assert _open(platform) == []
    assert set(failures) <= {"InsufficientPoints", "LedgerConflict"}
    assert reconcile(platform.store, "acme").ok
    assert LedgerChains(platform.store, platform.audit, platform.clock).verify_tenant("acme").ok


def test_intent_records_live_in_the_system_container(funded, monkeypatch) -> None:
    with monkeypatch.context() as patched:
        _crash_after(patched, "_debit")
        with pytest.raises(Crash):
            funded.transfers.transfer("acme", "c1", _request())
    tid = transfer_id("acme", "c1", "t1")
    intent = funded.store.read(SYSTEM, intent_pk("acme"), tid)
    assert intent["fromCustomerId"] == "c1" and intent["toCustomerId"] == "c2" and intent["points"] == 40
    # The debit without its credit: the points are held by the transfer, in neither balance.
    assert (_available(funded, "c1"), _available(funded, "c2")) == (60, 0)


def test_the_same_transfer_fired_20_at_once_moves_once(funded) -> None:
    answers: list = []

    def send(_: int) -> None:
        try:
            answers.append(funded.transfers.transfer("acme", "c1", _request()).created)
        except Exception as error:  # noqa: BLE001 - a lost race on a hot partition is answered, never doubled
            answers.append(type(error).__name__)

    run_in_threads(send, [(n,) for n in range(20)], timeout=120)
    funded.clock.advance(RECOVERY_GRACE + timedelta(seconds=1))
    funded.transfers.recover()
    # One send wrote the debit and says so; unless it lost its credit to contention (then the
    # recovery job finished the transfer), in which case none does. Never two.
    assert answers.count(True) <= 1 and set(answers) <= {True, False, "LedgerConflict"}, answers
    assert answers.count(True) == 1 or "LedgerConflict" in answers, answers
    assert (_available(funded, "c1"), _available(funded, "c2")) == (60, 40) and _open(funded) == []
    entries = funded.ledger.entries("acme", "c2", entry_types=["TRANSFER_IN"])
    assert [e["signedAmount"] for e in entries] == [40]


def test_a_send_that_missed_the_marker_after_the_transfer_closed_answers_as_a_replay(funded, monkeypatch) -> None:
    """The interleaving behind two "created" answers for one key (seen under CI load): a send
    reads no debit marker, the first send then debits, credits and closes the intent, and the
    late send creates the intent again and drives it. It must replay, and say so."""
    first = funded.transfers.transfer("acme", "c1", _request())
    assert first.created and "duplicate" not in first.body
    real_marker = funded.ledger.marker
    misses = iter([True])

    def stale_first_read(tenant_id, customer_id, key):
        if key.startswith("transfer-out:") and next(misses, False):
            return None  # read before the first send's debit committed
        return real_marker(tenant_id, customer_id, key)

    monkeypatch.setattr(funded.ledger, "marker", stale_first_read)
    late = funded.transfers.transfer("acme", "c1", _request())
    assert not late.created and late.body["duplicate"] is True
    assert late.body["transferId"] == first.body["transferId"] and late.body["balanceAfter"] == 60
    assert (_available(funded, "c1"), _available(funded, "c2")) == (60, 40) and _open(funded) == []


def test_the_digest_job_fans_out_and_writes_one_record_per_tenant_and_day(funded, tenant) -> None:
    from tests.conftest import add_customer
    for n in range(5):
        add_customer(funded, "acme", f"d{n}")
        _give(funded, f"d{n}", 3, f"d{n}")
    assert run_job(BY_NAME["ledger-digest"], funded)["enqueued"] == 1
    run_job(BY_NAME["work-items"], funded)
    record = funded.chains.latest_digest("acme")
    assert record["after"]["customers"] == 6 and record["after"]["chunks"] == 1
    assert funded.chains.verify_tenant("acme").ok
    assert funded.chains.write_digest("acme")["written"] == 0  # once per tenant and day


def test_a_digest_in_several_slices_verifies_and_a_redone_slice_keeps_its_chunk(funded, tenant, clock) -> None:
    from tests.conftest import add_customer
    for n in range(5):
        add_customer(funded, "acme", f"d{n}")
        _give(funded, f"d{n}", 3, f"d{n}")
    day = clock.now().strftime("%Y-%m-%d")
    cursor, done, _ = funded.chains.digest_slice("acme", day, None, max_customers=2)
    assert not done and len(cursor["roots"]) == 1
    _give(funded, "c1", 1, "moved-on")  # the head moves between a slice and its redo
    redone, _, _ = funded.chains.digest_slice("acme", day, None, max_customers=2)
    assert redone == cursor  # the archived chunk is what counts
    while not done:
        cursor, done, result = funded.chains.digest_slice("acme", day, cursor, max_customers=2)
    assert result["chunks"] == 3 and result["customers"] == 6
    assert funded.chains.verify_tenant("acme").ok


def test_an_erased_sender_is_refused_and_a_receiver_erased_after_the_debit_is_still_credited(
        funded, client, tenant, monkeypatch) -> None:
    with monkeypatch.context() as patched:
        _crash_after(patched, "_debit")
        with pytest.raises(Crash):
            funded.transfers.transfer("acme", "c1", _request())
    assert client.post("/v1/customers/c2/erasure", json={"reason": "T-2"}, headers=auth(tenant.admin)).status_code \
        in (200, 202, 204)
    funded.clock.advance(RECOVERY_GRACE + timedelta(seconds=1))
    assert funded.transfers.recover()["recovered"] == 1  # debited points are never stranded
    assert (_available(funded, "c1"), _available(funded, "c2")) == (60, 40)
    assert client.post("/v1/customers/c1/erasure", json={"reason": "T-3"}, headers=auth(tenant.admin)).status_code \
        in (200, 202, 204)
    refused = client.post(URL, json={"toCustomerId": "c3", "points": 1, "idempotencyKey": "after-erasure"},
                          headers=auth(tenant.merchant))
    assert refused.status_code == 422 and _available(funded, "c1") == 60


def _status(client, tenant, customer: str, tid: str):  # type: ignore[no-untyped-def]
    return client.get(f"/v1/customers/{customer}/transfers/{tid}", headers=auth(tenant.analyst))


@pytest.mark.parametrize("step, sender_sees, receiver_sees", [
    ("drive", "pending", None), ("_debit", "in-progress", None), ("_credit", "in-progress", "in-progress"),
    ("_complete", "completed", "completed")])
def test_either_party_reads_a_transfer_at_every_step_of_the_saga(funded, client, tenant, monkeypatch, step,
                                                                 sender_sees, receiver_sees) -> None:
    with monkeypatch.context() as patched:
        if step == "drive":
            patched.setattr(Transfers, "_drive", lambda self, intent: (_ for _ in ()).throw(Crash("before debit")))
        else:
            _crash_after(patched, step)
        with pytest.raises(Crash):
            funded.transfers.transfer("acme", "c1", _request())
    tid = transfer_id("acme", "c1", "t1")
    sent = _status(client, tenant, "c1", tid)
    assert sent.status_code == 200, sent.text
    assert sent.json()["status"] == sender_sees and sent.json()["points"] == 40
    assert sent.json()["toCustomerId"] == "c2"
    assert ("balanceAfter" in sent.json()) == (sender_sees != "pending")
    received = _status(client, tenant, "c2", tid)
    if receiver_sees is None:
        assert received.status_code == 404, received.text
    else:
        assert received.json()["status"] == receiver_sees and received.json()["fromCustomerId"] == "c1"
        assert "balanceAfter" not in received.json()  # the sender's balance is the sender's
    # Recovery drives it to its end; then both read it completed.
    funded.clock.advance(RECOVERY_GRACE + timedelta(seconds=1))
    funded.transfers.recover()
    for customer in ("c1", "c2"):
        assert _status(client, tenant, customer, tid).json()["status"] == "completed"
    assert _status(client, tenant, "c1", tid).json()["balanceAfter"] == 60


def test_a_transfer_is_not_found_for_strangers_refusals_and_malformed_ids(funded, client, tenant) -> None:
    done = client.post(URL, json={"toCustomerId": "c2", "points": 40, "idempotencyKey": "t1"},
                       headers=auth(tenant.merchant)).json()
    _give(funded, "c3", 1, "g3")
    assert _status(client, tenant, "c3", done["transferId"]).status_code == 404  # not a party
    refused = client.post(URL, json={"toCustomerId": "c2", "points": 10_000, "idempotencyKey": "t2"},
                          headers=auth(tenant.merchant))
    assert refused.status_code == 422
    assert _status(client, tenant, "c1", transfer_id("acme", "c1", "t2")).status_code == 404
    assert _status(client, tenant, "nobody", done["transferId"]).status_code == 404
    malformed = _status(client, tenant, "c1", "tr-NOT-AN-ID")
    assert malformed.status_code == 422 and malformed.headers["content-type"] == "application/problem+json"


def test_a_send_refused_at_the_debit_leaves_the_intent_a_resend_adopted_and_debited(funded, monkeypatch) -> None:
    """Send A records the intent and is refused at the debit (too few points then). Before
    A closes the intent, the points arrive and resend B of the same key adopts the intent,
    is debited, and dies before the credit. A must not close the intent: it is what drives
    B's transfer to its credit (recovery), else the points would be held by nothing."""
    resend = Transfers.__new__(Transfers)
    resend.__dict__.update(funded.transfers.__dict__)
    resend._credit = lambda intent, debit: (_ for _ in ()).throw(Crash("after the debit"))  # type: ignore[method-assign]

    def points_arrive_and_b_resends() -> None:
        _give(funded, "c1", 100, "arrived")
        with pytest.raises(Crash):
            resend.transfer("acme", "c1", _request(points=150))

    store = StoreThatInterleaves(funded.store, "delete", SYSTEM, before=points_arrive_and_b_resends)
    monkeypatch.setattr(funded.transfers, "_store", store)
    with pytest.raises(InsufficientPoints):
        funded.transfers.transfer("acme", "c1", _request(points=150))
    assert store.ran
    monkeypatch.setattr(funded.transfers, "_store", funded.store)
    assert len(_open(funded)) == 1, "the debited transfer's intent was closed by the refused send"
    funded.clock.advance(RECOVERY_GRACE + timedelta(seconds=1))
    assert funded.transfers.recover() == {"scanned": 1, "recovered": 1, "failed": 0}
    assert (_available(funded, "c1"), _available(funded, "c2")) == (50, 150) and _open(funded) == []
    assert reconcile(funded.store, "acme").ok


@pytest.mark.parametrize("zone, first, second", [
    # Havana goes back from 01:00 to 00:00: the local day's first hour happens twice.
    ("America/Havana", "2027-11-07T04:30:00+00:00", "2027-11-07T05:30:00+00:00"),
    # Havana springs forward at midnight: the local day starts at 01:00.
    ("America/Havana", "2027-03-14T05:10:00+00:00", "2027-03-15T03:50:00+00:00"),
    ("Europe/Paris", "2027-10-30T22:05:00+00:00", "2027-10-31T22:55:00+00:00"),
])
def test_the_daily_limit_counts_the_whole_local_day_whatever_the_clocks_do(platform, client, tenant, clock,
                                                                           zone: str, first: str,
                                                                           second: str) -> None:
    """An outside review: in the repeated hour of a fall-back at 01:00 the day was taken to start
    at the second midnight, so the first hour's transfers went uncounted (twice the limit)."""
    from datetime import datetime

    from tests.unit.expiry.conftest import move_to

    _give(platform, "c1", 1000, "g1")
    assert client.patch("/v1/tenant", json={"timeZone": zone, "transferLimits": {"perDay": 100}},
                        headers=auth(tenant.admin)).status_code == 200
    send = lambda points, key: client.post(URL, json={"toCustomerId": "c2", "points": points,  # noqa: E731
                                                      "idempotencyKey": key}, headers=auth(tenant.merchant))
    move_to(clock, datetime.fromisoformat(first))
    assert send(100, "a").status_code == 201
    move_to(clock, datetime.fromisoformat(second))  # later the same local day
    refused = send(1, "b")
    assert refused.status_code == 422 and "daily limit" in refused.json()["detail"]
    assert _available(platform, "c2") == 100
