"""Order claims: the one document per tenant and order id that says who owns it.

An order id is **claimed** before anything about it is published: the intake
creates the claim with a conditional create (``Create``: refused if the id
exists) in the order's own partition of the ``orderstatus`` container
(``tenantId:orderId``). SQLite refuses a second insert of a primary key and
Cosmos DB answers 409 to a second ``create_item`` of an id in one logical
partition, so of any number of concurrent sends exactly one creates the claim.
Nothing reads first and then writes: the read before the create only spares
the create in the common repeat case; the create alone decides.

The claim *is* the order's status document (``docType`` ``orderStatus``,
status ``queued``), with what a later send and ingestion compare against:

* ``customerId`` and ``fingerprint`` (SHA-256 of the canonical order): a later
  send with another customer or another body is refused, and ingestion credits
  a bus message only if it matches (shared/app/ingest.py);
* ``order`` and ``publishDue`` while it is not yet known to be on the bus: the
  relay (shared/app/relay.py) publishes any claim whose ``publishDue`` has
  passed. The intake removes both once its publish returned (ETag-guarded, so
  it never overwrites the projector's final status, which drops them too).

An explicit ``idempotencyKey`` that differs from the order id is claimed as
well, by a **key claim** in the same namespace: the key ``K`` of order ``B``
occupies the document an order with id ``K`` would use (keys that cannot be
order ids live under a hashed id with a ``~``, which no order id contains). So
an idempotency key names one order per tenant, and "key already used" is found
at the API, synchronously, by the same conditional create.

``judge`` turns what is stored into a verdict for one order; the intake, its
concurrent twins and a sequential resend all use it, so a loser of a race gets
the very answer it would get had it come second.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from shared.domain.ids import ID_RE
from shared.domain.orders import Order
from shared.errors import FieldProblem
from shared.store.layout import order_pk

CLAIM_DOC = "orderStatus"
KEY_CLAIM_DOC = "orderKeyClaim"
# The field the relay's query finds unpublished claims by (sparse-indexed in layout.py).
PUBLISH_DUE = "publishDue"


def key_claim_key(tenant_id: str, key: str) -> tuple[str, str]:
    """(pk, id) of the key claim of ``key``: the order-claim slot of an order with id
    ``key`` when that is a valid order id (so the two collide), else a hashed slot."""
    if ID_RE.match(key):
        return order_pk(tenant_id, key), key
    slot = "~key-" + hashlib.sha256(key.encode()).hexdigest()[:40]
    return order_pk(tenant_id, slot), slot


def claim_key(tenant_id: str, order_id: str) -> tuple[str, str]:
    return order_pk(tenant_id, order_id), order_id


def explicit_key(order: Order) -> str | None:
    """The key that needs a key claim of its own: one that is not the order id."""
    key = order.idempotency_key
    return key if key is not None and key != order.order_id else None


def order_claim(tenant_id: str, order: Order, payload: dict[str, Any], fingerprint: str,
                accepted_at: str, publish_due: str) -> dict[str, Any]:
    pk, id = claim_key(tenant_id, order.order_id)
    return {
        "id": id, "pk": pk, "docType": CLAIM_DOC, "tenantId": tenant_id,
        "customerId": order.customer_id, "orderId": order.order_id, "status": "queued",
        "acceptedAt": accepted_at, "fingerprint": fingerprint,
        "idempotencyKey": order.effective_idempotency_key,
        "order": payload, PUBLISH_DUE: publish_due,
    }


def published(claim: dict[str, Any]) -> dict[str, Any]:
    """The claim once its message is on the bus: no payload kept, nothing for the relay."""
    return {k: v for k, v in claim.items() if k not in ("order", PUBLISH_DUE) and not k.startswith("_")}


def key_claim(tenant_id: str, order: Order, fingerprint: str, claimed_at: str) -> dict[str, Any]:
    key = explicit_key(order)
    assert key is not None, "only an explicit key other than the order id is claimed on its own"
    pk, id = key_claim_key(tenant_id, key)
    return {
        "id": id, "pk": pk, "docType": KEY_CLAIM_DOC, "tenantId": tenant_id, "idempotencyKey": key,
        "orderId": order.order_id, "customerId": order.customer_id, "fingerprint": fingerprint,
        "claimedAt": claimed_at,
    }


def is_order_claim(doc: dict[str, Any] | None) -> bool:
    return doc is not None and doc.get("docType", CLAIM_DOC) == CLAIM_DOC


def matches(claim: dict[str, Any] | None, customer_id: str, fingerprint: str) -> bool:
    """Whether a message (or a send) is the order its claim was made for."""
    return is_order_claim(claim) and claim["customerId"] == customer_id and claim.get("fingerprint") == fingerprint


class Standing(Enum):
    FREE = "free"            # nothing there: create it
    OURS = "ours"            # this call created it
    TWIN = "twin"            # the same order, claimed by an earlier or concurrent send
    REFUSED = "refused"      # someone else's: see the problem


@dataclass(frozen=True)
class Dependency:
    """An order claim a verdict rests on. For a key claim it is the claim of the key's
    order, and the key claim stands only if that order claim is the very order the key
    was claimed with: a key claimed by a send whose order id lost to another body is
    withdrawn by that send, so until then it must not refuse anyone."""

    slot: tuple[str, str]
    fingerprint: str | None = None  # the key claim's order content; None for an order claim

    def holds(self, doc: dict[str, Any] | None) -> bool:
        """Whether ``doc`` (the claim at ``slot``) is final for this verdict."""
        return settled(doc) and (self.fingerprint is None
                                 or doc.get("fingerprint") in (None, self.fingerprint))  # type: ignore[union-attr]


@dataclass
class Verdict:
    order: Standing
    key: Standing | None  # None: no explicit key
    problem: FieldProblem | None = None
    conflict: str | None = None  # the order id is another order's idempotency key: 409
    # The explicit key is another order's. Kept even when the order id is refused too, so a
    # refusal names every reason whatever order the claims were judged in.
    key_conflict: str | None = None
    # The order claims this verdict rests on (another send's): final only once they are
    # settled, because a call in progress may still withdraw its claims (see ``settled``).
    depends: list[Dependency] = field(default_factory=list)


def settled(doc: dict[str, Any] | None) -> bool:
    """Whether an order claim can no longer be withdrawn: its publish is confirmed (or
    the projector wrote its outcome). Until then the call that made it may still
    withdraw it (it lost a race on another of its claims)."""
    return is_order_claim(doc) and PUBLISH_DUE not in doc  # type: ignore[operator]


def judge(order: Order, fingerprint: str, prefix: str, order_doc: dict[str, Any] | None,
          key_doc: dict[str, Any] | None, ours: set[tuple[str, str]]) -> Verdict:
    """What the stored documents mean for ``order`` (``prefix``: ``orders[i].`` in a batch)."""
    verdict = Verdict(order=Standing.FREE, key=None)
    if order_doc is not None and (order_doc["pk"], order_doc["id"]) not in ours:
        verdict.depends.append(_dependency(order_doc))
    if order_doc is None:
        pass
    elif (order_doc["pk"], order_doc["id"]) in ours:
        verdict.order = Standing.OURS
    elif not is_order_claim(order_doc):
        verdict.order = Standing.REFUSED
        verdict.conflict = (f"order id {order.order_id!r} is already used as the idempotency key of order "
                            f"{order_doc.get('orderId')!r}")
    elif order_doc["customerId"] != order.customer_id:
        verdict.order = Standing.REFUSED
        verdict.problem = FieldProblem(f"{prefix}orderId",
                                       f"order {order.order_id!r} was already sent for another customer")
    elif order_doc.get("fingerprint") not in (None, fingerprint):
        # A resend must be the same order: answering a changed one with the first
        # outcome would silently drop the change.
        verdict.order = Standing.REFUSED
        verdict.problem = FieldProblem(f"{prefix}orderId", f"order {order.order_id!r} was already sent with "
                                       "different content; a new order needs a new order id")
    else:
        verdict.order = Standing.TWIN
    key = explicit_key(order)
    if key is not None:
        if key_doc is not None and (key_doc["pk"], key_doc["id"]) not in ours:
            verdict.depends.append(_dependency(key_doc))
        if key_doc is None:
            verdict.key = Standing.FREE
        elif (key_doc["pk"], key_doc["id"]) in ours:
            verdict.key = Standing.OURS
        elif key_doc.get("docType") == KEY_CLAIM_DOC and key_doc.get("orderId") == order.order_id \
                and key_doc.get("fingerprint") == fingerprint:
            verdict.key = Standing.TWIN
        else:
            verdict.key = Standing.REFUSED
            verdict.key_conflict = (f"idempotency key {key!r} is already used for order "
                                    f"{key_doc.get('orderId')!r}; a new order needs a new key")
    return verdict


def _dependency(doc: dict[str, Any]) -> Dependency:
    """What a verdict that found ``doc`` in its way rests on (see ``Dependency``)."""
    if is_order_claim(doc):
        return Dependency(_owner(doc))
    return Dependency(_owner(doc), doc.get("fingerprint"))


def _owner(doc: dict[str, Any]) -> tuple[str, str]:
    """The order claim whose fate decides ``doc``'s: its own, or for a key claim its order's."""
    if is_order_claim(doc):
        return doc["pk"], doc["id"]
    return claim_key(doc["tenantId"], doc["orderId"])
