"""Exactly-once under concurrency, for every write that takes an id or a key.

Each write of the API is described once (a ``Write``), and one parametrised test
class fires at each, through the real ASGI app, 20 concurrent *identical*
requests and 20 concurrent *conflicting* ones (same id or key, different bodies).
Then it checks what ``docs/exactly-once.md`` promises for that kind of write:

* ``keyed`` (an idempotency key or id that a repeat is answered from: refunds,
  adjustments, redemptions, conversions, reservation endings, transfers, voucher
  uses, key revocation, tenant provisioning):
  identical -> every answer 2xx and the same outcome, exactly one effect, and exactly
  one answer says it made it (201, ``duplicate`` false): every other one is answered as
  the replay it is (200, ``duplicate`` true), however the racers interleave;
  conflicting -> exactly one effect, every 2xx answer is the winner's request,
  every other answer a 4xx (409 or 422), never a 5xx.
* ``create-once`` (a client-chosen id, no replay: rewards, customers):
  one 201, the others 409; exactly one effect, with the winner's body.
* ``replace`` (PUT of a whole resource: tiers, partners, conversion programmes,
  spend policy, export settings): identical -> every answer 2xx, one change
  (one audit record); conflicting -> each 2xx answer a change of its own,
  serialised: the audit records chain (each one's ``before`` is the previous
  one's ``after``), the final state is the last one's ``after``, nothing lost.
* ``delete`` (a DELETE of a named thing: tier programme, webhook endpoint): one 2xx,
  every other answer 404 (it is gone, as for any later delete), never a 409 or 5xx;
  nothing left stored, one audit record.
* ``each-new`` (no client key; the server names each: API keys, webhook
  endpoints, backfills, rule versions): every 2xx answer names a distinct
  stored thing and every stored thing was answered; no 5xx.

Bounded: 20 threads per burst, each joined with a timeout.
"""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import pytest
from fastapi.testclient import TestClient

from shared.app.auth import Role
from shared.app.corrections import AdjustmentRequest
from shared.platform import Platform
from shared.spend.partners import PartnerConfig, PartnerReceipt, PartnerRequest
from shared.store.layout import API_KEYS, CODES, LEDGER, RULESETS, SYSTEM, TENANTS, WEBHOOK_ENDPOINTS, customer_pk, voucher_pk
from shared.store.port import Filter, Query
from shared.webhooks.ssrf import TestAllowance
from tests.conftest import TenantKeys, auth, drain, order_body, run_in_threads
from tests.unit.agents.conftest import POLICY

BURST = 20
# A check-then-write window of a few microseconds is crossed in some rounds, not all:
# writes guarded by such a check race on a fresh key in each of ROUNDS rounds.
ROUNDS = 10
REASON = {"code": "campaign", "text": "spring campaign"}
RULE = 'rule "base" then earn floor(order.total) points'
TIERS = {"windowMonths": 12, "tiers": [{"name": "silver", "minPoints": 100, "multiplier": "1.25"},
                                       {"name": "gold", "minPoints": 500, "multiplier": "1.5"}],
         "evaluation": {"frequency": "monthly", "dayOfMonth": 1}, "grace": {"kind": "nextEvaluation"}}


@dataclass
class Ctx:
    platform: Platform
    client: TestClient
    tenant: TenantKeys
    platform_admin: str
    extra: dict[str, Any] = field(default_factory=dict)
    round: int = 0  # create-once writes race on a fresh id in each of several rounds

    def key(self, role: str) -> str:
        return {"merchant": self.tenant.merchant, "admin": self.tenant.admin,
                "platform": self.platform_admin}[role]


Kind = Literal["keyed", "create-once", "replace", "each-new", "delete"]


@dataclass(frozen=True)
class Write:
    """One write of the API. ``request(ctx, n)``: (method, path, body) of the n-th racer;
    with ``identical`` every racer sends request n=0. ``effects(ctx)``: what is stored under
    the key (one element per effect). ``winner(ctx, effect, body)``: whether ``effect``
    is what ``body`` asked for."""

    name: str
    kind: Kind
    role: str
    request: Callable[[Ctx, int], tuple[str, str, dict | None]]
    effects: Callable[[Ctx], list[dict]]
    winner: Callable[[Ctx, dict, dict | None], bool] = lambda ctx, effect, body: True
    setup: Callable[[Ctx], None] = lambda ctx: None
    audit: str | None = None  # the audit action one effect records
    audit_tenant: str = "acme"  # whose audit chain records it
    rounds: int = 1  # races on a fresh key per round (``setup`` and ids per ``ctx.round``)
    created: int | None = 201  # the status of the one answer that made the effect (keyed writes)


# --- helpers ----------------------------------------------------------------------------------


def _entries(ctx: Ctx, customer: str = "c1", **where: Any) -> list[dict]:
    filters = [Filter("docType", "=", "entry")] + [Filter(k, "=", v) for k, v in where.items()]
    return ctx.platform.store.query(LEDGER, Query(pk=customer_pk("acme", customer), filters=tuple(filters),
                                                  limit=10_000))


def _docs(ctx: Ctx, container: str, pk: str | None, **where: Any) -> list[dict]:
    return ctx.platform.store.query(container, Query(pk=pk, filters=tuple(Filter(k, "=", v) for k, v in
                                                                          where.items()), limit=10_000))


def _audits(ctx: Ctx, action: str, tenant_id: str = "acme") -> list[dict]:
    return [r for r in ctx.platform.audit.records(tenant_id, 0, 10_000) if r["action"] == action]


def _credit(ctx: Ctx, points: int = 100_000) -> None:
    ctx.platform.corrections.adjust("acme", "c1", AdjustmentRequest(points=points, reasonCode="goodwill",
                                                                    reason="float", idempotencyKey="float"), "t")


