"""The sandbox tenant provisioned on the first start of the local platform.

The very code path of ``POST /v1/tenants`` with ``sandbox: true``
(``shared.app.provisioning`` and ``shared.app.sample_data``): the KEK, the tenant
marked ``sandbox``, its first tenant-admin key, sample customers, an active rule
set, a reward catalogue served by the partner simulator, and sample orders. Then,
for the local walkthrough, a merchant key and the region's bootstrap operator
(``shared.governance.bootstrap``) with its platform-admin key: the first start is
the local region's bootstrap, the one single-operator act, and provisions the
sandbox as part of it (no operator exists yet to approve anything). The operator
registers its security key at ``/operator``; every later platform act needs two.

Idempotent: a start that finds the sandbox provisioned changes nothing (its keys
were printed once, at creation, and are stored only as Argon2id hashes); a start
after a first start that crashed halfway completes the provisioning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from shared.app import sample_data
from shared.app.auth import IssuedKey, Role
from shared.app.provisioning import PK, record_id
from shared.domain.tenants import TenantSettings
from shared.governance.bootstrap import bootstrap_operator
from shared.governance.dual_control import DualControlRequired
from shared.governance.operators import AlreadyBootstrapped
from shared.platform import Platform
from shared.store.layout import SYSTEM
from shared.telemetry.logs import fields

log = logging.getLogger("accrue.sandbox")

SANDBOX = "sandbox"
PLATFORM_TENANT = "_platform"
SETTINGS = TenantSettings(tenantId=SANDBOX, name="Sandbox Coffee Co.", currency="EUR", timeZone="Europe/Paris",
                          pointsPerUnit=Decimal(10), sandbox=True)


@dataclass
class Provisioned:
    keys: list[IssuedKey]
    customers: list[str]
    orders: list[str]


def provision_sandbox(platform: Platform) -> Provisioned | None:
    record = platform.store.read(SYSTEM, PK, record_id(SANDBOX))
    if (record is not None and record.get("status") == "done") or (record is None and platform.tenants.exists(SANDBOX)):
        return None  # provisioned by an earlier start (or, before provisioning records, by an older version)
    done = platform.provisioning.provision(SETTINGS, None)
    keys = [platform.key_admin.issue(SANDBOX, Role.MERCHANT, None, label="sandbox merchant"), done.admin_key]
    # The region's bootstrap operator (recorded as such); if an operator bootstrapped the
    # region with the CLI already, there is no second bootstrap.
    try:
        keys.append(bootstrap_operator(platform, "local operator", None).key)
    except (AlreadyBootstrapped, DualControlRequired):
        log.warning("this region has its first operator already: the sandbox bootstraps none", extra=fields())
    customers = [f"cust-{n:03d}" for n in range(1, len(sample_data.CUSTOMER_TAGS) + 1)]
    orders = [f"sample-{n:04d}" for n in range(1, sample_data.ORDERS + 1)]
    return Provisioned(keys=keys, customers=customers, orders=orders)
