"""Pending points through the return window, end to end over the API and ingestion:
written PENDING with maturesAt, not spendable, cancelled by a refund inside the
window, matured exactly once by the job, with the expiry clock starting at maturity."""

from __future__ import annotations

from datetime import datetime

from shared.app.reconcile import reconcile
from shared.ledger.entries import settlement_id
from shared.ledger.lots import replay
from shared.pending import maturation
from shared.schemas import REGISTRY
from shared.webhooks.events import events_from_ledger, schema_name
from tests.conftest import auth
from tests.unit.expiry.conftest import earn, entries, move_to
from tests.unit.pending.conftest import window_tenant


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def refund(client, keys, order_id: str, refund_id: str, amount: str):
    return client.post(f"/v1/orders/{order_id}/refunds", json={"refundId": refund_id, "amount": amount,
                                                              "currency": "EUR"}, headers=auth(keys.admin))


def test_an_earn_in_the_window_is_pending_with_its_local_maturity(client, platform, clock) -> None:
    keys = window_tenant(platform, "shop", days=14)
    earn(client, platform, clock, keys, "o1")  # accepted 2026-11-01 12:00 UTC = 13:00 in Paris
    (entry,) = entries(platform, "shop", "c1")
    assert entry["status"] == "PENDING" and entry["signedAmount"] == 100
    assert entry["attributes"]["maturesAt"] == "2026-11-15T12:00:00+00:00"
    assert "expiresAt" not in entry["attributes"]
    head = platform.ledger.head("shop", "c1")
    assert (head.balance, head.pending, head.lifetime_earned) == (0, 100, 0)
    body = client.get("/v1/customers/c1/balance", headers=auth(keys.analyst)).json()
    assert (body["available"], body["pending"]) == (0, 100)
    # Not spendable: taking points refuses, and nothing is written.
    taken = client.post("/v1/customers/c1/adjustments", json={"points": -1, "reasonCode": "correction",
                                                              "reason": "test", "idempotencyKey": "k1"},
                        headers=auth(keys.admin))
    assert taken.status_code == 422, taken.text
    assert len(entries(platform, "shop", "c1")) == 1


def test_the_job_matures_due_earns_once_and_starts_the_expiry_clock(client, platform, clock) -> None:
    keys = window_tenant(platform, "shop", days=14, policy={"kind": "rolling", "months": 1})
    earn(client, platform, clock, keys, "o1")
    move_to(clock, at("2026-11-15T11:59:00+00:00"))
    assert platform.maturation.run_tenant("shop")["matured"] == 0
    move_to(clock, at("2026-11-15T12:30:00+00:00"))
    cursor = platform.maturation.run_tenant("shop")
    assert (cursor["matured"], cursor["points"], cursor["failed"]) == (1, 100, 0)
    held, matured = entries(platform, "shop", "c1")
    assert matured["entryType"] == "EARN" and matured["status"] == "COMMITTED"
    assert matured["settlesEntryId"] == held["id"] and matured["referenceOrderId"] == "o1"
    assert matured["attributes"]["maturedAt"] == "2026-11-15T12:30:00.000000Z"
    # Rolling one month counted from maturity (15 Nov in Paris): valid through 15 Dec.
    assert matured["attributes"]["expiresAt"] == "2026-12-15T23:00:00+00:00"
    head = platform.ledger.head("shop", "c1")
    assert (head.balance, head.pending, head.lifetime_earned) == (100, 0, 100)
    assert platform.store.read("ledger", matured["pk"], settlement_id(held["id"]))["resolution"] == "matured"
    (lot,) = replay(entries(platform, "shop", "c1")).lots.values()
    assert lot.lot_id == matured["id"] and lot.remaining == 100 and lot.order_id == "o1"
    # Again (a redelivered timer, a second instance): nothing new.
    platform.store.delete("system", maturation.STATE_PK, maturation._state_id("shop"))
    assert platform.maturation.run_tenant("shop")["matured"] == 0
    assert platform.maturation.mature_customers("shop", ["c1"]).matured == 0
    assert len(entries(platform, "shop", "c1")) == 2
    events = [e for e in events_from_ledger(entries(platform, "shop", "c1")) if e.type == "points.matured"]
    assert len(events) == 1 and events[0].data["maturesAt"] == held["attributes"]["maturesAt"]
    REGISTRY.validate({"type": events[0].type, "timestamp": events[0].occurred_at, "data": events[0].data},
                      schema_name(events[0].type), 1)
    assert reconcile(platform.store, "shop").ok


