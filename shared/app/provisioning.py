"""Tenant provisioning: all or nothing, idempotent, on Azure as on the embedded default.

``POST /v1/tenants`` (and the local first start's sandbox) creates, in this order:

1. the tenant's key-encryption key (``KeyProvider.ensure_tenant_key``: on Azure the
   key-manager identity creates it, or recovers a soft-deleted key of that name);
2. the first tenant-admin key's secret, chosen once and kept *sealed* under that KEK
   in the provisioning record (so a retry can answer with the same key; the secret
   never rests in the clear);
3. the tenant's settings document;
4. its first tenant-admin key (``apikey.created`` recorded before the key, as
   ``shared.governance.keys`` guarantees for every key), under the chosen id;
5. for a sandbox, the sample data (``shared.app.sample_data``);
6. the audit records ``tenant.kek.created`` and ``tenant.created``;

and then marks the record ``done`` with the answer (without the secret, which stays
sealed). Each step first looks whether it already happened, so any step may fail
(a 403 or an outage of the vault, a crash) and a **retry of the same request
completes it**, or **replays the first answer** once it is done. Nothing of a
tenant is written before its key exists: a vault that refuses answers 503 with no
tenant, no key and a record that a retry resumes.

**The provisioning record** (``system`` container, partition ``tenant-provisioning``,
id ``tenant-provisioning:<tenantId>``) keeps the SHA-256 of the canonical request, the
admin key id chosen in advance, the sealed secret, the progress and the first
outcome. It answers for ``RECORD_LIFETIME`` (24 h, ``expiresAt``); after that a repeat
is an ordinary 409, as a request for an existing tenant always is, and the first look
at the expired record drops its sealed secret (the record itself stays, small, as the
tenant's provisioning history). A *different* request for the same tenant
id is 409 ``tenant-provisioning-conflict`` at any time.

**One executor at a time.** The record carries a lease (``leaseUntil``, ETag-guarded):
concurrent identical requests wait for the holder and then replay its answer, so
there is one tenant, one admin key and one record of each kind however many race.
A holder that crashed loses its lease after ``LEASE`` and the next retry takes over;
one that failed with an error releases it at once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable

from shared.app.auth import KEY_PREFIX, IssuedKey, Role, new_key_id
from shared.audit.log import Actor, HasActor
from shared.clock import iso, parse_iso
from shared.domain.tenants import TenantSettings
from shared.errors import AccrueError, Conflict, DocumentExists, PreconditionFailed
from shared.governance.acts import TOMBSTONE_ID
from shared.rules.sealing import KeyProviderSealer
from shared.store.layout import SYSTEM, TENANTS
from shared.telemetry.logs import fields

if TYPE_CHECKING:
    from shared.platform import Platform

log = logging.getLogger("accrue.provisioning")

PK = "tenant-provisioning"
RECORD_LIFETIME = timedelta(hours=24)
LEASE = timedelta(seconds=30)
WAIT_SECONDS = 45.0  # how long a concurrent identical request waits for the holder


class ProvisioningConflict(Conflict):
    """Another, different request already provisions (or provisioned) this tenant id."""

    code = "tenant-provisioning-conflict"


class ProvisioningBusy(AccrueError):
    """An identical request is still running; retry shortly (its answer will be replayed)."""

    code = "tenant-provisioning-in-progress"
    status = 409


class _AdminSecretSealer(KeyProviderSealer):
    """The first admin key's secret, sealed under the tenant's KEK; bound to its own purpose."""

    @staticmethod
    def _aad(tenant_id: str) -> bytes:
        return f"accrue-first-admin-key/v1|{tenant_id}".encode()


@dataclass(frozen=True)
class Provisioned:
    tenant: dict[str, Any]
    admin_key: IssuedKey
    kek_version: str
    replayed: bool

    def answer(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "adminKey": {"keyId": self.admin_key.key_id,
                                                    "apiKey": self.admin_key.secret_key}}


def record_id(tenant_id: str) -> str:
    return f"{PK}:{tenant_id}"


def request_hash(request: dict[str, Any]) -> str:
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _view(settings: TenantSettings) -> dict[str, Any]:
    return settings.model_dump(mode="json", by_alias=True)


# Test seam: called with a step's name after that step; a test raises there to stand
# in for a crash or an outage at that point, then retries.
StepHook = Callable[[str], None]


class TenantProvisioning:
    def __init__(self, platform: "Platform", seed: Callable[["Platform", str, HasActor | Actor | None], Any]
                 | None = None) -> None:
        self._p = platform
        self._sealer = _AdminSecretSealer(platform.key_provider)
        self._seed = seed
        self.after_step: StepHook = lambda step: None

    # --- the entry point -------------------------------------------------------------

    def provision(self, settings: TenantSettings, who: HasActor | Actor | None,
                  request: dict[str, Any] | None = None) -> Provisioned:
        """Provision ``settings.tenant_id`` (see the module docstring). ``request`` is what
        is hashed to tell a retry from another request; default: the settings with every
        default filled in, so the API and the local first start hash alike."""
        tenant_id = settings.tenant_id
        digest = request_hash(request if request is not None else _view(settings))
        record, owner = self._claim(tenant_id, digest, who)
        if record.get("status") == "done":
            return self._replay(record)
        try:
            done = self._run(record, owner, settings, who)
        except BaseException:
            self._release(tenant_id, owner)
            raise
        return done

    # --- the record and its lease -------------------------------------------------------

    def _claim(self, tenant_id: str, digest: str, who: HasActor | Actor | None) -> tuple[dict[str, Any], str]:
        """The record, leased to this call (or done: nothing to lease)."""
        store, clock = self._p.store, self._p.clock
        owner = uuid.uuid4().hex
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            now = clock.now()
            record = self._live_record(tenant_id)
            if record is None:
                self._refuse_existing(tenant_id)
                doc = {"id": record_id(tenant_id), "pk": PK, "docType": "tenantProvisioning",
                       "tenantId": tenant_id, "requestHash": digest, "status": "started",
                       "adminKeyId": new_key_id(), "by": Actor.of(who).key_id, "createdAt": iso(now),
                       "expiresAt": iso(now + RECORD_LIFETIME),
                       "leaseOwner": owner, "leaseUntil": iso(now + LEASE)}
                try:
                    return store.create(SYSTEM, doc), owner
                except DocumentExists:
                    continue  # a concurrent first request won: look at its record
            if record["requestHash"] != digest:
                raise ProvisioningConflict(
                    f"tenant {tenant_id!r} is being or was provisioned by a different request; "
                    "repeat that request exactly to get its answer, or choose another tenant id")
            if record["status"] == "done":
                return record, owner
            if record.get("leaseOwner") and parse_iso(record["leaseUntil"]) > now:
                if time.monotonic() > deadline:
                    raise ProvisioningBusy(f"tenant {tenant_id!r} is being provisioned by an identical request; "
                                           "retry shortly to get its answer")
                time.sleep(0.05)
                continue
            taken = {**record, "leaseOwner": owner, "leaseUntil": iso(now + LEASE)}
            try:
                return store.upsert(SYSTEM, taken, if_match=record["_etag"]), owner
            except PreconditionFailed:
                continue

    def _live_record(self, tenant_id: str) -> dict[str, Any] | None:
        record = self._p.store.read(SYSTEM, PK, record_id(tenant_id))
        if record is None:
            return None
        if record["status"] == "done" and parse_iso(record["expiresAt"]) <= self._p.clock.now():
            # Past its lifetime: a repeat is an ordinary request for an existing tenant, and
            # the admin key's secret is no longer kept, even sealed.
            if record.get("sealedSecret"):
                try:
                    self._p.store.upsert(SYSTEM, {**record, "sealedSecret": None}, if_match=record["_etag"])
                except PreconditionFailed:
                    pass  # another caller dropped it
            return None
        return record

    def _refuse_existing(self, tenant_id: str) -> None:
        store = self._p.store
        if store.read(TENANTS, tenant_id, TOMBSTONE_ID) is not None:
            raise Conflict(f"tenant id {tenant_id!r} belonged to a deleted tenant and is never reused; "
                           "choose another")
        if self._p.tenants.exists(tenant_id):
            raise Conflict(f"tenant {tenant_id!r} already exists")

    def _update(self, record: dict[str, Any], owner: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Write progress under the lease: an ETag-guarded write that fails if another call
        took the record over (then this one stops rather than act twice)."""
        assert record.get("leaseOwner") == owner, "progress is written only under this call's lease"
        now = self._p.clock.now()
        try:
            return self._p.store.upsert(SYSTEM, {**record, **changes, "leaseUntil": iso(now + LEASE)},
                                        if_match=record["_etag"])
        except PreconditionFailed:
            raise ProvisioningBusy(f"tenant {record['tenantId']!r}: another call took over its provisioning; "
                                   "retry to get its answer") from None

    def _release(self, tenant_id: str, owner: str) -> None:
        try:
            record = self._p.store.read(SYSTEM, PK, record_id(tenant_id))
            if record is not None and record.get("leaseOwner") == owner and record["status"] != "done":
                self._p.store.upsert(SYSTEM, {**record, "leaseOwner": None, "leaseUntil": None},
                                     if_match=record["_etag"])
        except Exception:  # the lease then simply expires
            log.warning("could not release the provisioning lease of tenant %s", tenant_id, exc_info=True, extra=fields(tenant=tenant_id))

    # --- the steps ----------------------------------------------------------------------

    def _run(self, record: dict[str, Any], owner: str, settings: TenantSettings,
             who: HasActor | Actor | None) -> Provisioned:
        p = self._p
        tenant_id = settings.tenant_id
        key_id = record["adminKeyId"]

        # 1. Keys first: a vault that refuses leaves nothing of the tenant behind.
        kek_version = p.key_provider.ensure_tenant_key(tenant_id)
        self.after_step("kek")

        # 2. The first admin key's secret, chosen once and sealed under the new KEK.
        if not record.get("sealedSecret"):
            secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
            record = self._update(record, owner, {"sealedSecret": self._sealer.seal(tenant_id, secret.encode())})
        secret = self._sealer.unseal(tenant_id, record["sealedSecret"]).decode()
        self.after_step("secret")

        # 3. The tenant.
        try:
            p.tenants.create(settings)
        except Conflict:
            # Ours from an earlier attempt of this very request, or nothing we may touch.
            if _view(p.tenants.get(tenant_id)) != _view(settings):
                raise Conflict(f"tenant {tenant_id!r} exists with other settings") from None
        self.after_step("tenant")

        # 4. Its first tenant-admin key, under the id and secret chosen in advance.
        issued = p.key_admin.issue_chosen(tenant_id, Role.TENANT_ADMIN, who, key_id=key_id, secret=secret,
                                          label="first admin")
        self.after_step("admin-key")

        # 5. A sandbox's sample data (each part idempotent on its own ids).
        if settings.sandbox and self._seed is not None:
            self._seed(p, tenant_id, who)
            self.after_step("sample-data")

        # 6. The audit records of the tenant and its key.
        target = f"tenant:{tenant_id}"
        if not p.audit.has_record(tenant_id, "tenant.kek.created", target):
            p.audit.record(tenant_id, "tenant.kek.created", who, target=target, after={"keyVersion": kek_version})
        if not p.audit.has_record(tenant_id, "tenant.created", target):
            p.audit.record(tenant_id, "tenant.created", who, target=target, after=_view(settings))
        self.after_step("audit")

        record = self._update(record, owner, {
            "status": "done", "completedAt": iso(p.clock.now()), "leaseOwner": None,
            "outcome": {"tenant": _view(settings), "adminKeyId": key_id, "kekVersion": kek_version}})
        return Provisioned(_view(settings), issued, kek_version, replayed=False)

    def _replay(self, record: dict[str, Any]) -> Provisioned:
        tenant_id, outcome = record["tenantId"], record["outcome"]
        secret = self._sealer.unseal(tenant_id, record["sealedSecret"]).decode()
        key_id = outcome["adminKeyId"]
        issued = IssuedKey(key_id, f"{KEY_PREFIX}_{key_id}_{secret}", tenant_id, Role.TENANT_ADMIN)
        return Provisioned(outcome["tenant"], issued, outcome["kekVersion"], replayed=True)
