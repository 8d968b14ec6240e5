"""The local first start provisions its sandbox through tenant provisioning (the code
path of POST /v1/tenants with sandbox: true), once; a start after a first start that
crashed halfway completes it."""

from __future__ import annotations

import pytest

from shared.app import sample_data
from shared.app.auth import Role
from shared.app.provisioning import PK, record_id
from shared.local.sandbox import SANDBOX, provision_sandbox
from shared.store.layout import SYSTEM


def test_the_first_start_provisions_a_marked_sandbox_once(platform) -> None:
    made = provision_sandbox(platform)
    assert made is not None
    assert [k.role for k in made.keys] == [Role.MERCHANT, Role.TENANT_ADMIN, Role.PLATFORM_ADMIN]
    assert platform.tenants.get(SANDBOX).sandbox
    assert platform.store.read(SYSTEM, PK, record_id(SANDBOX))["status"] == "done"
    assert platform.rule_sets.active(SANDBOX).rule_set_id == sample_data.RULE_SET_ID
    assert platform.keys.verify(made.keys[1].secret_key).tenant_id == SANDBOX
    assert provision_sandbox(platform) is None  # the next start changes nothing


def test_a_first_start_that_crashed_halfway_is_completed_by_the_next(platform) -> None:
    class Crash(Exception):
        pass

    def crash(step: str) -> None:
        if step == "tenant":
            raise Crash(step)

    platform.provisioning.after_step = crash
    with pytest.raises(Crash):
        provision_sandbox(platform)
    platform.provisioning.after_step = lambda step: None
    made = provision_sandbox(platform)
    assert made is not None and platform.tenants.get(SANDBOX).sandbox
    assert len(platform.keys.list(SANDBOX)) == 2  # the first admin key and the merchant key, once each
