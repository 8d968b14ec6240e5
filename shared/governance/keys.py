"""Issuing and revoking API keys: the one path the product uses (API, CLI, sandbox, acts).

``shared.app.auth.ApiKeys`` is only the credential store. Every key the product
issues or revokes goes through ``KeyAdministration``, which guarantees:

* **Exactly one audit record per act**, in the chain of the key's tenant
  (``_platform`` for platform-admin keys): ``apikey.created`` (role, label, and
  for platform-admin how it was allowed) or ``apikey.revoked``. The record of an
  issue is written *before* the key, under the key id chosen in advance: a crash
  between the two leaves a record of a key that never came to exist, never a key
  nobody recorded. A revoke is recorded after its ETag-guarded write, by the one
  caller whose write revoked the key, so two racing revokes leave one record;
  revoking a revoked key changes and records nothing.
* **Platform-admin keys under dual control.** With dual control on (the
  ``ACCRUE_DUAL_CONTROL`` setting, see ``shared.governance.dual_control``) a
  platform-admin key is issued only by the executor of an approved
  ``platform-admin.grant`` request (the store is asked, not the caller), with
  one exception: the **bootstrap**, the very first platform-admin key of a stack
  (none ever issued, revoked ones included). A marker document created once
  (``system`` container, ``platform-admin/bootstrap``) makes "very first" hold
  even for two operators bootstrapping at the same instant. The record says which
  of ``approval``, ``bootstrap`` or ``dualControl: off`` allowed the key.
* **Never without a platform-admin.** The last live platform-admin key cannot be
  revoked (``409 last-platform-admin``): after the bootstrap nothing could mint one.

Platform-admin keys belong to ``_platform`` whatever path issues them.
"""

from __future__ import annotations

from typing import Any

from shared.app.auth import KEY_PREFIX, ApiKeys, IssuedKey, Role, new_key_id
from shared.audit.log import PLATFORM_CHAIN, Actor, AuditLog, HasActor
from shared.clock import Clock, iso
from shared.errors import Conflict, DocumentExists
from shared.governance.dual_control import PLATFORM_ADMIN_GRANT, DualControl, DualControlRequired
from shared.store.layout import API_KEYS, SYSTEM
from shared.store.port import DocumentStore

BOOTSTRAP_PK = "platform-admin"
BOOTSTRAP_ID = "bootstrap"
BOOTSTRAP_REASON = "bootstrap: the very first platform-admin key of this stack, issued without a second operator"


