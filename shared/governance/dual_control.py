"""Dual control of platform-admin destructive acts: one operator requests, another approves.

Acts under dual control (``ACTIONS``): deleting a tenant, granting a new
platform-admin key, rotating a tenant's KEK. A request is stored in the
``approvals`` container as ``pending`` with an expiry (``ttl``, one hour by
default). Another platform-admin approves it before it expires: never the
requesting key, and never another key of the same operator. The operator is
the key's label (each platform-admin key is granted under dual control with
the label of the person it is for, e.g. their directory name), compared
without case or surrounding space; keys without a label are told apart by key
id only. The act then runs at once and the request is marked ``executed`` (or
``failed`` with the error). Any platform-admin, the requester included
(withdrawing it), can reject a pending request. Every step is audited in the
``_platform`` chain, and acts on a tenant also in that tenant's chain.

State changes are ETag-guarded, so two approvers racing on one request cannot
both execute it.

``enabled`` is the ``ACCRUE_DUAL_CONTROL`` setting (on unless turned off, which
only the embedded store allows). The API's acts always go through a request;
``enabled`` decides whether other paths (the operator's CLI, see
``shared.governance.keys``) may grant platform-admin without one.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any, Callable

from shared.audit.log import PLATFORM_CHAIN, AuditLog, HasActor
from shared.clock import Clock, iso, parse_iso
from shared.errors import AccrueError, Conflict, Forbidden, NotFound, PreconditionFailed
from shared.store.layout import API_KEYS, APPROVALS
from shared.store.port import DocumentStore, Query

PK = "approvals"
DEFAULT_TTL = timedelta(hours=1)
TENANT_DELETE = "tenant.delete"
PLATFORM_ADMIN_GRANT = "platform-admin.grant"
TENANT_KEK_ROTATE = "tenant.kek.rotate"
ACTIONS = (TENANT_DELETE, PLATFORM_ADMIN_GRANT, TENANT_KEK_ROTATE)


class SelfApproval(Forbidden):
    code = "self-approval"


class DualControlRequired(Forbidden):
    """A platform-admin act was attempted without another operator's approval."""

    code = "dual-control-required"


class ApprovalExpired(AccrueError):
    code = "approval-expired"
    status = 409


class RequestNotPending(AccrueError):
    code = "request-not-pending"
    status = 409


Executor = Callable[[dict[str, Any], HasActor], dict[str, Any]]


