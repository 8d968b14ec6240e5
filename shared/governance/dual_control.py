"""Dual control of every platform-admin act: two operators, each with a FIDO2 security key.

Acts under dual control (``ACTIONS``): tenant provisioning and deletion, issuing
and revoking platform-admin keys and (by the platform) tenant-admin keys,
registering and removing operators and their security keys, KEK rotation,
partner configuration and the dual-control policy itself. A platform-admin
request (API or CLI) is stored in the ``approvals`` container as ``pending``
with an expiry (the policy's TTL, one hour by default) and a **challenge**: the
SHA-256 of the request's canonical content (act, tenant, exact parameters,
reason, request id, requester, expiry; ``content``). Nothing else is signed, so
an approval cannot be replayed for another act.

**Approving** is a WebAuthn assertion of that challenge (``shared.governance.webauthn``:
origin, RP id, user verification, signature, counter) by a security key of the
operator whose platform-admin key makes the call. The act runs once two
approvals are recorded from two **different operators with different
credentials**, one of them the requester's own (step-up: the requester confirms
with their key too). Exceptions, by what the act is about:

* ``credential.add`` (another key, or a lost key's replacement) is approved by two
  operators other than the one whose key it is, whoever asked;
* ``operator.register``: the sponsor (requester) and a second operator; while the
  sponsor is the region's only operator with a key, the newcomer's own assertion
  with the key being registered is the second approval (a different identity and
  credential; without it a region could never have two operators).

Every step is ETag-guarded: an approval is appended to the stored request under
its ETag (re-read and re-checked on a race), and only the write that moves it to
``executing`` runs the act, so two approvers racing cannot both execute it; the
request then becomes ``executed`` (or ``failed`` with the error). A pending request
past its expiry is marked ``expired`` (audited) by the first approval or
rejection that finds it so. Any operator, the requester included (withdrawing
it), can reject a pending request with their key. Every step is audited with
operator id and credential id in the ``_platform`` chain, and acts on a tenant
also in that tenant's chain.

``enabled`` is the ``ACCRUE_DUAL_CONTROL`` setting (on unless turned off, which
only the embedded store allows). The API's acts always go through a request;
``enabled`` decides whether other paths (the operator's CLI, see
``shared.governance.keys``) may grant platform-admin without one.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable

from fido2.utils import websafe_encode

from shared.audit.log import PLATFORM_CHAIN, SYSTEM_ACTOR, AuditLog, HasActor
from shared.clock import Clock, iso, parse_iso
from shared.errors import AccrueError, Conflict, Forbidden, NotFound, PreconditionFailed
from shared.governance.webauthn import CeremonyFailed, Credential, challenge_for
from shared.store.contention import attempts
from shared.store.layout import APPROVALS, SYSTEM
from shared.store.pages import read_all
from shared.store.port import DocumentStore, Query

if TYPE_CHECKING:
    from shared.governance.operators import Operators

PK = "approvals"
DEFAULT_TTL = timedelta(hours=1)
TENANT_CREATE = "tenant.create"
TENANT_DELETE = "tenant.delete"
TENANT_KEK_ROTATE = "tenant.kek.rotate"
TENANT_ADMIN_ISSUE = "tenant-admin.issue"
TENANT_KEY_REVOKE = "tenant-key.revoke"
PLATFORM_ADMIN_GRANT = "platform-admin.grant"
PLATFORM_ADMIN_REVOKE = "platform-admin.revoke"
OPERATOR_REGISTER = "operator.register"
OPERATOR_REMOVE = "operator.remove"
CREDENTIAL_ADD = "credential.add"
CREDENTIAL_REMOVE = "credential.remove"
PARTNER_SAVE = "partner.save"
POLICY_SET = "dual-control.policy"
# Act -> whether it is about one tenant (tenantId required) or the platform (none allowed).
TENANT_ACTS = (TENANT_CREATE, TENANT_DELETE, TENANT_KEK_ROTATE, TENANT_ADMIN_ISSUE, TENANT_KEY_REVOKE)
PLATFORM_ACTS = (PLATFORM_ADMIN_GRANT, PLATFORM_ADMIN_REVOKE, OPERATOR_REGISTER, OPERATOR_REMOVE, CREDENTIAL_ADD,
                 CREDENTIAL_REMOVE, PARTNER_SAVE, POLICY_SET)
ACTIONS = TENANT_ACTS + PLATFORM_ACTS
POLICY_ID = "dual-control-policy"
# An act runs inside its second approval's call (seconds; a large tenant's deletion
# minutes): a request still executing this long after that approval lost its executor.
EXECUTION_LEASE = timedelta(hours=1)
INTERRUPTED = ("the act's executor stopped before it recorded an outcome: the audit log shows what the act did; "
               "request the act again to complete it")
GOVERNANCE_PK = "governance"


class SelfApproval(Forbidden):
    code = "self-approval"


class AwaitingRequester(AccrueError):
    """A second operator approved already; the requester's own approval is missing."""

    code = "awaiting-requester"
    status = 409


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