class KeyAdministration:
    def __init__(self, keys: ApiKeys, audit: AuditLog, approvals: DualControl, store: DocumentStore,
                 clock: Clock) -> None:
        self._keys = keys
        self._audit = audit
        self._approvals = approvals
        self._store = store
        self._clock = clock

    # --- issuing ----------------------------------------------------------------------

    def issue(self, tenant_id: str, role: Role, who: HasActor | Actor | None, *, label: str = "",
              reason: str | None = None) -> IssuedKey:
        """A merchant, analyst or tenant-admin key of ``tenant_id``, recorded in its chain."""
        if role is Role.PLATFORM_ADMIN:
            raise DualControlRequired("a platform-admin key is granted through dual control "
                                      "(issue_platform_admin), never as a tenant's key")
        assert tenant_id and not tenant_id.startswith("_"), f"no tenant's keys live in chain {tenant_id!r}"
        return self._issue(tenant_id, role, who, label, reason, {})

    def issue_chosen(self, tenant_id: str, role: Role, who: HasActor | Actor | None, *, key_id: str, secret: str,
                     label: str = "", reason: str | None = None) -> IssuedKey:
        """``issue`` under an id and secret chosen in advance (tenant provisioning keeps them
        sealed), and idempotent: repeated after a crash at any point it completes the one
        record and the one key, never a second of either."""
        if role is Role.PLATFORM_ADMIN:
            raise DualControlRequired("a platform-admin key is granted through dual control, never as a tenant's key")
        assert tenant_id and not tenant_id.startswith("_"), f"no tenant's keys live in chain {tenant_id!r}"
        label = label[:100]
        actor = Actor.of(who)
        if not self._audit.has_record(tenant_id, "apikey.created", f"apikey:{key_id}"):
            self._audit.record(tenant_id, "apikey.created", actor, target=f"apikey:{key_id}",
                               after={"role": role.value, "label": label}, reason=reason)
        if self._store.read(API_KEYS, key_id, key_id) is None:
            try:
                self._keys.issue(tenant_id, role, created_by=actor.key_id, label=label, key_id=key_id, secret=secret)
            except DocumentExists:
                pass
        stored = self._store.read(API_KEYS, key_id, key_id)
        assert stored is not None and stored["tenantId"] == tenant_id, f"key {key_id} is not {tenant_id}'s"
        return IssuedKey(key_id, f"{KEY_PREFIX}_{key_id}_{secret}", tenant_id, role)

    def issue_platform_admin(self, who: HasActor | Actor | None, *, label: str, reason: str | None = None,
                             approval: str | None = None, operator_id: str | None = None,
                             approved_as: str = PLATFORM_ADMIN_GRANT) -> IssuedKey:
        """A platform-admin key: under an approved request (``approval``: its id, and it
        must be executing now), at the bootstrap, or with dual control off; otherwise
        ``DualControlRequired`` and nothing is written."""
        if approval is not None:
            request = self._approvals.executing(approval, approved_as)
            how: dict[str, Any] = {"approval": request["id"], "approvedBy": request["approvedBy"]["keyId"],
                                   "operators": [a["operatorId"] for a in request["approvals"]]}
        elif operator_id is not None and self._operator_bootstrap(operator_id):
            how, reason = {"operatorBootstrap": True}, "bootstrap: the first operator's platform-admin key" + (
                f"; {reason}" if reason else "")
        elif self._claim_bootstrap(who):
            how, reason = {"bootstrap": True}, BOOTSTRAP_REASON + (f"; {reason}" if reason else "")
        elif not self._approvals.enabled:
            how = {"dualControl": "off"}
        else:
            raise DualControlRequired(
                "dual control is on and this stack already has a platform-admin key: a new one needs a "
                "platform-admin.grant request approved by a second operator")
        if operator_id:
            how["operatorId"] = operator_id
        return self._issue(PLATFORM_CHAIN, Role.PLATFORM_ADMIN, who, label, reason, how, operator_id)

    def _operator_bootstrap(self, operator_id: str) -> bool:
        """True for the region's bootstrap operator (``shared.governance.operators``) while it
        holds no platform-admin key yet: read from the store, never the caller's word."""
        marker = self._store.read(SYSTEM, "operators", "bootstrap")
        if marker is None or marker.get("operatorId") != operator_id:
            return False
        return not self.operator_holds_key(operator_id)

    def operator_holds_key(self, operator_id: str) -> bool:
        """Whether a platform-admin key was ever issued to ``operator_id`` (revoked ones count)."""
        return any(k.get("operatorId") == operator_id for k in self._keys.list(PLATFORM_CHAIN))

    def _claim_bootstrap(self, who: HasActor | Actor | None) -> bool:
        """True once per stack: no platform-admin key was ever issued and this caller
        created the bootstrap marker (a concurrent second caller loses the create)."""
        if self._keys.any_of_tenant(PLATFORM_CHAIN):
            return False
        if self._store.read(SYSTEM, BOOTSTRAP_PK, BOOTSTRAP_ID) is not None:
            return False
        actor = Actor.of(who)
        try:
            self._store.create(SYSTEM, {"id": BOOTSTRAP_ID, "pk": BOOTSTRAP_PK, "docType": "platformAdminBootstrap",
                                        "at": iso(self._clock.now()), "by": actor.key_id})
        except DocumentExists:
            return False
        return True

    def _issue(self, tenant_id: str, role: Role, who: HasActor | Actor | None, label: str, reason: str | None,
               how: dict[str, Any], operator_id: str | None = None) -> IssuedKey:
        label = label[:100]
        key_id = new_key_id()
        actor = Actor.of(who)
        # Recorded first: a key never exists without its record (see the module docstring).
        self._audit.record(tenant_id, "apikey.created", actor, target=f"apikey:{key_id}",
                           after={"role": role.value, "label": label, **how}, reason=reason)
        issued = self._keys.issue(tenant_id, role, created_by=actor.key_id, label=label, key_id=key_id,
                                  operator_id=operator_id)
        assert issued.key_id == key_id and issued.role is role
        return issued

    # --- revoking ---------------------------------------------------------------------

    def revoke(self, tenant_id: str, key_id: str, who: HasActor | Actor | None, *,
               reason: str | None = None) -> dict[str, Any]:
        """Revoke a key of ``tenant_id`` (``_platform`` for a platform-admin key); the
        caller whose write revoked it records ``apikey.revoked``. ``NotFound`` if the
        tenant has no such key."""
        actor = Actor.of(who)
        if tenant_id == PLATFORM_CHAIN:
            self._keep_one_platform_admin(key_id)
        view, revoked = self._keys.revoke_if_live(tenant_id, key_id, revoked_by=actor.key_id)
        if revoked:
            self._audit.record(tenant_id, "apikey.revoked", actor, target=f"apikey:{key_id}",
                               before={"revokedAt": None, "role": view["role"]},
                               after={"revokedAt": view["revokedAt"]}, reason=reason)
        elif view.get("revokedAt"):
            # Revoked before: by a first attempt that may have died before its record.
            self._audit.record_if_lost(tenant_id, ("apikey.revoked",), "apikey.revoked", actor,
                                       target=f"apikey:{key_id}", since=view["revokedAt"],
                                       before={"revokedAt": None, "role": view["role"]},
                                       after={"revokedAt": view["revokedAt"]}, reason=reason)
        return view

    def _keep_one_platform_admin(self, key_id: str) -> None:
        """Never revoke the last live platform-admin key: the bootstrap happens once, so a
        stack without one could never grant another (nor create a tenant). Two operators
        revoking the last two keys at the same instant can still both succeed; then only
        the embedded store's ``ACCRUE_DUAL_CONTROL=off`` recovers."""
        live = {k["keyId"] for k in self._keys.list(PLATFORM_CHAIN) if not k.get("revokedAt")}
        if live == {key_id}:
            raise LastPlatformAdmin("this is the last live platform-admin key: grant another one "
                                    "(dual control) before revoking it")


class LastPlatformAdmin(Conflict):
    code = "last-platform-admin"