class Partner:
    """The partner's side of the protocol (no runnable peer exists): one fulfilment per
    reference, as the protocol requires a partner to de-duplicate."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def fulfil(self, request: PartnerRequest) -> PartnerReceipt:
        with self._lock:
            self.calls.append(request.reference)
        return PartnerReceipt(f"pr-{request.reference}")


def _conversion_setup(ctx: Ctx) -> None:
    _credit(ctx)
    ctx.platform.spend.partners.save("air", PartnerConfig(baseUrl="http://127.0.0.1:9/air"), "t")
    ctx.extra["partner"] = partner = Partner()
    ctx.platform.spend.partners.use("air", partner)
    saved = ctx.client.put("/v1/conversion-programmes/miles", headers=auth(ctx.tenant.admin),
                           json={"partnerId": "air", "name": "Miles", "rate": "0.5"})
    assert saved.status_code == 200, saved.text


def _refund_setup(ctx: Ctx) -> None:
    ctx.client.post("/v1/orders", json=order_body(order_id="o-refund", amount="100.00"),
                    headers=auth(ctx.tenant.merchant))
    drain(ctx.platform)


def _reservation_setup(ctx: Ctx) -> None:
    _credit(ctx)
    made = ctx.client.post("/v1/customers/c1/redemptions", headers=auth(ctx.tenant.merchant),
                           json={"idempotencyKey": "hold", "points": 50, "mode": "reserve"})
    assert made.status_code == 201, made.text
    ctx.extra["rid"] = made.json()["redemptionId"]


def _revoke_setup(ctx: Ctx) -> None:
    ctx.extra["victim"] = ctx.platform.keys.issue("acme", Role.MERCHANT, None).key_id
    if "admins" not in ctx.extra:
        ctx.extra["admins"] = [ctx.tenant.admin, ctx.platform.keys.issue("acme", Role.TENANT_ADMIN, None).secret_key]


def _webhook_setup(ctx: Ctx) -> None:
    ctx.platform.webhooks.allowance = TestAllowance(frozenset({"127.0.0.1"}))


def _transfer_setup(ctx: Ctx) -> None:
    _credit(ctx)


def _voucher_setup(ctx: Ctx) -> None:
    _credit(ctx)
    reward = {"rewardId": "ten-off", "name": "10 EUR off", "pointsCost": 500, "type": "voucher",
              "voucher": {"value": {"amount": "10.00", "currency": "EUR"}, "validDays": 30, "uses": 1}}
    assert ctx.client.post("/v1/rewards", json=reward, headers=auth(ctx.tenant.admin)).status_code == 201
    bought = ctx.client.post("/v1/customers/c1/redemptions", headers=auth(ctx.tenant.merchant),
                             json={"idempotencyKey": "buy", "rewardId": "ten-off"})
    assert bought.status_code == 201, bought.text
    ctx.extra["voucher"] = bought.json()["voucher"]


def _import_setup(ctx: Ctx) -> None:
    made = ctx.client.post("/v1/imports", headers=auth(ctx.tenant.admin),
                           json={"kind": "awards", "format": "ndjson"})
    assert made.status_code == 201, made.text
    ctx.extra["import"] = made.json()["importId"]
    row = b'{"awardId":"a1","customerId":"c1","points":5,"reason":"welcome"}\n'
    uploaded = ctx.client.put(f"/v1/imports/{ctx.extra['import']}/file", content=row,
                              headers={**auth(ctx.tenant.admin), "Content-Type": "application/octet-stream"})
    assert uploaded.status_code == 200, uploaded.text


def _review_setup(ctx: Ctx) -> None:
    policy = ctx.client.put("/v1/fraud/policy", json={"customer": {"pointsPerHour": 50}}, headers=auth(ctx.tenant.admin))
    assert policy.status_code == 200, policy.text
    order_id = f"o-held-{ctx.round}"
    sent = ctx.client.post("/v1/orders", json=order_body("c1", order_id, "10.00"), headers=auth(ctx.tenant.merchant))
    assert sent.status_code == 202, sent.text
    drain(ctx.platform)
    pending = ctx.client.get("/v1/reviews", headers=auth(ctx.tenant.admin)).json()["items"]
    assert len(pending) == 1, pending  # the earlier rounds' reviews are decided
    ctx.extra["review"] = pending[0]["reviewId"]


def _decisions(ctx: Ctx) -> list[dict]:
    """The review's recorded decisions; each must have written its ledger entry once."""
    applied = [e for e in _entries(ctx) if e.get("attributes", {}).get("reviewId") == ctx.extra["review"]]
    records = [r for r in ctx.platform.audit.records("acme", 0, 10_000)
               if r["action"] in ("review.approved", "review.rejected") and r["target"].endswith(ctx.extra["review"])]
    assert len(applied) == len(records), (applied, records)
    return records


def _cancel_setup(ctx: Ctx) -> None:
    policy = ctx.client.put("/v1/spend/policy", json={"voucherCancel": "refund"}, headers=auth(ctx.tenant.admin))
    assert policy.status_code == 200, policy.text
    _voucher_setup(ctx)


def _versions_setup(ctx: Ctx) -> None:
    for _ in range(BURST):
        saved = ctx.client.post("/v1/rules/versions", headers=auth(ctx.tenant.admin),
                                json={"ruleSetId": "main", "source": RULE, "reason": REASON})
        assert saved.status_code == 201, saved.text


def _active(ctx: Ctx) -> list[dict]:
    active = ctx.platform.rule_sets.active("acme")
    return [active.model_dump(mode="json", by_alias=True)] if active is not None else []


def _agent_policies_setup(ctx: Ctx) -> None:
    for _ in range(BURST):
        ctx.platform.agents.policies.save("acme", "default", POLICY, "tests", "admin")


def _agent_pointer(ctx: Ctx) -> list[dict]:
    doc = ctx.platform.store.read(RULESETS, "acme", "agentpolicy-active:default")
    return [doc] if doc else []


def _read(ctx: Ctx, path: str) -> list[dict]:
    """What a GET of ``path`` answers (tenant-admin), as the one stored effect."""
    response = ctx.client.get(path, headers=auth(ctx.tenant.admin))
    return [response.json()] if response.status_code == 200 else []


def _reward_setup(ctx: Ctx) -> None:
    made = ctx.client.post("/v1/rewards", headers=auth(ctx.tenant.admin),
                           json={"rewardId": "mug", "name": "Mug", "pointsCost": 100})
    assert made.status_code == 201, made.text


def _endpoint_setup(ctx: Ctx) -> None:
    _webhook_setup(ctx)
    made = ctx.client.post("/v1/webhooks/endpoints", headers=auth(ctx.tenant.admin),
                           json={"url": "http://127.0.0.1:9/hook", "eventTypes": ["transaction.committed"]})
    assert made.status_code == 201, made.text
    ctx.extra["endpoint"] = made.json()["id"]


def _agent_key_setup(ctx: Ctx) -> None:
    _agent_policies_setup(ctx)
    ctx.extra["agent_key"] = ctx.platform.keys.issue("acme", Role.AGENT, None).key_id


def _tiers_setup(ctx: Ctx) -> None:
    saved = ctx.client.put("/v1/tiers", json=TIERS, headers=auth(ctx.tenant.admin))
    assert saved.status_code == 200, saved.text


def _experiment_setup(ctx: Ctx) -> None:
    if "versions" not in ctx.extra:
        _versions_setup(ctx)
        ctx.extra["versions"] = True
    started = ctx.client.post("/v1/rules/experiments", headers=auth(ctx.tenant.admin), json={
        "name": f"trial {ctx.round}", "control": {"ruleSetId": "main", "version": 1},
        "treatment": {"ruleSetId": "main", "version": 2}, "treatmentShare": "0.5", "reason": REASON})
    assert started.status_code == 201, started.text
    ctx.extra["experiment"] = started.json()["experimentId"]


