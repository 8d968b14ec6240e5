"""What each dual-controlled act does once approved by two operators (wired by the
composition root; the rules of approval are ``shared.governance.dual_control``'s).

Each executor runs once per request (the dual-control executor's guarantee) and
acts with the request's own stored parameters, never the caller's: what the
operators signed is what runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.app.auth import Role
from shared.audit.log import PLATFORM_CHAIN, HasActor
from shared.errors import Conflict, NotFound
from shared.governance.dual_control import OPERATOR_REGISTER
from shared.store.layout import CUSTOMERS, TENANTS
from shared.store.port import Delete, Filter, Query, Upsert

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
        # ledger, audit chain and export state, which stay for retention. Tombstone and
        # settings share the tenant's partition: one batch, so a crash never leaves a
        # tombstoned tenant that still exists, nor a deleted one without its tombstone.
        platform.store.batch(TENANTS, tenant_id, [
            Upsert({"id": TOMBSTONE_ID, "pk": tenant_id, "docType": "tenant-tombstone", "tenantId": tenant_id,
                    "deletedBy": who.key_id}),
            Delete(tenant_id)])
        platform.tenants.cache.invalidate(tenant_id)
        platform.audit.record(tenant_id, "tenant.deleted", who, target=f"tenant:{tenant_id}",
                              after={"keysRevoked": revoked, "customersErased": erased,
                                     "webhookEndpointsDisabled": endpoints_disabled}, reason=request["reason"])
        return {"tenantId": tenant_id, "keysRevoked": revoked, "customersErased": erased,
                "webhookEndpointsDisabled": endpoints_disabled}

    def create_tenant(request: dict[str, Any], who: HasActor) -> dict[str, Any]:
        from shared.domain.tenants import TenantSettings

        settings = TenantSettings.model_validate(request["params"]["settings"])
        assert settings.tenant_id == request["tenantId"], "the signed tenant id is the provisioned one"
        done = platform.provisioning.provision(settings, who)
        return done.answer()

    def issue_tenant_admin(request: dict[str, Any], who: HasActor) -> dict[str, Any]:
        tenant_id = _existing_tenant(platform, request)
        issued = platform.key_admin.issue(tenant_id, Role.TENANT_ADMIN, who,
                                          label=str(request["params"].get("label", "")),
                                          reason=f"{request['reason']} (approval {request['id']})")
        return {"tenantId": tenant_id, "keyId": issued.key_id, "apiKey": issued.secret_key,
                "role": issued.role.value}

    def revoke_tenant_key(request: dict[str, Any], who: HasActor) -> dict[str, Any]:
        tenant_id = _existing_tenant(platform, request)
        key = platform.key_admin.revoke(tenant_id, request["params"]["keyId"], who, reason=request["reason"])
        return {"tenantId": tenant_id, "keyId": key["keyId"], "revokedAt": key["revokedAt"]}

    def grant_platform_admin(request: dict[str, Any], who: HasActor) -> dict[str, Any]:
        params = request.get("params", {})
        operator = platform.operators.active(str(params.get("operatorId", "")))
        label = str(params.get("label") or operator["name"])[:100]
        issued = platform.key_admin.issue_platform_admin(who, label=label, reason=request["reason"],
                                                         approval=request["id"], operator_id=operator["id"])
        return {"keyId": issued.key_id, "apiKey": issued.secret_key, "role": issued.role.value,
                "operatorId": operator["id"]}

    def revoke_platform_admin(request: dict[str, Any], who: HasActor) -> dict[str, Any]:
        key = platform.key_admin.revoke(PLATFORM_CHAIN, request["params"]["keyId"], who, reason=request["reason"])
        return {"keyId": key["keyId"], "revokedAt": key["revokedAt"]}

    def register_operator(request: dict[str, Any], who: HasActor) -> dict[str, Any]:
        params = request["params"]
        operator = platform.operators.create_with_key(params["operatorId"], params["name"], params["credential"])
        issued = platform.key_admin.issue_platform_admin(who, label=operator["name"], reason=request["reason"],
                                                         approval=request["id"], operator_id=operator["id"],
                                                         approved_as=OPERATOR_REGISTER)
        platform.audit.record(PLATFORM_CHAIN, "operator.registered", who, target=f"operator:{operator['id']}",
                              after={"operatorId": operator["id"], "name": operator["name"],
                                     "credentialId": params["credential"]["credentialId"],
                                     "aaguid": params["credential"]["aaguid"], "keyId": issued.key_id},
                              reason=request["reason"])
        return {"operatorId": operator["id"], "keyId": issued.key_id, "apiKey": issued.secret_key}

    def remove_operator(request: dict[str, Any], who: HasActor) -> dict[str, Any]:
        operator_id = request["params"]["operatorId"]
        remaining = {o["id"] for o in platform.operators.with_keys()} - {operator_id}
        if len(remaining) < 2:
            raise Conflict("removing this operator would leave fewer than two operators with a security key: "
                           "no act could be approved any more")
        platform.operators.remove(operator_id)
        revoked = []
        for key in platform.keys.list(PLATFORM_CHAIN):
            if key.get("operatorId") == operator_id and not key.get("revokedAt"):
                platform.key_admin.revoke(PLATFORM_CHAIN, key["keyId"], who, reason=request["reason"])
                revoked.append(key["keyId"])
        platform.audit.record(PLATFORM_CHAIN, "operator.removed", who, target=f"operator:{operator_id}",
                              after={"operatorId": operator_id, "keysRevoked": revoked}, reason=request["reason"])
        return {"operatorId": operator_id, "keysRevoked": revoked}

    def add_credential(request: dict[str, Any], who: HasActor) -> dict[str, Any]:
        params = request["params"]
        platform.operators.add_credential(params["operatorId"], params["credential"])
        platform.audit.record(PLATFORM_CHAIN, "operator.credential.added", who,
                              target=f"operator:{params['operatorId']}",
                              after={"operatorId": params["operatorId"],
                                     "credentialId": params["credential"]["credentialId"],
                                     "aaguid": params["credential"]["aaguid"]}, reason=request["reason"])
        return {"operatorId": params["operatorId"], "credentialId": params["credential"]["credentialId"]}

    def remove_credential(request: dict[str, Any], who: HasActor) -> dict[str, Any]:
        params = request["params"]
        platform.operators.remove_credential(params["operatorId"], params["credentialId"])
        platform.audit.record(PLATFORM_CHAIN, "operator.credential.removed", who,
                              target=f"operator:{params['operatorId']}",
                              after={"operatorId": params["operatorId"], "credentialId": params["credentialId"]},
                              reason=request["reason"])
        return {"operatorId": params["operatorId"], "credentialId": params["credentialId"]}

    def save_partner(request: dict[str, Any], who: HasActor) -> dict[str, Any]:
        from shared.spend.partners import PartnerConfig

        partner_id = request["params"]["partnerId"]
        saved = platform.spend.partners.save(partner_id, PartnerConfig.model_validate(request["params"]["config"]),
                                             who.key_id)
        if saved.changed:
            platform.audit.record(PLATFORM_CHAIN, "partner.saved", who, target=f"partner:{partner_id}",
                                  before=saved.before, after=saved.after)
        return {"partnerId": partner_id, "partner": saved.after}

    def set_policy(request: dict[str, Any], who: HasActor) -> dict[str, Any]:
        before = platform.approvals.policy()
        after = platform.approvals.set_policy(int(request["params"]["ttlMinutes"]))
        platform.audit.record(PLATFORM_CHAIN, "dual-control.policy.changed", who, target="dual-control:policy",
                              before=before, after=after, reason=request["reason"])
        return after

    return {"tenant.create": create_tenant, "tenant.delete": delete_tenant, "tenant.kek.rotate": rotate_kek,
            "tenant-admin.issue": issue_tenant_admin, "tenant-key.revoke": revoke_tenant_key,
            "platform-admin.grant": grant_platform_admin, "platform-admin.revoke": revoke_platform_admin,
            "operator.register": register_operator, "operator.remove": remove_operator,
            "credential.add": add_credential, "credential.remove": remove_credential,
            "partner.save": save_partner, "dual-control.policy": set_policy}


def _existing_tenant(platform: "Platform", request: dict[str, Any]) -> str:
    tenant_id = request.get("tenantId")
    if not tenant_id or not platform.tenants.exists(tenant_id):
        raise NotFound(f"tenant {tenant_id!r} does not exist")
    return tenant_id