class DualControl:
    def __init__(self, store: DocumentStore, clock: Clock, audit: AuditLog,
                 executors: dict[str, Executor] | None = None, ttl: timedelta = DEFAULT_TTL,
                 enabled: bool = True) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit
        self.executors: dict[str, Executor] = dict(executors or {})
        self.ttl = ttl
        self.enabled = enabled

    def executing(self, request_id: str, action: str) -> dict[str, Any]:
        """The stored request ``request_id`` if it is an ``action`` approved by a second
        operator and running now (its executor is the caller); ``DualControlRequired``
        otherwise. Read from the store, so a caller cannot vouch for an approval itself."""
        doc = self._store.read(APPROVALS, PK, request_id)
        approver = (doc or {}).get("approvedBy") or {}
        if doc is None or doc.get("action") != action or doc.get("status") != "executing" or \
                not approver.get("keyId") or approver["keyId"] == doc["requestedBy"]["keyId"]:
            raise DualControlRequired(f"{action} needs a request approved by a second operator; "
                                      f"{request_id!r} is not one being executed")
        return doc

    def request(self, action: str, who: HasActor, *, tenant_id: str | None, reason: str,
                params: dict[str, Any] | None = None) -> dict[str, Any]:
        if action not in ACTIONS:
            raise Conflict(f"{action!r} is not an act under dual control ({', '.join(ACTIONS)})")
        now = self._clock.now()
        doc = {
            "id": "req-" + secrets.token_hex(8), "pk": PK, "docType": "approvalRequest", "action": action,
            "tenantId": tenant_id, "params": params or {}, "reason": reason,
            "requestedBy": {"keyId": who.key_id, "role": getattr(who.role, "value", who.role),
                            "operator": self._operator(who.key_id)},
            "createdAt": iso(now), "expiresAt": iso(now + self.ttl), "status": "pending",
        }
        saved = self._store.create(APPROVALS, doc)
        self._audit_both(doc, "approval.requested", who, reason)
        return view(saved)

    def _operator(self, key_id: str) -> str:
        """Who holds the key: its label, normalised ("" when it has none)."""
        key = self._store.read(API_KEYS, key_id, key_id)
        return str((key or {}).get("label") or "").strip().casefold()

    def get(self, request_id: str) -> dict[str, Any]:
        doc = self._store.read(APPROVALS, PK, request_id)
        if doc is None:
            raise NotFound(f"approval request {request_id!r} does not exist")
        return doc

    def list(self, limit: int = 200) -> list[dict[str, Any]]:
        docs = self._store.query(APPROVALS, Query(pk=PK, order_by="createdAt", descending=True, limit=limit))
        return [view(self._expire_view(d)) for d in docs]

    def _expire_view(self, doc: dict[str, Any]) -> dict[str, Any]:
        if doc["status"] == "pending" and self._clock.now() >= parse_iso(doc["expiresAt"]):
            return dict(doc, status="expired")
        return doc

    def approve(self, request_id: str, who: HasActor, reason: str | None = None) -> dict[str, Any]:
        doc = self.get(request_id)
        if doc["status"] != "pending":
            raise RequestNotPending(f"request {request_id!r} is {doc['status']}, not pending")
        operator = self._operator(who.key_id)
        if who.key_id == doc["requestedBy"]["keyId"] or (operator and operator == doc["requestedBy"].get("operator")):
            raise SelfApproval("the operator who requested an act cannot approve it: another platform-admin must")
        if self._clock.now() >= parse_iso(doc["expiresAt"]):
            raise ApprovalExpired(f"request {request_id!r} expired at {doc['expiresAt']}; request it again")
        executor = self.executors.get(doc["action"])
        if executor is None:
            raise Conflict(f"no executor is wired for {doc['action']!r}")
        approved = dict(doc, status="executing", approvedBy={"keyId": who.key_id,
                                                               "role": getattr(who.role, "value", who.role)},
                        approvedAt=iso(self._clock.now()), approvalReason=reason)
        try:
            approved = self._store.upsert(APPROVALS, approved, if_match=doc["_etag"])
        except PreconditionFailed:
            raise RequestNotPending(f"request {request_id!r} was decided by someone else just now") from None
        self._audit_both(doc, "approval.approved", who, reason)
        try:
            result = executor(doc, who)
        except Exception as exc:  # noqa: BLE001 - whatever failed, the request must not stay "executing"
            message = exc.message if isinstance(exc, AccrueError) else f"{type(exc).__name__}: {exc}"
            self._store.upsert(APPROVALS, dict(approved, status="failed", error=message),
                               if_match=approved["_etag"])
            self._audit_both(doc, f"{doc['action']}.failed", who, message)
            raise
        done = self._store.upsert(APPROVALS, dict(approved, status="executed", executedAt=iso(self._clock.now()),
                                                  result=_storable(result)),
                                  if_match=approved["_etag"])
        self._audit_both(doc, f"{doc['action']}.executed", who, doc["reason"],
                         after=_storable(result))
        return dict(view(done), result=result)

    def reject(self, request_id: str, who: HasActor, reason: str | None = None) -> dict[str, Any]:
        doc = self.get(request_id)
        if doc["status"] != "pending":
            raise RequestNotPending(f"request {request_id!r} is {doc['status']}, not pending")
        try:
            saved = self._store.upsert(APPROVALS, dict(doc, status="rejected", rejectedBy={"keyId": who.key_id},
                                                       rejectedAt=iso(self._clock.now()), rejectionReason=reason),
                                       if_match=doc["_etag"])
        except PreconditionFailed:
            raise RequestNotPending(f"request {request_id!r} was decided by someone else just now") from None
        self._audit_both(doc, "approval.rejected", who, reason)
        return view(saved)

    def _audit_both(self, doc: dict[str, Any], action: str, who: HasActor, reason: str | None,
                    after: Any = None) -> None:
        target = f"request:{doc['id']}:{doc['action']}"
        self._audit.record(PLATFORM_CHAIN, action, who, target=target, after=after, reason=reason)
        if doc.get("tenantId"):
            self._audit.record(doc["tenantId"], action, who, target=target, after=after, reason=reason)


def view(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if not k.startswith("_") and k not in ("pk", "docType")}


def _storable(result: dict[str, Any]) -> dict[str, Any]:
    """What of an act's result may be stored and audited: never a secret."""
    return {k: v for k, v in result.items() if k not in ("apiKey", "secret")}
