"""Partner code pools: uploads all or nothing and idempotent; hand-outs never give
one code twice (a property over any interleaving of uploads, hand-outs and replays);
a pool-backed voucher reward over the API, with the points back when the pool is empty."""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.clock import ManualClock
from shared.errors import OutOfStock
from shared.spend.redemptions import Redemptions
from shared.store.layout import CODES as CODES_CONTAINER
from shared.store.layout import CONTAINERS, pool_pk
from shared.store.port import Filter, Query
from shared.store.sqlite import SqliteDocumentStore
from shared.vouchers.pools import CodePools
from tests.conftest import Died, StoreThatDies, auth, crashing, run_in_threads
from tests.unit.spend.conftest import fund, ledger_invariants
from tests.unit.vouchers.test_vouchers_api import _snapshot


def _digest(tenant_id: str, purpose: str, data: str) -> bytes:
    return hashlib.sha256(f"{tenant_id}/{purpose}/{data}".encode()).digest()


CODES = st.sampled_from([f"PARTNER-{n:03d}" for n in range(12)])
STEPS = st.lists(st.one_of(
    st.tuples(st.just("upload"), st.lists(CODES, min_size=1, max_size=6)),
    st.tuples(st.just("hand-out"), st.integers(0, 15)),  # a redemption number: repeats are replays
), min_size=1, max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(STEPS)
def test_no_code_is_ever_handed_out_twice(steps) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = SqliteDocumentStore(Path(folder) / "store.db", CONTAINERS)
        try:
            pools = CodePools(store, ManualClock(), _digest)
            uploaded: set[str] = set()
            given_to: dict[str, str] = {}  # redemption -> code
            for kind, arg in steps:
                if kind == "upload":
                    report = pools.add_codes("acme", "p", [(i, c) for i, c in enumerate(arg, start=1)])
                    assert report.accepted == len(set(arg) - uploaded)
                    assert report.accepted + report.duplicates == len(arg)
                    uploaded |= set(arg)
                    continue
                rid = f"rd-{arg:024d}"
                try:
                    code = pools.hand_out("acme", "p", rid, "c1")
                except OutOfStock:
                    assert rid not in given_to and len(given_to) == len(uploaded)  # only when all are given
                    continue
                assert given_to.setdefault(rid, code) == code  # a replay gets the same code
                assert code in uploaded
                assert len(set(given_to.values())) == len(given_to)  # never one code for two redemptions
            if uploaded:
                assert pools.get("acme", "p")["uploaded"] == len(uploaded)
                assert pools.get("acme", "p")["handedOut"] == len(given_to)
        finally:
            store.close()


VOUCHER = {"rewardId": "cinema", "name": "A cinema ticket", "pointsCost": 300, "type": "voucher",
           "voucher": {"poolId": "cine", "validDays": 60}}


def test_upload_is_all_or_nothing_and_a_reupload_changes_nothing(client, platform, tenant) -> None:
    url = "/v1/voucher-pools/cine/codes"
    csv_body = "code,batch\nCINE-0001,a\nCINE-0002,a\nCINE-0002,a\n"
    before = _snapshot(platform)
    bad = client.post(url, content="code\nCINE-0001\nbad code with spaces\n",
                      headers={**auth(tenant.admin), "Content-Type": "text/csv"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "line 3"
    wrong_type = client.post(url, content=csv_body, headers={**auth(tenant.admin), "Content-Type": "text/plain"})
    assert wrong_type.status_code == 422
    assert client.post(url, content=csv_body, headers={**auth(tenant.merchant), "Content-Type": "text/csv"}
                       ).status_code == 403
    assert [r for r in _snapshot(platform) if r[0] != "audit"] == before
    added = client.post(url, content=csv_body, headers={**auth(tenant.admin), "Content-Type": "text/csv"})
    assert added.status_code == 201, added.text
    assert added.json() | {} == {"poolId": "cine", "accepted": 2, "duplicates": 1, "uploaded": 2, "handedOut": 0,
                                 "remaining": 2}
    ndjson = '{"code": "CINE-0002"}\n{"code": "CINE-0003"}\n'
    again = client.post(url, content=ndjson, headers={**auth(tenant.admin), "Content-Type": "application/x-ndjson"})
    assert again.json()["accepted"] == 1 and again.json()["uploaded"] == 3
    # Sealed at rest: no code in the clear in the store.
    db = sqlite3.connect(platform.store.path)
    assert db.execute("SELECT count(*) FROM docs WHERE body LIKE '%CINE-000%'").fetchone()[0] == 0
    db.close()


def test_a_pool_voucher_reward_hands_out_codes_and_gives_points_back_when_empty(client, platform, tenant) -> None:
    client.post("/v1/voucher-pools/cine/codes", content="code\nCINE-0001\n",
                headers={**auth(tenant.admin), "Content-Type": "text/csv"})
    assert client.post("/v1/rewards", json=VOUCHER, headers=auth(tenant.admin)).status_code == 201
    fund(platform, "acme", "c1", 1000)
    first = client.post("/v1/customers/c1/redemptions", json={"idempotencyKey": "k1", "rewardId": "cinema"},
                        headers=auth(tenant.merchant))
    assert first.status_code == 201, first.text
    assert first.json()["voucher"]["code"] == "CINE-0001" and first.json()["status"] == "confirmed"
    replay = client.post("/v1/customers/c1/redemptions", json={"idempotencyKey": "k1", "rewardId": "cinema"},
                         headers=auth(tenant.merchant))
    assert replay.status_code == 200 and replay.json()["voucher"]["code"] == "CINE-0001"
    empty = client.post("/v1/customers/c1/redemptions", json={"idempotencyKey": "k2", "rewardId": "cinema"},
                        headers=auth(tenant.merchant))
    assert empty.status_code == 409 and empty.json()["type"].endswith("/out-of-stock")
    assert platform.ledger.head("acme", "c1").balance == 700  # one ticket bought, the second given back
    ledger_invariants(platform, "acme", "c1")
    assert client.get("/v1/voucher-pools/cine", headers=auth(tenant.admin)).json()["handedOut"] == 1


def test_twenty_overlapping_uploads_at_once_store_each_code_once_and_count_it_once(client, platform, tenant) -> None:
    """Racer n uploads codes n .. n + 9: every code is stored once, and the pool's counter,
    the answers' ``accepted`` and the stored codes all agree on how many there are."""

    answers: dict[int, object] = {}

    def upload(n: int) -> None:
        body = "code\n" + "".join(f"RACE-{k:03d}\n" for k in range(n, n + 10))
        answers[n] = client.post("/v1/voucher-pools/race/codes", content=body,
                                 headers={**auth(tenant.admin), "Content-Type": "text/csv"})

    run_in_threads(upload, [(n,) for n in range(20)], timeout=120)
    assert all(r.status_code == 201 for r in answers.values()), [r.text for r in answers.values()]  # type: ignore[attr-defined]
    distinct = 29  # codes 0 .. 28
    assert sum(r.json()["accepted"] for r in answers.values()) == distinct  # type: ignore[attr-defined]
    stored = platform.store.query(CODES_CONTAINER, Query(pk=pool_pk("acme", "race"), filters=(
        Filter("docType", "=", "poolcode"),), limit=1000))
    assert len(stored) == distinct
    pool = client.get("/v1/voucher-pools/race", headers=auth(tenant.admin)).json()
    assert pool["uploaded"] == distinct and pool["remaining"] == distinct


def test_counters_equal_the_stored_codes_under_concurrent_uploads_and_hand_outs(tmp_path) -> None:
    """Uploads and hand-outs racing on one pool: the counters are written in the same batch as
    the codes and claims they count, so afterwards they equal what is stored, exactly."""

    store = SqliteDocumentStore(tmp_path / "store.db", CONTAINERS)
    try:
        pools = CodePools(store, ManualClock(), _digest)
        pools.add_codes("acme", "p", [(1, "SEED-000")])
        given: dict[int, str] = {}

        def act(n: int) -> None:
            if n % 2:
                pools.add_codes("acme", "p", [(i, f"MIX-{k:03d}") for i, k in enumerate(range(n, n + 6), start=1)])
                return
            try:
                given[n] = pools.hand_out("acme", "p", f"rd-{n:024d}", f"c{n}")
            except OutOfStock:
                pass

        run_in_threads(act, [(n,) for n in range(30)], timeout=120)
        docs = store.query(CODES_CONTAINER, Query(pk=pool_pk("acme", "p"), limit=1000))
        codes = [d for d in docs if d["docType"] == "poolcode"]
        claims = [d for d in docs if d["docType"] == "poolclaim"]
        pool = pools.get("acme", "p")
        assert pool["uploaded"] == len(codes) == 1 + 34   # SEED-000 and MIX-001 .. MIX-034
        assert pool["handedOut"] == len(claims) == len(given) == sum(d["status"] == "assigned" for d in codes)
        assert len(set(given.values())) == len(given)
    finally:
        store.close()


def test_a_crash_at_any_write_leaves_the_counters_equal_to_the_stored_codes(tmp_path) -> None:
    """An upload and two hand-outs, the process dying at each of their writes in turn, then the
    same calls again (a retry): at every crash point and after the retry, the pool's counters
    are exactly the codes and claims in the store, and no code is in two hands."""


    def steps(pools: CodePools) -> list[str]:
        pools.add_codes("acme", "p", [(i, f"CRASH-{i:03d}") for i in range(1, 151)])  # two batches
        return [pools.hand_out("acme", "p", f"rd-{n:024d}", "c1") for n in range(2)]

    def agree(store: SqliteDocumentStore) -> None:
        docs = store.query(CODES_CONTAINER, Query(pk=pool_pk("acme", "p"), limit=1000))
        counters = next((d for d in docs if d["docType"] == "pool"), {"uploaded": 0, "handedOut": 0})
        codes = [d for d in docs if d["docType"] == "poolcode"]
        claims = [d for d in docs if d["docType"] == "poolclaim"]
        assert counters["uploaded"] == len(codes)
        assert counters["handedOut"] == len(claims) == sum(d["status"] == "assigned" for d in codes)

    crash_points = 0
    for at in range(50):
        store = SqliteDocumentStore(tmp_path / f"store-{at}.db", CONTAINERS)
        try:
            try:
                steps(CodePools(StoreThatDies(store, at), ManualClock(), _digest))  # type: ignore[arg-type]
                break  # ran to the end without reaching write number ``at``: every point is covered
            except Died:
                crash_points += 1
            agree(store)
            given = steps(CodePools(store, ManualClock(), _digest))
            assert len(set(given)) == 2
            agree(store)
        finally:
            store.close()
    assert crash_points >= 4  # two upload batches and two hand-outs at the least


def _pool_exchange(client, platform, tenant, codes: str = "code\nCINE-0001\nCINE-0002\n") -> None:
    client.post("/v1/voucher-pools/cine/codes", content=codes,
                headers={**auth(tenant.admin), "Content-Type": "text/csv"})
    assert client.post("/v1/rewards", json=VOUCHER, headers=auth(tenant.admin)).status_code == 201
    fund(platform, "acme", "c1", 1000)


def _buy(client, tenant, key: str = "k1"):
    return client.post("/v1/customers/c1/redemptions", json={"idempotencyKey": key, "rewardId": "cinema"},
                       headers=auth(tenant.merchant))


def _free_codes(platform) -> int:
    return len(platform.store.query(CODES_CONTAINER, Query(pk=pool_pk("acme", "cine"), filters=(
        Filter("docType", "=", "poolcode"), Filter("status", "=", "free")), limit=100)))


@pytest.mark.parametrize("released", [False, True], ids=["expired", "released"])
def test_a_pool_exchange_that_died_before_its_confirm_never_gives_the_code_with_the_points(
        client, platform, tenant, clock, monkeypatch, released) -> None:
    """The process dies after the code was handed out and before the reservation was confirmed;
    the reservation expires, and the timer job gives its points back (in one case a retry comes
    between the two). Every retry of the same request is refused, and once the points are back
    the code is back in the pool: the customer never holds both the points and the code (the
    retry used to answer the code with status "released")."""
    _pool_exchange(client, platform, tenant)
    with monkeypatch.context() as patched:
        patched.setattr(Redemptions, "confirm", crashing("confirm"))
        assert _buy(client, tenant).status_code == 500
    assert _free_codes(platform) == 1 and platform.ledger.head("acme", "c1").balance == 700
    clock.advance(timedelta(days=2))
    if not released:
        # Expired, not yet settled: refused, and the code stays put (a confirm that began
        # before the expiry could still commit) until the timer job settles it.
        early = _buy(client, tenant)
        assert early.status_code == 409 and early.json()["type"].endswith("/reservation-expired"), early.text
        assert "voucher" not in early.json() and "CINE" not in early.text and _free_codes(platform) == 1
    assert platform.spend.redemptions.release_expired()["released"] == 1
    retry = _buy(client, tenant)
    assert retry.status_code == 409 and retry.json()["type"].endswith("/reservation-settled"), retry.text
    assert "voucher" not in retry.json() and "CINE" not in retry.text
    assert _free_codes(platform) == 2
    assert client.get("/v1/voucher-pools/cine", headers=auth(tenant.admin)).json()["handedOut"] == 0
    assert platform.ledger.head("acme", "c1").balance == 1000  # the points are back, and no code is out
    ledger_invariants(platform, "acme", "c1")
    fresh = _buy(client, tenant, key="k2")  # a new key buys it properly
    assert fresh.status_code == 201 and fresh.json()["voucher"]["code"].startswith("CINE-")
    assert platform.ledger.head("acme", "c1").balance == 700


def test_a_pool_exchange_held_for_review_hands_out_no_code_until_approved(client, platform, tenant) -> None:
    _pool_exchange(client, platform, tenant)
    assert client.put("/v1/spend/policy", json={"reviewThresholdPoints": 100},
                      headers=auth(tenant.admin)).status_code == 200
    held = _buy(client, tenant)
    assert held.status_code == 202 and held.json()["status"] == "in-review" and "voucher" not in held.json()
    assert _free_codes(platform) == 2
    url = f"/v1/customers/c1/redemptions/{held.json()['redemptionId']}"
    assert client.post(url + "/approve", json={"reason": "known"}, headers=auth(tenant.admin)).status_code == 200
    after = _buy(client, tenant)  # the repeat once approved hands the code out
    assert after.status_code == 200 and after.json()["voucher"]["code"].startswith("CINE-"), after.text
    assert _free_codes(platform) == 1 and _buy(client, tenant).json()["voucher"] == after.json()["voucher"]


@pytest.mark.parametrize("return_fails_once", [False, True])
def test_a_pool_exchange_that_died_and_was_never_retried_gets_its_code_back_with_the_release(
        client, platform, tenant, clock, monkeypatch, return_fails_once) -> None:
    """No retry comes after the crash between hand-out and confirm: the timer job that gives
    the points back also returns the code to the pool (when returning it fails, its next run
    does), and a further run changes nothing."""
    _pool_exchange(client, platform, tenant)
    with monkeypatch.context() as patched:
        patched.setattr(Redemptions, "confirm", crashing("confirm"))
        assert _buy(client, tenant).status_code == 500
    assert _free_codes(platform) == 1
    clock.advance(timedelta(days=2))
    if return_fails_once:
        with monkeypatch.context() as patched:
            patched.setattr(platform.vouchers.pools, "give_back",
                            crashing("the pool's store is down"))
            assert platform.spend.redemptions.release_expired()["released"] == 1
        assert _free_codes(platform) == 1
        assert platform.spend.redemptions.release_expired()["released"] == 0
    else:
        assert platform.spend.redemptions.release_expired()["released"] == 1
    assert _free_codes(platform) == 2 and platform.ledger.head("acme", "c1").balance == 1000
    assert client.get("/v1/voucher-pools/cine", headers=auth(tenant.admin)).json()["handedOut"] == 0
    platform.spend.redemptions.release_expired()
    assert _free_codes(platform) == 2
    assert client.get("/v1/voucher-pools/cine", headers=auth(tenant.admin)).json()["handedOut"] == 0
    ledger_invariants(platform, "acme", "c1")


def test_twenty_retries_at_once_of_a_released_pool_exchange_return_its_code_once(client, platform, tenant,
                                                                                clock, monkeypatch) -> None:
    """After the crash and the release, twenty retries of the same request arrive together: each
    is refused, and the code goes back to the pool once (the counter moves by one, not twenty)."""
    _pool_exchange(client, platform, tenant)
    with monkeypatch.context() as patched:
        patched.setattr(Redemptions, "confirm", crashing("confirm"))
        assert _buy(client, tenant).status_code == 500
    clock.advance(timedelta(days=2))
    platform.spend.redemptions.on_unpaid = None  # the retries, not the release job, give it back here
    assert platform.spend.redemptions.release_expired()["released"] == 1
    answers: list = []
    run_in_threads(lambda: answers.append(_buy(client, tenant)), [() for _ in range(20)], timeout=120)
    assert sorted(a.status_code for a in answers) == [409] * 20
    assert {a.json()["type"].rsplit("/", 1)[-1] for a in answers} == {"reservation-settled"}
    assert _free_codes(platform) == 2
    assert client.get("/v1/voucher-pools/cine", headers=auth(tenant.admin)).json()["handedOut"] == 0
    assert platform.ledger.head("acme", "c1").balance == 1000


def test_a_code_given_back_right_after_its_hand_out_is_never_answered_as_handed_out(tmp_path) -> None:
    """The redemption's points came back (give_back) between the hand-out's commit and its
    reads of the claim and code: the hand-out answers a Conflict, never the code, which is
    the pool's again (and may already be another customer's)."""
    from shared.errors import Conflict
    from tests.conftest import StoreThatInterleaves

    store = SqliteDocumentStore(tmp_path / "store.db", CONTAINERS)
    try:
        pools = CodePools(store, ManualClock(), _digest)
        pools.add_codes("acme", "p", [(1, "GIVEN-BACK-1")])
        racing = StoreThatInterleaves(store, "batch", CODES_CONTAINER,
                                      after=lambda: pools.give_back("acme", "p", "rd-1"))
        handing = CodePools(racing, ManualClock(), _digest)  # type: ignore[arg-type]
        with pytest.raises(Conflict):
            handing.hand_out("acme", "p", "rd-1", "c1")
        assert racing.ran
        assert pools.hand_out("acme", "p", "rd-2", "c2") == "GIVEN-BACK-1"  # the pool's again
    finally:
        store.close()


def test_an_ndjson_upload_is_read_as_strict_json_and_all_or_nothing(client, platform, tenant) -> None:
    """A name twice, a lone surrogate or NaN on a line is that line's error, and nothing is added
    (``json.loads`` took the last of two codes; a deep nesting was a 500)."""
    url = "/v1/voucher-pools/strict/codes"
    before = _snapshot(platform)
    for line, reason in (('{"code": "CINE-0001", "code": "CINE-0002"}', "'code' appears twice"),
                         ('{"code": "CINE-\\ud800"}', "surrogate"), ('{"code": "CINE-0003", "n": NaN}', "NaN"),
                         ("[" * 100_000 + "]" * 100_000, "not a JSON object")):
        body = '{"code": "CINE-0009"}\n' + line + "\n"
        answer = client.post(url, content=body, headers={**auth(tenant.admin), "Content-Type": "application/x-ndjson"})
        assert answer.status_code == 422, answer.text
        [problem] = answer.json()["errors"]
        assert problem["field"] == "line 2" and reason in problem["message"], problem
    assert [r for r in _snapshot(platform) if r[0] != "audit"] == [r for r in before if r[0] != "audit"]