def _experiment_endings(ctx: Ctx) -> list[dict]:
    return [r for r in ctx.platform.audit.records("acme", 0, 10_000)
            if r["action"] in ("ruleset.experiment.stopped", "ruleset.experiment.promoted")
            and ctx.extra["experiment"] in json.dumps(r)]


def _rotations(ctx: Ctx) -> list[int]:
    """One per rotation since the endpoint was made (its secret version 1): none lost, none doubled."""
    version = _read(ctx, f"/v1/webhooks/endpoints/{ctx.extra['endpoint']}")[0]["secretVersion"]
    return list(range(2, version + 1))


def _voucher(ctx: Ctx) -> dict:
    from shared.vouchers.codes import code_hash
    return ctx.platform.store.read(CODES, voucher_pk("acme", code_hash("acme", ctx.extra["voucher"]["code"])), "voucher")


def _tenant_doc(ctx: Ctx, tenant_id: str, doc_id: str) -> list[dict]:
    doc = ctx.platform.store.read(TENANTS, tenant_id, doc_id)
    return [doc] if doc else []


def _erasure_setup(ctx: Ctx) -> None:
    made = ctx.client.post("/v1/customers", headers=auth(ctx.tenant.merchant), json={
        "customerId": f"er-{ctx.round}", "joinDate": "2025-01-01", "email": f"erin.{ctx.round}@example.org"})
    assert made.status_code == 201, made.text


def _erased(ctx: Ctx) -> list[dict]:
    docs = _docs(ctx, "customers", customer_pk("acme", f"er-{ctx.round}"), docType="customer")
    return [d for d in docs if d.get("erasedAt")]


def _message_setup(ctx: Ctx) -> None:
    _endpoint_setup(ctx)
    ctx.platform.webhooks.update("acme", ctx.extra["endpoint"], event_types=["ruleset.activated"])
    ctx.extra["message"] = ctx.platform.webhooks.rule_set_activated("acme", "main", 1)
    assert ctx.extra["message"] is not None


def _replays(ctx: Ctx) -> list[dict]:
    from shared.store.layout import WEBHOOK_DELIVERIES, delivery_pk
    return [d for d in _docs(ctx, WEBHOOK_DELIVERIES, delivery_pk("acme", ctx.extra["endpoint"]))
            if ".r" in d["id"]]


def _rule_drafts(ctx: Ctx) -> list[dict]:
    return _docs(ctx, RULESETS, "acme", docType="ruleset-draft")


def _rule_draft_setup(ctx: Ctx) -> None:
    made = ctx.client.post("/v1/rules/drafts", headers=auth(ctx.tenant.admin), json={"ruleSetId": "main",
                                                                                    "source": RULE})
    assert made.status_code == 201, made.text
    ctx.extra["draft"] = made.json()["draftId"]


def _redemption_review_setup(ctx: Ctx) -> None:
    policy = ctx.client.put("/v1/spend/policy", json={"reviewThresholdPoints": 1000}, headers=auth(ctx.tenant.admin))
    assert policy.status_code == 200, policy.text
    _credit(ctx, 5000)
    big = ctx.client.post("/v1/customers/c1/redemptions", headers=auth(ctx.tenant.merchant),
                          json={"idempotencyKey": f"big-{ctx.round}", "points": 1000})
    assert big.status_code == 202, big.text
    ctx.extra["rid"] = big.json()["redemptionId"]
    queue = ctx.client.get("/v1/redemption-reviews", headers=auth(ctx.tenant.admin)).json()["items"]
    assert len(queue) == 1, queue  # the earlier rounds' reviews are decided
    ctx.extra["review"] = queue[0]["reviewId"]


def _review_records(ctx: Ctx) -> list[dict]:
    return [r for r in ctx.platform.audit.records("acme", 0, 10_000)
            if r["action"] in ("review.approved", "review.rejected") and r["target"].endswith(ctx.extra["review"])]


def _rollback_setup(ctx: Ctx) -> None:
    """Versions 1 .. BURST + 1, the last active: every racer's target is earlier at the start
    (a racer whose target were the active version would be a repeat: 200 and no change)."""
    _versions_setup(ctx)
    saved = ctx.client.post("/v1/rules/versions", headers=auth(ctx.tenant.admin),
                            json={"ruleSetId": "main", "source": RULE, "reason": REASON})
    assert saved.status_code == 201, saved.text
    latest = max(v.version for v in ctx.platform.rule_sets.list_versions("acme", "main", 1000))
    active = ctx.client.post("/v1/rules/activate", headers=auth(ctx.tenant.admin),
                             json={"target": {"ruleSetId": "main", "version": latest}, "reason": REASON})
    assert active.status_code == 200, active.text


def _agent_history_setup(ctx: Ctx) -> None:
    _agent_policies_setup(ctx)
    for version in range(1, BURST + 1):  # a history to walk back through, as deep as the burst
        activated = ctx.client.post("/v1/agent-policies/default/activate", headers=auth(ctx.tenant.admin),
                                    json={"version": version, "reason": "step"})
        assert activated.status_code == 200, activated.text


def _agent_rollbacks(ctx: Ctx) -> list[dict]:
    return _audits(ctx, "agent-policy.rolled-back")


def _experiment_versions_setup(ctx: Ctx) -> None:
    if "versions" not in ctx.extra:
        _versions_setup(ctx)
        ctx.extra["versions"] = True


def _running_experiments(ctx: Ctx) -> list[dict]:
    return [d["body"] for d in _docs(ctx, RULESETS, "acme", docType="ruleset-experiment")
            if d["body"]["status"] == "running"]


