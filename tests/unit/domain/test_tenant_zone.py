"""A tenant's time zone is an IANA zone by its name, or a clear 422: never a 500, never a zone
that means something else on each machine. (An outside review sent ``America``: ZoneInfo
raised IsADirectoryError, an internal error; ``localtime`` was accepted: the host's zone.)"""

from __future__ import annotations

from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import given, settings, strategies as st
from pydantic import ValidationError

from shared.domain.tenants import TenantSettings
from tests.conftest import auth

HOSTILE = ["America", "Etc", "Europe/", "localtime", "Factory", "posixrules", "right/UTC", "posix/Europe/Paris",
           "../../etc/passwd", "/etc/localtime", "Europe/Paris\x00", "Mars/Olympus", "", " UTC", "utc"]


@pytest.mark.parametrize("zone", HOSTILE)
def test_a_name_that_is_not_a_zone_is_a_422_and_changes_nothing(client, platform, tenant, zone: str) -> None:
    before = platform.tenants.get("acme")
    answer = client.patch("/v1/tenant", json={"timeZone": zone}, headers=auth(tenant.admin))
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert platform.tenants.get("acme") == before


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40), st.sampled_from(sorted(available_timezones()) + HOSTILE)))
def test_any_text_is_a_zone_of_the_database_or_a_validation_error(zone: str) -> None:
    try:
        settings_ = TenantSettings(tenantId="t1", name="n", timeZone=zone)
    except ValidationError:
        return
    assert zone in available_timezones() and zone not in ("localtime", "Factory")
    ZoneInfo(settings_.time_zone)


def test_every_zone_of_the_database_is_accepted() -> None:
    for zone in sorted(available_timezones() - {"localtime", "Factory"}):
        assert TenantSettings(tenantId="t1", name="n", timeZone=zone).time_zone == zone