def test_balance_as_of_and_history_show_pending_then_matured(client, platform, clock) -> None:
    keys = window_tenant(platform, "shop", days=1, time_zone="UTC")
    earn(client, platform, clock, keys, "o1")
    move_to(clock, at("2026-11-02T12:05:00+00:00"))
    platform.maturation.run_tenant("shop")
    before = client.get("/v1/customers/c1/balance?asOf=2026-11-01T18:00:00Z", headers=auth(keys.analyst)).json()
    after = client.get("/v1/customers/c1/balance?asOf=2026-11-02T13:00:00Z", headers=auth(keys.analyst)).json()
    assert (before["available"], before["pending"]) == (0, 100)
    assert (after["available"], after["pending"]) == (100, 0)
    items = client.get("/v1/customers/c1/ledger", headers=auth(keys.analyst)).json()["items"]
    assert [(i["entryType"], i["status"], i.get("pendingState")) for i in items] == [
        ("EARN", "COMMITTED", None), ("EARN", "PENDING", "matured")]
    assert items[1]["attributes"]["maturesAt"] == "2026-11-02T12:00:00+00:00"


def test_a_full_refund_inside_the_window_cancels_the_pending_points(client, platform, clock) -> None:
    keys = window_tenant(platform, "shop", days=14)
    earn(client, platform, clock, keys, "o1")
    answer = refund(client, keys, "o1", "r1", "10.00")
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert (body["pointsCancelledPending"], body["pointsClawedBack"]) == (100, 0)
    head = platform.ledger.head("shop", "c1")
    assert (head.balance, head.pending) == (0, 0)
    held, void, reversal = entries(platform, "shop", "c1")
    assert void["entryType"] == "VOID" and void["settlesEntryId"] == held["id"] and void["signedAmount"] == 0
    assert reversal["signedAmount"] == 0 and reversal["attributes"]["pendingCancelled"] == 100
    items = client.get("/v1/customers/c1/ledger", headers=auth(keys.analyst)).json()["items"]
    assert items[-1]["pendingState"] == "cancelled"
    move_to(clock, at("2026-11-20T00:00:00+00:00"))
    assert platform.maturation.run_tenant("shop")["matured"] == 0
    assert (platform.ledger.head("shop", "c1").balance, len(entries(platform, "shop", "c1"))) == (0, 3)
    assert reconcile(platform.store, "shop").ok


def test_a_partial_refund_cancels_its_share_and_the_rest_matures(client, platform, clock) -> None:
    keys = window_tenant(platform, "shop", days=14)
    earn(client, platform, clock, keys, "o1")
    assert refund(client, keys, "o1", "r1", "4.00").json()["pointsCancelledPending"] == 40
    assert refund(client, keys, "o1", "r2", "1.00").json()["pointsCancelledPending"] == 10
    head = platform.ledger.head("shop", "c1")
    assert (head.balance, head.pending) == (0, 50)
    move_to(clock, at("2026-11-15T12:00:00+00:00"))
    assert platform.maturation.run_tenant("shop")["points"] == 50
    head = platform.ledger.head("shop", "c1")
    assert (head.balance, head.pending, head.lifetime_earned) == (50, 0, 50)
    # After maturity the rest of the order is clawed back from the available points.
    last = refund(client, keys, "o1", "r3", "5.00").json()
    assert (last["pointsCancelledPending"], last["pointsClawedBack"]) == (0, 50)
    assert platform.ledger.head("shop", "c1").balance == 0
    assert reconcile(platform.store, "shop").ok