WRITES: list[Write] = [
    Write("adjustment", "keyed", "admin",
          lambda ctx, n: ("POST", "/v1/customers/c1/adjustments",
                          {"points": 10 + n, "reasonCode": "goodwill", "reason": "sorry", "idempotencyKey": "adj-1"}),
          lambda ctx: _entries(ctx, entryType="ADJUST", idempotencyKey="adjust:adj-1"),
          lambda ctx, e, body: e["signedAmount"] == body["points"], audit="adjustment.created"),
    Write("refund", "keyed", "merchant",
          lambda ctx, n: ("POST", "/v1/orders/o-refund/refunds",
                          {"refundId": "r-1", "amount": f"{10 + n}.00", "currency": "EUR"}),
          lambda ctx: [e for e in _entries(ctx, entryType="REVERSAL") if e["attributes"]["refundId"] == "r-1"],
          lambda ctx, e, body: e["attributes"]["refundAmount"] == body["amount"], setup=_refund_setup),
    Write("redemption", "keyed", "merchant",
          lambda ctx, n: ("POST", "/v1/customers/c1/redemptions",
                          {"idempotencyKey": "rd-1", "points": 10 + n, "mode": "direct"}),
          lambda ctx: _entries(ctx, entryType="REDEEM", idempotencyKey="redeem:rd-1"),
          lambda ctx, e, body: -e["signedAmount"] == body["points"], setup=_credit),
    Write("conversion", "keyed", "merchant",
          lambda ctx, n: ("POST", "/v1/customers/c1/conversions",
                          {"idempotencyKey": "cv-1", "programmeId": "miles", "points": 100 + 2 * n,
                           "partnerAccount": "FF123"}),
          lambda ctx: _entries(ctx, entryType="CONVERT", idempotencyKey="convert:cv-1"),
          lambda ctx, e, body: -e["signedAmount"] == body["points"], setup=_conversion_setup),
    # A reservation's endings: n even confirms, n odd cancels (identical: all confirm).
    Write("reservation ending", "keyed", "merchant",
          lambda ctx, n: ("POST", f"/v1/customers/c1/redemptions/{ctx.extra['rid']}/"
                                  + ("confirm" if n % 2 == 0 else "cancel"), None),
          lambda ctx: [d for d in _docs(ctx, LEDGER, customer_pk("acme", "c1"), docType="settlement")],
          lambda ctx, e, body: True, setup=_reservation_setup),
    # Revocation by key id: n even by one admin, n odd by another.
    # A fresh key per round: the check of the key's marker and the transfer record's create
    # are two steps, and a racer that passed the first after the winner closed the record
    # must still answer as a replay.
    Write("transfer", "keyed", "merchant",
          lambda ctx, n: ("POST", "/v1/customers/c1/transfers",
                          {"toCustomerId": "c2", "points": 10 + n, "idempotencyKey": f"tr-{ctx.round}"}),
          lambda ctx: [e for e in _entries(ctx, entryType="TRANSFER_OUT")
                       if e["idempotencyKey"] == f"transfer-out:{_transfer_id(ctx)}"],
          lambda ctx, e, body: -e["signedAmount"] == body["points"], setup=_transfer_setup, rounds=ROUNDS),
    Write("voucher use", "keyed", "merchant",
          lambda ctx, n: ("POST", f"/v1/vouchers/{ctx.extra['voucher']['code']}/redeem",
                          {"channel": "in-store", "orderId": f"o-{n}", "_key": "pos-1"}),
          lambda ctx: list(_voucher(ctx)["redemptions"].values()),
          lambda ctx, e, body: e["outcome"]["orderId"] == body["orderId"], setup=_voucher_setup),
    # A held earn's review: n even approves, n odd rejects; a decision is final (one 200, the
    # others 409 review-decided), and exactly one decision is recorded and applied.
    Write("review decision", "create-once", "admin",
          lambda ctx, n: ("POST", f"/v1/reviews/{ctx.extra['review']}/" + ("approve" if n % 2 == 0 else "reject"),
                          {"note": f"decided by {n}"}),
          _decisions,
          lambda ctx, e, body: e["reason"] == body["note"], setup=_review_setup, rounds=ROUNDS),
    # Starting a started import changes nothing: one job queued, one audit record.
    Write("import start", "keyed", "admin",
          lambda ctx, n: ("POST", f"/v1/imports/{ctx.extra['import']}/start", None),
          lambda ctx: [d for d in _docs(ctx, SYSTEM, None, docType="workItem")
                       if d.get("params", {}).get("importId") == ctx.extra["import"]],
          setup=_import_setup, audit="import.started", rounds=ROUNDS, created=None),
    # An unused voucher cancelled 20 times at once: cancelled once, its points refunded once.
    Write("voucher cancel", "keyed", "merchant",
          lambda ctx, n: ("POST", f"/v1/customers/c1/vouchers/{ctx.extra['voucher']['voucherId']}/cancel", None),
          lambda ctx: _entries(ctx, entryType="ADJUST",
                               idempotencyKey=f"voucher-refund:{ctx.extra['voucher']['voucherId']}"),
          setup=_cancel_setup),
    Write("api key revocation", "keyed", "admin",
          lambda ctx, n: ("DELETE", f"/v1/api-keys/{ctx.extra['victim']}", {"_as": n % 2}),
          lambda ctx: [d for d in _docs(ctx, API_KEYS, ctx.extra["victim"]) if d.get("revokedAt")],
          setup=_revoke_setup, audit="apikey.revoked", rounds=ROUNDS, created=None),
    Write("reward", "create-once", "admin",
          lambda ctx, n: ("POST", "/v1/rewards", {"rewardId": f"latte{ctx.round}", "name": f"Latte {n}",
                                                  "pointsCost": 100}),
          lambda ctx: _tenant_doc(ctx, "acme", f"reward:latte{ctx.round}"),
          lambda ctx, e, body: e["name"] == body["name"], audit="reward.created", rounds=ROUNDS),
    Write("customer", "create-once", "merchant",
          lambda ctx, n: ("POST", "/v1/customers", {"customerId": f"new-{ctx.round}",
                                                    "joinDate": f"2025-01-{1 + n:02d}"}),
          lambda ctx: _docs(ctx, "customers", customer_pk("acme", f"new-{ctx.round}"), docType="customer"),
          lambda ctx, e, body: e["joinDate"] == body["joinDate"], rounds=ROUNDS),
    # Tenant creation and partner configuration are platform acts: a request each, run by
    # the second operator's approval; their races (twenty approvals, twenty requests at
    # once) are in tests/unit/governance/test_fido2.py.
    Write("tier programme", "replace", "admin",
          lambda ctx, n: ("PUT", "/v1/tiers", {**TIERS, "windowMonths": 1 + n}),
          lambda ctx: _tenant_doc(ctx, "acme", "tierprogram"),
          lambda ctx, e, body: e["program"]["windowMonths"] == body["windowMonths"], audit="tiers.program.saved"),
    Write("conversion programme", "replace", "admin",
          lambda ctx, n: ("PUT", "/v1/conversion-programmes/miles",
                          {"partnerId": "air", "name": f"Miles {n}", "rate": "0.5"}),
          lambda ctx: _tenant_doc(ctx, "acme", "conversion:miles"),
          lambda ctx, e, body: e["name"] == body["name"],
          setup=lambda ctx: ctx.platform.spend.partners.save("air", PartnerConfig(baseUrl="http://127.0.0.1:9/a"),
                                                             "t"),
          audit="conversion.programme.saved"),
    Write("spend policy", "replace", "admin",
          lambda ctx, n: ("PUT", "/v1/spend/policy", {"reservationTtlSeconds": 60 + n}),
          lambda ctx: _tenant_doc(ctx, "acme", "spend:policy"),
          lambda ctx, e, body: e["reservationTtlSeconds"] == body["reservationTtlSeconds"],
          audit="spend.policy.changed"),
    Write("tenant settings", "replace", "admin",
          lambda ctx, n: ("PATCH", "/v1/tenant", {"name": f"Shop {n}"}),
          lambda ctx: _tenant_doc(ctx, "acme", "acme"),
          lambda ctx, e, body: e["name"] == body["name"], audit="tenant.settings.changed"),
    # Activation of a saved version: racer n activates version n + 1 (identical: all version 1).
    Write("rule activation", "replace", "admin",
          lambda ctx, n: ("POST", "/v1/rules/activate", {"target": {"ruleSetId": "main", "version": 1 + n},
                                                          "reason": REASON}),
          _active,
          lambda ctx, e, body: e["version"] == body["target"]["version"], setup=_versions_setup,
          audit="ruleset.activated"),
    Write("agent policy activation", "replace", "admin",
          lambda ctx, n: ("POST", "/v1/agent-policies/default/activate", {"version": 1 + n, "reason": "go"}),
          _agent_pointer,
          lambda ctx, e, body: e["version"] == body["version"], setup=_agent_policies_setup,
          audit="agent-policy.activated"),
    Write("fraud policy", "replace", "admin",
          lambda ctx, n: ("PUT", "/v1/fraud/policy", {"customer": {"pointsPerHour": 1000 + n}}),
          lambda ctx: _read(ctx, "/v1/fraud/policy"),
          lambda ctx, e, body: e["customer"]["pointsPerHour"] == body["customer"]["pointsPerHour"],
          audit="fraud.policy.changed"),
    Write("referral programme", "replace", "admin",
          lambda ctx, n: ("PUT", "/v1/referrals/programme", {"referrerPoints": 100 + n, "refereePoints": 50}),
          lambda ctx: _read(ctx, "/v1/referrals/programme"),
          lambda ctx, e, body: e["referrerPoints"] == body["referrerPoints"], audit="referralprogramme.set"),
    Write("occasion settings", "replace", "admin",
          lambda ctx, n: ("PUT", "/v1/occasions/settings", {"birthdayPoints": 10 + n, "anniversaryPoints": 5}),
          lambda ctx: _read(ctx, "/v1/occasions/settings"),
          lambda ctx, e, body: e["birthdayPoints"] == body["birthdayPoints"], audit="occasions.settings.changed"),
    Write("export settings", "replace", "admin",
          lambda ctx, n: ("PUT", "/v1/exports/settings", {"excludedPersonalFields": [], "microBatchMinutes": 5 + n}),
          lambda ctx: _read(ctx, "/v1/exports/settings"),
          lambda ctx, e, body: e["microBatchMinutes"] == body["microBatchMinutes"], audit="export.settings.changed"),
    Write("reward change", "replace", "admin",
          lambda ctx, n: ("PATCH", "/v1/rewards/mug", {"name": f"Mug {n}"}),
          lambda ctx: _read(ctx, "/v1/rewards/mug"),
          lambda ctx, e, body: e["name"] == body["name"], setup=_reward_setup, audit="reward.updated"),
    Write("webhook endpoint change", "replace", "admin",
          lambda ctx, n: ("PATCH", f"/v1/webhooks/endpoints/{ctx.extra['endpoint']}", {"description": f"till {n}"}),
          lambda ctx: _read(ctx, f"/v1/webhooks/endpoints/{ctx.extra['endpoint']}"),
          lambda ctx, e, body: e["description"] == body["description"], setup=_endpoint_setup,
          audit="webhook.endpoint.updated"),
    Write("agent key binding", "replace", "admin",
          lambda ctx, n: ("PUT", f"/v1/agent-keys/{ctx.extra['agent_key']}/policy", {"policyId": f"p{n}"}),
          lambda ctx: [d for d in [ctx.platform.store.read(RULESETS, "acme", f"agentkey:{ctx.extra['agent_key']}")]
                       if d],
          lambda ctx, e, body: e["policyId"] == body["policyId"], setup=_agent_key_setup, audit="agent-key.bound"),
    Write("tier programme deletion", "delete", "admin",
          lambda ctx, n: ("DELETE", "/v1/tiers", None),
          lambda ctx: _tenant_doc(ctx, "acme", "tierprogram"),
          setup=_tiers_setup, audit="tiers.program.deleted", rounds=ROUNDS),
    Write("webhook endpoint deletion", "delete", "admin",
          lambda ctx, n: ("DELETE", f"/v1/webhooks/endpoints/{ctx.extra['endpoint']}", None),
          lambda ctx: [d for d in _docs(ctx, WEBHOOK_ENDPOINTS, "acme") if "url" in d],
          setup=_endpoint_setup, audit="webhook.endpoint.deleted", rounds=ROUNDS),
    # An experiment ends once: n even stops it, n odd promotes arm B; one 200, the others 409.
    Write("experiment ending", "create-once", "admin",
          lambda ctx, n: ("POST", f"/v1/rules/experiments/{ctx.extra['experiment']}/"
                          + ("stop" if n % 2 == 0 else "promote"),
                          {"reason": REASON} if n % 2 == 0 else {"arm": "B", "reason": REASON}),
          _experiment_endings,
          lambda ctx, e, body: e["action"].endswith("promoted") == ("arm" in body), setup=_experiment_setup,
          rounds=3),
    Write("webhook secret rotation", "each-new", "admin",
          lambda ctx, n: ("POST", f"/v1/webhooks/endpoints/{ctx.extra['endpoint']}/rotate-secret", {"graceSeconds": 60}),
          _rotations, setup=_endpoint_setup, audit="webhook.secret.rotated"),
    # The GraphQL API's one mutation, through POST /graphql/v1 like every other write here.
    Write("graphql settings", "replace", "admin",
          lambda ctx, n: ("POST", "/graphql/v1", {"query": "mutation($c: Int) { updateGraphqlSettings(maxCost: $c) "
                                                           "{ maxDepth maxCost introspection } }", "variables": {"c": 1000 + n}}),
          lambda ctx: _tenant_doc(ctx, "acme", "graphql"),
          lambda ctx, e, body: e["maxCost"] == body["variables"]["c"], audit="graphql.settings.changed"),
    # Erasure is idempotent: one erasure (one audit record), every repeat answered with its outcome.
    Write("erasure", "keyed", "admin",
          lambda ctx, n: ("POST", f"/v1/customers/er-{ctx.round}/erasure", {"reason": f"ticket {n}"}),
          _erased, setup=_erasure_setup, audit="customer.erased", rounds=3, created=None),
    # A customer's referral code is one code, however many ask for it at once.
    Write("referral code", "keyed", "merchant",
          lambda ctx, n: ("POST", "/v1/customers/c1/referral-code", None),
          lambda ctx: _docs(ctx, CODES, None, docType="referralCode", customerId="c1"), created=None),
    # A redemption held for review, decided once through its own routes: n even approves, n odd rejects.
    Write("redemption decision", "create-once", "admin",
          lambda ctx, n: ("POST", f"/v1/customers/c1/redemptions/{ctx.extra['rid']}/"
                          + ("approve" if n % 2 == 0 else "reject"), {"reason": f"decided by {n}"}),
          _review_records,
          lambda ctx, e, body: e["reason"] == body["reason"], setup=_redemption_review_setup, rounds=3),
    # One experiment runs at a time: of twenty starts, one.
    Write("experiment start", "create-once", "admin",
          lambda ctx, n: ("POST", "/v1/rules/experiments", {
              "name": f"trial {n}", "control": {"ruleSetId": "main", "version": 1},
              "treatment": {"ruleSetId": "main", "version": 2}, "treatmentShare": "0.5", "reason": REASON}),
          _running_experiments,
          lambda ctx, e, body: e["name"] == body["name"], setup=_experiment_versions_setup,
          audit="ruleset.experiment.started"),
    # A rollback steps back from the version the caller saw (``fromVersion``): twenty at once step
    # back once, and the repeats are answered with the state it left (whatever reason they give).
    Write("agent policy rollback", "keyed", "admin",
          lambda ctx, n: ("POST", "/v1/agent-policies/default/rollback", {"reason": f"undo {n}", "fromVersion": BURST}),
          _agent_rollbacks,
          lambda ctx, e, body: e["after"]["version"] == BURST - 1, setup=_agent_history_setup,
          audit="agent-policy.rolled-back", created=None),
    # Rollback names its target: racer n rolls back to version n + 1 (identical: all to version 1).
    Write("rule rollback", "replace", "admin",
          lambda ctx, n: ("POST", "/v1/rules/rollback", {"target": {"ruleSetId": "main", "version": 1 + n},
                                                          "reason": REASON}),
          _active,
          lambda ctx, e, body: e["version"] == body["target"]["version"], setup=_rollback_setup,
          audit="ruleset.rolled-back"),
    # A draft is a scratchpad (not audited): identical PUTs leave it as asked, different ones the last.
    Write("rule draft change", "replace", "admin",
          lambda ctx, n: ("PUT", f"/v1/rules/drafts/{ctx.extra['draft']}",
                          {"source": f'rule "base" then earn {n + 1} points'}),
          lambda ctx: [d["draft"] for d in _rule_drafts(ctx) if d["draft"]["draftId"] == ctx.extra["draft"]],
          lambda ctx, e, body: e["source"] == body["source"], setup=_rule_draft_setup),
    Write("agent policy draft", "replace", "admin",
          lambda ctx, n: ("PUT", "/v1/agent-policies/default/draft", {"policy": {"n": n}}),
          lambda ctx: _docs(ctx, RULESETS, "acme", docType="agent-policy-draft"),
          lambda ctx, e, body: e["policy"] == body["policy"]),
    Write("agent terms", "each-new", "admin",
          lambda ctx, n: ("PUT", "/v1/agent-terms/programme-terms",
                          {"title": "Terms", "markdown": f"# Terms {n}\n", "reason": "launch"}),
          lambda ctx: _docs(ctx, "ruleversions", "acme", docType="agent-terms"),
          audit="agent-terms.saved"),
    Write("api key", "each-new", "admin",
          lambda ctx, n: ("POST", "/v1/api-keys", {"role": "merchant", "label": f"till {n}"}),
          lambda ctx: [d for d in _docs(ctx, API_KEYS, None, tenantId="acme") if d["label"].startswith("till")],
          audit="apikey.created"),
    Write("webhook endpoint", "each-new", "admin",
          lambda ctx, n: ("POST", "/v1/webhooks/endpoints", {"url": f"http://127.0.0.1:9/h{n}",
                                                             "eventTypes": ["transaction.committed"]}),
          lambda ctx: [d for d in _docs(ctx, WEBHOOK_ENDPOINTS, "acme") if "url" in d],  # not their slots
          setup=_webhook_setup, audit="webhook.endpoint.created"),
    Write("export backfill", "each-new", "admin",
          lambda ctx, n: ("POST", "/v1/exports/backfills",
                          {"from": "2026-10-01T00:00:00Z", "to": f"2026-10-{2 + n:02d}T00:00:00Z",
                           "subjects": ["orders"]}),
          lambda ctx: [r for r in ctx.platform.exports.runs("acme", 500) if r["kind"] == "backfill"],
          audit="export.backfill"),
    Write("export run", "each-new", "admin",
          lambda ctx, n: ("POST", "/v1/exports/runs", None),
          lambda ctx: [r for r in ctx.platform.exports.runs("acme", 500) if r["kind"] != "backfill"],
          audit="export.run"),
    Write("rule draft", "each-new", "admin",
          lambda ctx, n: ("POST", "/v1/rules/drafts", {"ruleSetId": "main", "source": f"draft {n}"}),
          _rule_drafts),
    Write("agent policy version", "each-new", "admin",
          lambda ctx, n: ("POST", "/v1/agent-policies/default/versions", {"policy": POLICY, "reason": "v"}),
          lambda ctx: ctx.platform.agents.policies.versions("acme", "default", 1000),
          audit="agent-policy.saved"),
    Write("import", "each-new", "admin",
          lambda ctx, n: ("POST", "/v1/imports", {"kind": "awards", "format": "ndjson"}),
          lambda ctx: ctx.platform.imports.list("acme", 1000),
          audit="import.created"),
    Write("webhook message replay", "each-new", "admin",
          lambda ctx, n: ("POST", f"/v1/webhooks/endpoints/{ctx.extra['endpoint']}/messages/"
                                  f"{ctx.extra['message']}/replay", None),
          _replays, setup=_message_setup, audit="webhook.message.replayed"),
    Write("rule version", "each-new", "admin",
          lambda ctx, n: ("POST", "/v1/rules/versions", {"ruleSetId": "main", "source": RULE, "reason": REASON}),
          lambda ctx: ctx.platform.rule_sets.list_versions("acme", "main", 1000),
          audit="ruleset.version.saved"),
]