def content(doc: dict[str, Any]) -> dict[str, Any]:
    """What an approval of ``doc`` signs: everything that decides what the act does."""
    return {"id": doc["id"], "action": doc["action"], "tenantId": doc.get("tenantId"), "params": doc["params"],
            "reason": doc["reason"], "requestedBy": doc["requestedBy"]["operatorId"],
            "createdAt": doc["createdAt"], "expiresAt": doc["expiresAt"]}


class DualControl:
    def __init__(self, store: DocumentStore, clock: Clock, audit: AuditLog, operators: "Operators",
                 executors: dict[str, Executor] | None = None, ttl: timedelta = DEFAULT_TTL,
                 enabled: bool = True) -> None:
        self._store = store
        self._clock = clock
        self._audit = audit
        self.operators = operators
        self.executors: dict[str, Executor] = dict(executors or {})
        self.ttl = ttl
        self.enabled = enabled

    # --- the policy (itself a dual-controlled act) ----------------------------------

    def policy(self) -> dict[str, Any]:
        doc = self._store.read(SYSTEM, GOVERNANCE_PK, POLICY_ID) or {}
        return {"ttlMinutes": int(doc.get("ttlMinutes") or self.ttl.total_seconds() // 60)}

    def set_policy(self, ttl_minutes: int) -> dict[str, Any]:
        assert 5 <= ttl_minutes <= 7 * 24 * 60, f"approval TTL {ttl_minutes} min out of bounds"
        self._store.upsert(SYSTEM, {"id": POLICY_ID, "pk": GOVERNANCE_PK, "docType": "dualControlPolicy",
                                    "ttlMinutes": ttl_minutes})
        return self.policy()

    # --- requests -----------------------------------------------------------------

    def executing(self, request_id: str, action: str) -> dict[str, Any]:
        """The stored request ``request_id`` if it is an ``action`` approved by two operators
        and running now (its executor is the caller); ``DualControlRequired`` otherwise.
        Read from the store, so a caller cannot vouch for an approval itself."""
        doc = self._store.read(APPROVALS, PK, request_id)
        if doc is None or doc.get("action") != action or doc.get("status") != "executing" or \
                not _complete(doc, doc.get("approvals") or []):
            raise DualControlRequired(f"{action} needs a request approved by two operators; "
                                      f"{request_id!r} is not one being executed")
        return doc

    def request(self, action: str, who: HasActor, *, tenant_id: str | None, reason: str,
                params: dict[str, Any] | None = None) -> dict[str, Any]:
        if action not in ACTIONS:
            raise Conflict(f"{action!r} is not an act under dual control ({', '.join(ACTIONS)})")
        assert (tenant_id is not None) == (action in TENANT_ACTS), f"{action}: tenantId {tenant_id!r}"
        operator_id = self.operators.of_key(who.key_id)
        operator = self.operators.active(operator_id)
        now = self._clock.now()
        ttl = timedelta(minutes=self.policy()["ttlMinutes"])
        doc = {
            "id": "req-" + secrets.token_hex(8), "pk": PK, "docType": "approvalRequest", "action": action,
            "tenantId": tenant_id, "params": params or {}, "reason": reason,
            "requestedBy": {"keyId": who.key_id, "role": getattr(who.role, "value", who.role),
                            "operatorId": operator_id, "operator": operator["name"]},
            "createdAt": iso(now), "expiresAt": iso(now + ttl), "status": "pending", "approvals": [],
        }
        saved = self._store.create(APPROVALS, doc)
        self._audit_both(doc, "approval.requested", who, reason, {"operatorId": operator_id})
        return view(saved)

    def get(self, request_id: str) -> dict[str, Any]:
        doc = self._store.read(APPROVALS, PK, request_id)
        if doc is None:
            raise NotFound(f"approval request {request_id!r} does not exist")
        return doc

    def list(self, limit: int | None = 200) -> list[dict[str, Any]]:
        """Requests, newest first: the newest ``limit``, or every one (``None``: keyset pages)."""
        docs = (sorted(read_all(self._store, APPROVALS, PK), key=lambda d: (d["createdAt"], d["id"]), reverse=True)
                if limit is None else
                self._store.query(APPROVALS, Query(pk=PK, order_by="createdAt", descending=True, limit=limit)))
        return [view(self._expire_view(d)) for d in docs]

    def _expire_view(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The request as an operator should read it now: a pending one past its expiry is
        ``expired``; one still ``executing`` past ``EXECUTION_LEASE`` after its approval is
        ``interrupted`` (its executor stopped before it could record an outcome, as a
        process killed mid-act does; the audit log says what the act did)."""
        now = self._clock.now()
        if doc["status"] == "pending" and now >= parse_iso(doc["expiresAt"]):
            return dict(doc, status="expired")
        if doc["status"] == "executing" and doc.get("approvedAt") and \
                now >= parse_iso(doc["approvedAt"]) + EXECUTION_LEASE:
            return dict(doc, status="interrupted", error=INTERRUPTED)
        return doc

    def assertion_options(self, request_id: str, who: HasActor) -> dict[str, Any]:
        """``publicKey`` options for ``navigator.credentials.get`` approving (or rejecting)
        ``request_id`` with a key of the caller's operator (or, for a newcomer's
        registration, the newcomer's key)."""
        doc = self.get(request_id)
        operator = self.operators.active(self.operators.of_key(who.key_id))
        allowed = [Credential(c["credentialId"], c["data"], c["aaguid"], 0) for c in operator["credentials"]]
        if doc["action"] == OPERATOR_REGISTER:
            c = doc["params"]["credential"]
            allowed.append(Credential(c["credentialId"], c["data"], c["aaguid"], 0))
        return self.operators.rp.request_options(challenge_for(content(doc)), allowed)

    # --- deciding -----------------------------------------------------------------

    def approve(self, request_id: str, who: HasActor, assertion: dict[str, Any],
                reason: str | None = None) -> dict[str, Any]:
        doc = self._pending(request_id)
        approver, extra = self._signer(doc, who, assertion)
        self._admissible(doc, approver, str(assertion.get("id") or ""))
        verified = self.operators.verify_assertion(approver, challenge_for(content(doc)), assertion, extra)
        entry = {"operatorId": approver, "credentialId": verified.credential_id, "keyId": who.key_id,
                 "at": iso(self._clock.now()), "reason": reason}
        for _ in attempts():
            approvals = (doc.get("approvals") or []) + [entry]
            complete = _complete(doc, approvals)
            changed = dict(doc, approvals=approvals, status="executing" if complete else "pending")
            if complete:
                changed.update(approvedBy={"keyId": who.key_id, "operatorId": approver,
                                           "role": getattr(who.role, "value", who.role)},
                               approvedAt=entry["at"], approvalReason=reason)
            try:
                approved = self._store.upsert(APPROVALS, changed, if_match=doc["_etag"])
                break
            except PreconditionFailed:
                doc = self._pending(request_id)  # another approval just now: check this one again
                self._admissible(doc, approver, verified.credential_id)
        else:
            raise RequestNotPending(f"request {request_id!r} kept changing; try again")
        self._audit_both(doc, "approval.approved", who, reason,
                         {"operatorId": approver, "credentialId": verified.credential_id,
                          "approvals": len(approvals)})
        if not complete:
            return view(approved)
        return self._execute(doc, approved, who)

    def _execute(self, doc: dict[str, Any], approved: dict[str, Any], who: HasActor) -> dict[str, Any]:
        executor = self.executors.get(doc["action"])
        assert executor is not None, f"no executor is wired for {doc['action']!r}"
        try:
            result = executor(approved, who)
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
                         dict(_storable(result), operators=[a["operatorId"] for a in approved["approvals"]],
                              credentials=[a["credentialId"] for a in approved["approvals"]]))
        return dict(view(done), result=result)

    def reject(self, request_id: str, who: HasActor, assertion: dict[str, Any],
               reason: str | None = None) -> dict[str, Any]:
        doc = self._pending(request_id)
        operator_id, extra = self._signer(doc, who, assertion)
        verified = self.operators.verify_assertion(operator_id, challenge_for(content(doc)), assertion, extra)
        rejected_by = {"keyId": who.key_id, "operatorId": operator_id, "credentialId": verified.credential_id}
        try:
            saved = self._store.upsert(APPROVALS, dict(doc, status="rejected", rejectedBy=rejected_by,
                                                       rejectedAt=iso(self._clock.now()), rejectionReason=reason),
                                       if_match=doc["_etag"])
        except PreconditionFailed:
            raise RequestNotPending(f"request {request_id!r} was decided by someone else just now") from None
        self._audit_both(doc, "approval.rejected", who, reason,
                         {"operatorId": operator_id, "credentialId": verified.credential_id})
        return view(saved)

    # --- the rules ----------------------------------------------------------------

    def _pending(self, request_id: str) -> dict[str, Any]:
        doc = self.get(request_id)
        if doc["status"] == "pending" and self._clock.now() >= parse_iso(doc["expiresAt"]):
            try:
                self._store.upsert(APPROVALS, dict(doc, status="expired"), if_match=doc["_etag"])
                self._audit_both(doc, "approval.expired", SYSTEM_ACTOR, None,
                                 {"approvals": [{"operatorId": a["operatorId"], "credentialId": a["credentialId"]}
                                                for a in doc.get("approvals") or []]})
            except PreconditionFailed:
                pass  # marked (or decided) by someone else just now
            raise ApprovalExpired(f"request {request_id!r} expired at {doc['expiresAt']}; request it again")
        if doc["status"] == "expired":
            raise ApprovalExpired(f"request {request_id!r} expired at {doc['expiresAt']}; request it again")
        if doc["status"] != "pending":
            raise RequestNotPending(f"request {request_id!r} is {doc['status']}, not pending")
        return doc

    def _signer(self, doc: dict[str, Any], who: HasActor,
                assertion: dict[str, Any]) -> tuple[str, list[Credential] | None]:
        """Whose key signed ``assertion``: the caller's operator, or (registration of a
        newcomer) the newcomer with the key being registered."""
        caller = self.operators.of_key(who.key_id)
        credential_id = assertion.get("id") if isinstance(assertion, dict) else None
        if not isinstance(credential_id, str) or not credential_id:
            raise CeremonyFailed("the assertion names no credential")
        if doc["action"] == OPERATOR_REGISTER and credential_id == doc["params"]["credential"]["credentialId"]:
            newcomer = doc["params"]["operatorId"]
            others = {o["id"] for o in self.operators.with_keys()} - {newcomer}
            if others != {doc["requestedBy"]["operatorId"]}:
                raise SelfApproval("a newcomer's own key approves their registration only while the sponsor is "
                                   "the region's only operator with a key: two operators must approve it")
            c = doc["params"]["credential"]
            return newcomer, [Credential(c["credentialId"], c["data"], c["aaguid"], int(c.get("signCount", 0)))]
        owner = self.operators.owner_of(credential_id)
        if owner != caller:
            raise CeremonyFailed("this security key is not registered to the operator of the calling API key")
        return caller, None

    def _admissible(self, doc: dict[str, Any], approver: str, credential_id: str) -> None:
        approvals = doc.get("approvals") or []
        if doc["action"] == CREDENTIAL_ADD and approver == doc["params"]["operatorId"]:
            raise SelfApproval("a new security key of an operator is approved by two other operators")
        if any(a["operatorId"] == approver for a in approvals):
            raise SelfApproval("this operator approved this request already: a second, different operator must")
        if any(a["credentialId"] == credential_id for a in approvals):
            raise SelfApproval("this security key approved this request already")
        requester = doc["requestedBy"]["operatorId"]
        if _requester_needed(doc) and approver != requester and \
                not any(a["operatorId"] == requester for a in approvals) and approvals:
            raise AwaitingRequester("a second operator approved already; the requester approves with their own key")

    def _audit_both(self, doc: dict[str, Any], action: str, who: HasActor, reason: str | None,
                    after: Any = None) -> None:
        target = f"request:{doc['id']}:{doc['action']}"
        self._audit.record(PLATFORM_CHAIN, action, who, target=target, after=after, reason=reason)
        if doc.get("tenantId"):
            self._audit.record(doc["tenantId"], action, who, target=target, after=after, reason=reason)


def _requester_needed(doc: dict[str, Any]) -> bool:
    return not (doc["action"] == CREDENTIAL_ADD and doc["requestedBy"]["operatorId"] == doc["params"]["operatorId"])


def _complete(doc: dict[str, Any], approvals: list[dict[str, Any]]) -> bool:
    """Two approvals, by different operators with different keys, the requester's among
    them (except where the act's rules say otherwise, see the module docstring)."""
    operators = {a["operatorId"] for a in approvals}
    credentials = {a["credentialId"] for a in approvals}
    if len(operators) < 2 or len(credentials) < len(approvals):
        return False
    if doc["action"] == CREDENTIAL_ADD and doc["params"]["operatorId"] in operators:
        return False
    return not _requester_needed(doc) or doc["requestedBy"]["operatorId"] in operators


def view(doc: dict[str, Any]) -> dict[str, Any]:
    shown = {k: v for k, v in doc.items() if not k.startswith("_") and k not in ("pk", "docType")}
    if "approvals" in doc and "params" in doc:
        shown["challenge"] = websafe_encode(challenge_for(content(doc)))
    return shown


def _storable(result: dict[str, Any]) -> dict[str, Any]:
    """What of an act's result may be stored and audited: never a secret."""
    return {k: v for k, v in result.items() if k not in ("apiKey", "secret", "adminKey")}
