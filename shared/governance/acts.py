"""What each dual-controlled act does once approved (wired by the composition root)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.audit.log import HasActor
from shared.errors import NotFound
from shared.store.layout import CUSTOMERS, TENANTS
from shared.store.port import Filter, Query

# In a deleted tenant's partition of the tenants container: its id is retired.
TOMBSTONE_ID = "tombstone"

if TYPE_CHECKING:
    from shared.platform import Platform


def executors(platform: "Platform") -> dict[str, Any]:
    def rotate_kek(request: dict[str, Any], who: HasActor) -> dict[str, Any]:
        tenant_id = _existing_tenant(platform, request)
        version = platform.key_provider.rotate(tenant_id)
        moved = platform.vault.rewrap_tenant(tenant_id)
        platform.audit.record(tenant_id, "tenant.kek.rotated", who, target=f"tenant:{tenant_id}",
                              after={"keyVersion": version, "dataKeysRewrapped": moved}, reason=request["reason"])
        return {"tenantId": tenant_id, "keyVersion": version, "dataKeysRewrapped": moved}

    def grant_platform_admin(request: dict[str, Any], who: HasActor) -> dict[str, Any]:
        label = str(request.get("params", {}).get("label", ""))[:100]
        issued = platform.key_admin.issue_platform_admin(who, label=label, reason=request["reason"],
                                                         approval=request["id"])
        return {"keyId": issued.key_id, "apiKey": issued.secret_key, "role": issued.role.value}

    def delete_tenant(request: dict[str, Any], who: HasActor) -> dict[str, Any]:
        """Revoke every key, crypto-shred every customer's personal data, drop the settings.

        The ledger is append-only and stays (by customer id, without personal data)."""
        tenant_id = _existing_tenant(platform, request)
        revoked = 0
        for key in platform.keys.list(tenant_id):
            if not key.get("revokedAt"):
                platform.key_admin.revoke(tenant_id, key["keyId"], who, reason="tenant deleted")
                revoked += 1
        erased, after = 0, None
        while True:
            filters = [Filter("tenantId", "=", tenant_id)] + ([Filter("customerId", ">", after)] if after else [])
            page = platform.store.query(CUSTOMERS, Query(pk=None, filters=tuple(filters), order_by="customerId",
                                                         limit=500))
            for doc in page:
                if not doc.get("erasedAt"):
                    platform.erasures.erase(tenant_id, doc["customerId"], who, reason="tenant deleted", defer=True)
                    erased += 1
            if len(page) < 500:
                break
            after = page[-1]["customerId"]
        # The copies (store files, exports, webhooks) of all of them at once: one export scan
        # and one checkpoint per page; what does not complete now, the erasures job does.
        platform.erasures.run_pending()
        endpoints_disabled = 0
        for endpoint in platform.webhooks.list(tenant_id):
            if endpoint.get("status") != "disabled":
                platform.webhooks.disable(tenant_id, endpoint["id"], "tenant deleted")
                endpoints_disabled += 1
        # The id is never given out again: a new tenant under it would inherit the old
        # ledger, audit chain and export state, which stay for retention.
        platform.store.upsert(TENANTS, {"id": TOMBSTONE_ID, "pk": tenant_id, "docType": "tenant-tombstone",
                                        "tenantId": tenant_id, "deletedBy": who.key_id})
        platform.store.delete(TENANTS, tenant_id, tenant_id)
        platform.tenants.cache.invalidate(tenant_id)
        platform.audit.record(tenant_id, "tenant.deleted", who, target=f"tenant:{tenant_id}",
                              after={"keysRevoked": revoked, "customersErased": erased,
                                     "webhookEndpointsDisabled": endpoints_disabled}, reason=request["reason"])
        return {"tenantId": tenant_id, "keysRevoked": revoked, "customersErased": erased,
                "webhookEndpointsDisabled": endpoints_disabled}

    return {"tenant.kek.rotate": rotate_kek, "platform-admin.grant": grant_platform_admin,
            "tenant.delete": delete_tenant}


def _existing_tenant(platform: "Platform", request: dict[str, Any]) -> str:
    tenant_id = request.get("tenantId")
    if not tenant_id or not platform.tenants.exists(tenant_id):
        raise NotFound(f"tenant {tenant_id!r} does not exist")
    return tenant_id
