"""The review queue on its own: idempotent submit, listing, inspection, attributed and
audited decisions, final decisions (409), the ETag race, and tenant isolation. A small
probe kind stands in for the real handlers (earn holds, redemptions)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.audit.log import Actor
from shared.errors import ConfigurationError, Conflict, NotFound, ReviewDecided
from shared.ledger.entries import EntryDraft, EntryStatus, EntryType, Head
from shared.ledger.service import Plan, TransactionRequest, fingerprint_of
from shared.reviews import ReviewQueue, decision_key

ADMIN = Actor("adminkey0001", "tenant-admin")
OTHER_ADMIN = Actor("adminkey0002", "tenant-admin")


def _hold(platform, tenant_id: str, customer_id: str, points: int, key: str) -> str:
    outcome = platform.ledger.append_one(TransactionRequest(
        tenant_id, customer_id, key, fingerprint_of(key),
        lambda head: Plan([EntryDraft(EntryType.EARN, points, EntryStatus.PENDING)], {"status": "held"})))
    return outcome.entries[0]["id"]


def _settle(platform, review: dict[str, Any], who: Actor, action: str) -> dict[str, Any]:
    held = platform.ledger.record(review["tenantId"], review["customerId"], review["entryId"])
    points = held["signedAmount"]

    def plan(head: Head) -> Plan:
        # Checked in the plan (on the head being appended to): settling twice is refused,
        # and the ledger then replays this key's first outcome if there is one.
        if platform.ledger.record(review["tenantId"], review["customerId"], f"settled-{held['id']}"):
            raise ReviewDecided(f"{held['id']} is already settled")
        draft = (EntryDraft(EntryType.EARN, points, settles_entry_id=held["id"], settles_amount=points,
                            attributes={"decidedBy": who.key_id}) if action == "approve"
                 else EntryDraft(EntryType.VOID, 0, settles_entry_id=held["id"], settles_amount=points))
        return Plan([draft], {"action": action}, records=[{"id": f"settled-{held['id']}", "docType": "settlement"}])

    key = decision_key(review, action)
    outcome = platform.ledger.append_one(TransactionRequest(
        review["tenantId"], review["customerId"], key, fingerprint_of(key), plan))
    return {"action": action, "entryIds": [e["id"] for e in outcome.entries]}


@pytest.fixture
def queue(platform) -> ReviewQueue:
    platform.reviews.register("probe", approve=lambda r, who, note: _settle(platform, r, who, "approve"),
                              reject=lambda r, who, note: _settle(platform, r, who, "reject"))
    return platform.reviews


def _submit(platform, queue, customer="c1", points=500, key="k1", tenant_id="acme") -> dict[str, Any]:
    entry = _hold(platform, tenant_id, customer, points, key)
    return queue.submit(tenant_id, "probe", customer, entry, [{"code": "velocity", "detail": "too fast"}],
                        {"points": points})


def test_submit_is_idempotent_per_entry(platform, queue) -> None:
    first = _submit(platform, queue)
    again = queue.submit("acme", "probe", "c1", first["entryId"], ["something-else"], {"points": 1})
    assert again == first
    assert again["status"] == "open" and again["reasons"] == [{"code": "velocity", "detail": "too fast"}]
    assert len(queue.list("acme")) == 1


def test_list_filters_by_status_and_kind(platform, queue) -> None:
    a = _submit(platform, queue, key="k1")
    _submit(platform, queue, customer="c2", key="k2")
    queue.approve("acme", a["reviewId"], ADMIN)
    assert [r["customerId"] for r in queue.list("acme", status="open")] == ["c2"]
    assert [r["reviewId"] for r in queue.list("acme", status="approved")] == [a["reviewId"]]
    assert queue.list("acme", kind="redemption") == []
    assert len(queue.list("acme", kind="probe")) == 2
    assert [r["customerId"] for r in queue.list("acme", customer_id="c2")] == ["c2"]


def test_inspect_shows_reasons_and_recent_history(platform, queue) -> None:
    review = _submit(platform, queue, points=700)
    seen = queue.inspect("acme", review["reviewId"])
    assert seen["reasons"][0]["code"] == "velocity"
    assert seen["customer"]["pending"] == 700 and seen["customer"]["available"] == 0
    assert [e["id"] for e in seen["customer"]["recentEntries"]] == [review["entryId"]]


def test_approve_writes_a_new_entry_attributed_and_audited(platform, queue) -> None:
    review = _submit(platform, queue, points=300)
    decided = queue.approve("acme", review["reviewId"], ADMIN, note="known customer")
    assert decided["status"] == "approved"
    assert decided["decidedBy"] == {"keyId": ADMIN.key_id, "role": "tenant-admin"}
    assert decided["note"] == "known customer"
    head = platform.ledger.head("acme", "c1")
    assert (head.balance, head.pending, head.seq) == (300, 0, 2)
    held = platform.ledger.record("acme", "c1", review["entryId"])
    assert held["status"] == "PENDING"  # the held entry itself is untouched
    audit = platform.audit.records("acme")[-1]
    assert audit["action"] == "review.approved" and audit["actor"]["keyId"] == ADMIN.key_id
    assert audit["target"] == f"review:{review['reviewId']}" and audit["reason"] == "known customer"
    assert audit["after"]["result"]["entryIds"] == decided["result"]["entryIds"]


@pytest.mark.parametrize("second", ["approve", "reject"])
def test_a_decision_is_final(platform, queue, second) -> None:
    review = _submit(platform, queue)
    queue.reject("acme", review["reviewId"], ADMIN)
    before = platform.ledger.head("acme", "c1")
    audits = len(platform.audit.records("acme"))
    with pytest.raises(ReviewDecided) as refused:
        queue.decide("acme", review["reviewId"], second, OTHER_ADMIN)
    assert refused.value.status == 409 and refused.value.extensions["status"] == "rejected"
    assert platform.ledger.head("acme", "c1") == before
    assert len(platform.audit.records("acme")) == audits


def test_two_admins_racing_one_wins(platform, queue) -> None:
    review = _submit(platform, queue)
    raced: list[bool] = []

    def approve_racing(r, who, note):
        if not raced:  # the other admin decides while this one is between its read and its write
            raced.append(True)
            queue.approve("acme", review["reviewId"], OTHER_ADMIN)
        return _settle(platform, r, who, "approve")

    platform.reviews.register("probe", approve=approve_racing, reject=lambda r, w, n: _settle(platform, r, w, "reject"))
    with pytest.raises(ReviewDecided):
        queue.approve("acme", review["reviewId"], ADMIN)
    final = queue.get("acme", review["reviewId"])
    assert final["decidedBy"]["keyId"] == OTHER_ADMIN.key_id
    assert platform.ledger.head("acme", "c1").balance == 500  # credited once
    assert [a["action"] for a in platform.audit.records("acme")].count("review.approved") == 1


def test_the_ledger_refuses_the_opposite_decision_after_a_lost_write(platform, queue) -> None:
    """Approved in the ledger, but the review was not marked (a crash in between):
    rejecting then is refused by the ledger, approving again replays and marks."""
    review = _submit(platform, queue)
    _settle(platform, review, ADMIN, "approve")
    with pytest.raises(Conflict):
        queue.reject("acme", review["reviewId"], ADMIN)
    assert queue.get("acme", review["reviewId"])["status"] == "open"
    assert queue.approve("acme", review["reviewId"], ADMIN)["status"] == "approved"
    assert platform.ledger.head("acme", "c1").balance == 500


def test_a_failing_handler_leaves_the_review_open(platform, queue) -> None:
    review = _submit(platform, queue)

    def broken(r, who, note):
        raise Conflict("partner said no")

    platform.reviews.register("probe", approve=broken, reject=broken)
    audits = len(platform.audit.records("acme"))
    with pytest.raises(Conflict):
        queue.approve("acme", review["reviewId"], ADMIN)
    assert queue.get("acme", review["reviewId"])["status"] == "open"
    assert len(platform.audit.records("acme")) == audits


def test_unknown_kind_is_a_configuration_error(platform, queue) -> None:
    review = queue.submit("acme", "nobody-handles-this", "c1", "e-000000000001", ["x"], {})
    with pytest.raises(ConfigurationError):
        queue.approve("acme", review["reviewId"], ADMIN)


def test_tenants_are_isolated(platform, queue) -> None:
    review = _submit(platform, queue)
    assert queue.list("globex") == []
    with pytest.raises(NotFound):
        queue.get("globex", review["reviewId"])
    with pytest.raises(NotFound):
        queue.approve("globex", review["reviewId"], ADMIN)
    assert queue.get("acme", review["reviewId"])["status"] == "open"


def test_withdraw_closes_an_open_review(platform, queue) -> None:
    review = _submit(platform, queue)
    closed = queue.withdraw("acme", "probe", "c1", review["entryId"], "cancelled by the merchant")
    assert closed["status"] == "withdrawn" and closed["decidedBy"]["keyId"] == "system"
    assert platform.audit.records("acme")[-1]["action"] == "review.withdrawn"
    with pytest.raises(ReviewDecided):
        queue.approve("acme", review["reviewId"], ADMIN)
    assert queue.withdraw("acme", "probe", "c9", "e-000000000009") is None