def _send(ctx: Ctx, write: Write, n: int) -> tuple[dict | None, Any]:
    method, path, body = write.request(ctx, n)
    key = ctx.key(write.role)
    headers = auth(key)
    if body is not None and "_as" in body:  # the revocation's second admin
        key, body = ctx.extra["admins"][body["_as"]], None
        headers = auth(key)
    if body is not None and "_key" in body:  # an Idempotency-Key header, not a body field
        headers = {**headers, "Idempotency-Key": body["_key"]}
        body = {k: v for k, v in body.items() if k != "_key"}
    response = ctx.client.request(method, path, headers=headers, **({"json": body} if body is not None else {}))
    return body, response


def _burst(ctx: Ctx, write: Write, identical: bool) -> list[tuple[dict | None, Any]]:
    answers: list[tuple[dict | None, Any]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(BURST, timeout=30)
    # Verify the keys first: a cold key costs an Argon2 hash, which would stagger the
    # racers (hashes are bounded) and hide the race this test is about.
    for key in (ctx.tenant.merchant, ctx.tenant.admin, ctx.platform_admin, *ctx.extra.get("admins", ())):
        ctx.platform.keys.verify(key)
    # Likewise the test client's first answer builds the contract checker (about a second of
    # CPU), which twenty racers switching threads every microsecond would stretch to a minute.
    assert ctx.client.get("/v1/tenant", headers=auth(ctx.tenant.admin)).status_code == 200

    def racer(n: int) -> None:
        barrier.wait()  # all at once
        sent = _send(ctx, write, 0 if identical else n)
        with lock:
            answers.append(sent)

    # Switch threads every microsecond instead of every 5 ms: a read-then-write window of
    # a few microseconds is then crossed by other racers often, not once in a thousand runs.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        run_in_threads(racer, [(n,) for n in range(BURST)], timeout=60)
    finally:
        sys.setswitchinterval(interval)
    assert len(answers) == BURST, "a racer did not finish"
    return answers


@pytest.fixture
def ctx(platform: Platform, client: TestClient, tenant: TenantKeys) -> Ctx:
    # The partners here listen on loopback over http: the explicit test-only allowance of the
    # outbound-address guard (shared.webhooks.ssrf), never a weakened guard.
    platform.spend.partners.allowance = TestAllowance(frozenset({"127.0.0.1"}))
    return Ctx(platform, client, tenant, platform.keys.issue("_platform", Role.PLATFORM_ADMIN, None).secret_key)


@pytest.mark.parametrize("write", [pytest.param(w, id=w.name) for w in WRITES])
class TestConcurrentWrites:
    def test_identical_requests_have_one_effect(self, ctx: Ctx, write: Write) -> None:
        for ctx.round in range(write.rounds):
            self._identical(ctx, write)

    def test_conflicting_requests_have_one_winner(self, ctx: Ctx, write: Write) -> None:
        for ctx.round in range(write.rounds):
            self._conflicting(ctx, write)

    def _identical(self, ctx: Ctx, write: Write) -> None:
        write.setup(ctx)
        audited = len(_audits(ctx, write.audit, _audit_tenant(ctx, write))) if write.audit else 0
        answers = _burst(ctx, write, identical=True)
        codes = sorted(r.status_code for _, r in answers)
        assert all(code < 500 for code in codes), _explain(answers)
        effects = write.effects(ctx)
        ok = [(b, r) for b, r in answers if r.status_code < 300]
        if write.kind == "keyed":
            assert len(ok) == BURST, _explain(answers)
            assert len(effects) == 1, effects
            outcomes = {json.dumps(_outcome(r.json()), sort_keys=True) for _, r in ok}
            assert len(outcomes) == 1, "\n".join(outcomes)  # every repeat is answered with the one outcome
            if "alreadyErased" in ok[0][1].json():  # an erasure says whether it was the one that erased
                assert [r.json()["alreadyErased"] for _, r in ok].count(False) == 1, _explain(answers)
            if write.created is not None:
                made = [r for _, r in ok if r.status_code == write.created]
                assert len(made) == 1, _explain(answers)  # one racer made it; the others replayed it
                # A replay that says whether it is one (``duplicate``) says so truthfully.
                assert all(r.json().get("duplicate", r is not made[0]) is (r is not made[0]) for _, r in ok), \
                    _explain(answers)
        elif write.kind == "create-once":
            assert len(ok) == 1 and codes.count(409) == BURST - 1, _explain(answers)
            assert len(effects) == 1 and write.winner(ctx, effects[0], ok[0][0])
        elif write.kind == "replace":
            assert len(ok) == BURST, _explain(answers)
            assert len(effects) == 1 and write.winner(ctx, effects[0], ok[0][0])
            assert len({json.dumps(r.json(), sort_keys=True) for _, r in ok}) == 1, "identical PUTs, one answer"
        elif write.kind == "delete":
            assert len(ok) == 1 and codes.count(404) == BURST - 1, _explain(answers)
            assert effects == [], effects
        else:
            # Every racer asked for something new: each is made or told to retry (409: a run in
            # progress, the version numbers contended), and some are made (a row whose racers
            # were all refused would compare nothing with nothing).
            assert ok and all(r.status_code == 409 for _, r in answers if r.status_code >= 300), _explain(answers)
            assert len(ok) == len(effects), _explain(answers)
        if write.audit is not None:
            expected = 1 if write.kind in ("keyed", "create-once", "replace", "delete") else len(ok)
            assert len(_audits(ctx, write.audit, _audit_tenant(ctx, write))) - audited == expected

    def _conflicting(self, ctx: Ctx, write: Write) -> None:
        if write.kind == "delete":  # a delete has no body to differ in
            return self._identical(ctx, write)
        write.setup(ctx)
        answers = _burst(ctx, write, identical=False)
        assert all(r.status_code < 500 for _, r in answers), _explain(answers)
        ok = [(b, r) for b, r in answers if r.status_code < 300]
        refused = [r for _, r in answers if r.status_code >= 300]
        effects = write.effects(ctx)
        assert all(r.status_code in (409, 422) for r in refused), _explain(answers)
        if write.kind in ("keyed", "create-once"):
            assert len(effects) == 1, effects
            assert ok, _explain(answers)
            # Every 2xx answer is the winner's: a loser is never told it succeeded.
            assert all(write.winner(ctx, effects[0], body) for body, _ in ok), _explain(answers)
            if write.kind == "create-once":
                assert len(ok) == 1, _explain(answers)
        elif write.kind == "replace" and write.audit is None:
            # Not audited (a draft): no chain to follow, but what is stored is what one 2xx asked for.
            assert len(effects) == 1 and ok, _explain(answers)
            assert any(write.winner(ctx, effects[0], body) for body, _ in ok), _explain(answers)
        elif write.kind == "replace":
            assert len(effects) == 1 and ok, _explain(answers)
            records = _audits(ctx, write.audit, _audit_tenant(ctx, write))
            assert len(records) == len({json.dumps(b, sort_keys=True) for b, _ in ok}), \
                "one audit record per change that was answered 2xx"
            last = _chain(records)
            assert write.winner(ctx, effects[0], _body_of(answers, last["after"], write, ctx))
        else:
            assert len(ok) == len(effects), _explain(answers)


def _transfer_id(ctx: Ctx) -> str:
    from shared.transfers.saga import transfer_id
    return transfer_id("acme", "c1", f"tr-{ctx.round}")


def _audit_tenant(ctx: Ctx, write: Write) -> str:
    return f"newco{ctx.round}" if write.audit_tenant == "newco" else write.audit_tenant


def _outcome(answer: dict) -> dict:
    """An answer without what describes the call rather than the outcome: ``duplicate``
    (``alreadyErased`` for an erasure), the ``state`` now, and how many partner calls this request made."""
    return {k: v for k, v in answer.items() if k not in ("duplicate", "alreadyErased", "state", "partnerAttempts")}


def _chain(records: list[dict]) -> dict:
    """The audit records of a replaced document form one chain of changes, each built
    on the one before (its ``before`` is that one's ``after``): no change was made on a
    stale read, none was lost. (The chain's order is the changes' order; the audit log's
    own order may differ, since each record is appended after its change.) Returns the last."""
    by_before = {json.dumps(r["before"], sort_keys=True): r for r in records}
    assert len(by_before) == len(records), "two changes were built on the same state (one of them lost)"
    afters = {json.dumps(r["after"], sort_keys=True) for r in records}
    firsts = [r for key, r in by_before.items() if key not in afters]
    assert len(firsts) == 1, "the changes do not form one chain"
    current, seen = firsts[0], 1
    while (following := by_before.get(json.dumps(current["after"], sort_keys=True))) is not None:
        current, seen = following, seen + 1
    assert seen == len(records), "the changes do not form one chain"
    return current


def _body_of(answers: list, after: Any, write: Write, ctx: Ctx) -> dict | None:
    """The request body whose answer is the last audit record's ``after``."""
    for body, response in answers:
        answer = response.json() if response.status_code < 300 else {}
        if "data" in answer:  # a GraphQL mutation's answer: its one field's result
            answer = next(iter(answer["data"].values()))
        if response.status_code < 300 and all(answer.get(k) == v for k, v in after.items()):
            return body
    raise AssertionError(f"no 2xx answer matches the last change {after}")


def _explain(answers: list) -> str:
    return "\n".join(f"{r.status_code} {r.text[:300]}" for _, r in answers)


# --- coverage: every write of the API is raced here, or says why not -------------------------

# Write operations the table does not race, each with the reason. A new write operation
# fails ``test_every_write_operation_is_raced_or_says_why_not`` until it is in one or the other.
_WRITES_NOTHING = "writes nothing (a POST for its body): nothing to race"
_CEREMONY = ("a platform act: each request is approved by a second operator's fresh WebAuthn assertion, so "
             "racers cannot share one; its races (twenty approvals of one request, twenty requests for one "
             "tenant) are in tests/unit/governance/test_fido2.py and test_keys_audit.py")
NOT_RACED: dict[str, str] = {
    "privacy.lookup": _WRITES_NOTHING,
    "rules.validate": _WRITES_NOTHING,
    "rules.simulate": _WRITES_NOTHING,
    "rules.simulateStored": _WRITES_NOTHING,
    "agents.validatePolicy": _WRITES_NOTHING,
    "operators.registrationOptions": "issues a fresh one-use challenge per call (each-new by construction)",
    "operators.register": _CEREMONY,
    "governance.request": _CEREMONY,
    "governance.approve": _CEREMONY,
    "governance.reject": _CEREMONY,
    "tenants.create": _CEREMONY,
    "rewards.putPartner": _CEREMONY,
    "keys.revokePlatform": _CEREMONY,
    "orders.send": ("the claim of an order id: tests/unit/api/test_order_claims.py (one id from many customers, "
                    "many bodies, many keys at once) and the end-to-end harness tests/e2e/test_concurrency_harness.py"),
    "orders.sendBatch": "as orders.send: tests/unit/api/test_order_claims.py (batches racing on one order id)",
    "imports.upload": ("a binary body: tests/unit/imports/test_import_races.py races twenty uploads of one "
                       "import's file"),
    "vouchers.uploadPool": ("a CSV or NDJSON body: tests/unit/vouchers/test_pools.py races twenty uploads of "
                            "overlapping code lists"),
}


class _Placeholder(str):
    """What a row's request reads from ``ctx.extra`` (an id, a voucher's code...), when only
    its method and path are wanted."""

    def __getitem__(self, key: Any) -> "_Placeholder":  # type: ignore[override]
        return self


class _PlaceholderExtra(dict):
    def __missing__(self, key: str) -> _Placeholder:
        return _Placeholder("x")


def _operations_of(write: Write, conformance: Any) -> set[str]:
    """The operations a row's racers call (a conflicting burst may mix two: approve and reject)."""
    ctx = Ctx(None, None, None, "", _PlaceholderExtra())  # type: ignore[arg-type]
    operations = set()
    for n in range(BURST):
        method, path, _ = write.request(ctx, n)
        if path == "/graphql/v1":
            continue  # GraphQL's own schema describes it (docs/graphql.md), not the OpenAPI document
        found = conformance.operation(method, path)
        assert found is not None, f"{write.name}: {method} {path} is no operation of the API"
        operations.add(found[1]["operationId"])
    return operations


def test_every_write_operation_is_raced_or_says_why_not() -> None:
    from tests.contract_check import Conformance

    # The committed document (tests/unit/api/test_openapi_contract.py holds it equal to the app's).
    document = json.loads((Path(__file__).resolve().parents[3] / "docs" / "openapi-v1.json").read_text())
    conformance = Conformance(document)
    writes = {operation["operationId"] for item in document["paths"].values()
              for method, operation in item.items() if method in ("post", "put", "patch", "delete")}
    raced = set().union(*(_operations_of(write, conformance) for write in WRITES))
    assert not raced - writes, f"rows that race no write operation: {sorted(raced - writes)}"
    assert not raced & NOT_RACED.keys(), f"raced, yet listed as not raced: {sorted(raced & NOT_RACED.keys())}"
    assert not NOT_RACED.keys() - writes, f"no such write operation: {sorted(NOT_RACED.keys() - writes)}"
    missing = writes - raced - NOT_RACED.keys()
    assert not missing, f"write operations neither raced nor excused (NOT_RACED): {sorted(missing)}"