def test_a_repeated_refund_changes_nothing(client, platform, clock) -> None:
    keys = window_tenant(platform, "shop", days=14)
    earn(client, platform, clock, keys, "o1")
    first = refund(client, keys, "o1", "r1", "3.00").json()
    again = refund(client, keys, "o1", "r1", "3.00")
    assert again.status_code in (200, 201) and again.json()["pointsCancelledPending"] == first["pointsCancelledPending"]
    assert len(entries(platform, "shop", "c1")) == 4  # held, VOID, re-pended rest, REVERSAL


def test_a_tenant_without_a_window_earns_available_points_as_before(client, platform, clock) -> None:
    keys = window_tenant(platform, "plain", days=0)
    earn(client, platform, clock, keys, "o1")
    (entry,) = entries(platform, "plain", "c1")
    assert entry["status"] == "COMMITTED" and "maturesAt" not in entry.get("attributes", {})
    assert platform.ledger.head("plain", "c1").balance == 100


def test_the_window_setting_is_validated_and_changes_nothing_when_refused(client, platform, clock) -> None:
    keys = window_tenant(platform, "shop", days=0)
    for bad in (-1, 366, "14", 1.5):
        answer = client.patch("/v1/tenant", json={"pendingDays": bad}, headers=auth(keys.admin))
        assert answer.status_code == 422, (bad, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
    assert platform.tenants.get("shop").pending_days == 0
    answer = client.patch("/v1/tenant", json={"pendingDays": 30}, headers=auth(keys.admin))
    assert answer.status_code == 200 and answer.json()["pendingDays"] == 30
    earn(client, platform, clock, keys, "o1")
    assert entries(platform, "shop", "c1")[0]["status"] == "PENDING"


def test_a_fraud_held_window_earn_is_left_to_the_review_not_matured(client, platform, clock) -> None:
    from shared.fraud.holds import hold
    from shared.ledger.entries import EntryDraft, EntryStatus, EntryType
    from shared.ledger.service import Plan, TransactionRequest

    window_tenant(platform, "shop", days=1, time_zone="UTC")
    draft = EntryDraft(EntryType.EARN, 30, status=EntryStatus.PENDING, reference_order_id="o1",
                       attributes={"maturesAt": "2026-11-02T12:00:00+00:00"})
    held = hold(Plan([draft], {"status": "credited"}), [{"code": "velocity", "detail": "too many"}])
    platform.ledger.append_one(TransactionRequest("shop", "c1", "k", "k", lambda head: held))
    assert held.entries[0].attributes["fraudHold"] is True
    move_to(clock, at("2026-11-03T00:00:00+00:00"))
    assert platform.maturation.mature_customers("shop", ["c1"]).matured == 0
    assert platform.ledger.head("shop", "c1").pending == 30


def test_a_rule_overrides_the_tenants_window_per_earn(client, platform, clock) -> None:
    keys = window_tenant(platform, "shop", days=14, time_zone="UTC")
    reason = {"code": "campaign", "text": "windows per rule"}
    source = ('rule "base" then earn 100 points\n'
              'rule "quick" then earn 7 points pending for 2 days\n'
              'rule "instant" then earn 5 points pending for 0 days\n')
    assert client.post("/v1/rules/versions", json={"ruleSetId": "main", "source": source, "reason": reason},
                       headers=auth(keys.admin)).status_code == 201
    assert client.post("/v1/rules/activate", json={"target": {"ruleSetId": "main", "version": 1}, "reason": reason},
                       headers=auth(keys.admin)).status_code == 200
    earn(client, platform, clock, keys, "o1")
    written = {e["attributes"]["rule"]: e for e in entries(platform, "shop", "c1")}
    assert written["base"]["attributes"]["maturesAt"] == "2026-11-15T12:00:00+00:00"
    assert written["quick"]["attributes"]["maturesAt"] == "2026-11-03T12:00:00+00:00"
    assert written["instant"]["status"] == "COMMITTED" and "maturesAt" not in written["instant"]["attributes"]
    head = platform.ledger.head("shop", "c1")
    assert (head.balance, head.pending) == (5, 107)
    move_to(clock, at("2026-11-03T12:30:00+00:00"))
    assert platform.maturation.run_tenant("shop")["points"] == 7
    assert platform.ledger.head("shop", "c1").balance == 12
