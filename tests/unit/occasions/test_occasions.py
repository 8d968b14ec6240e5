"""Birthday and anniversary rewards (shared/occasions): the daily run reads only the
customers due (never a sealed birth date), awards once a year under any number of
runs, in the tenant's time zone, with the 29 February rule; erasure removes the
birthday entry; and (property) a year of daily runs awards each customer exactly once."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from shared.app.customers import CustomerProfile
from shared.clock import ManualClock
from shared.errors import Conflict
from shared.jobs import BY_NAME, run_job, work_items
from shared.occasions.service import OccasionSettings, index_pk, month_days_due
from shared.store.layout import CUSTOMERS, PII_INDEX
from shared.store.port import Filter, Query
from tests.conftest import make_tenant


def _register(platform, tenant_id: str, customer_id: str, birth: str | None, joined: str = "2020-05-05") -> None:
    extra = {"birthDate": birth} if birth else {}
    platform.customers.register(tenant_id, CustomerProfile(customerId=customer_id, joinDate=joined, **extra))


def _set_day(clock: ManualClock, moment: datetime) -> None:
    clock.advance(moment - clock.now())


def _awards(platform, tenant_id: str, customer_id: str, occasion: str) -> list[dict]:
    return [e for e in platform.ledger.entries(tenant_id, customer_id, limit=1000)
            if (e.get("attributes") or {}).get("occasion") == occasion]


class CountingStore:
    """Counts the customer profiles read during a run; opening an envelope fails the test."""

    def __init__(self) -> None:
        self.profiles = 0

    def wrap(self, platform, monkeypatch) -> None:
        import shared.occasions.service as occasions_module

        original = occasions_module.read_many

        def counting(store, container, keys):
            if container == CUSTOMERS:
                self.profiles += len(keys)
            return original(store, container, keys)

        monkeypatch.setattr(occasions_module, "read_many", counting)
        monkeypatch.setattr(platform.vault, "open", lambda doc: (_ for _ in ()).throw(AssertionError("decrypted")))


def test_the_daily_run_touches_only_the_customers_due(platform, clock, monkeypatch) -> None:
    make_tenant(platform, "acme")
    platform.occasions.save_settings("acme", OccasionSettings(birthdayPoints=100, anniversaryPoints=50))
    for n in range(60):  # birthdays spread over the year; three on 3 December
        _register(platform, "acme", f"c{n}", f"1990-{1 + n % 12:02d}-{1 + n % 28:02d}", joined="2021-01-15")
    for n in range(3):
        _register(platform, "acme", f"due{n}", "1985-12-03", joined="2022-12-03")
    _set_day(clock, datetime(2026, 12, 3, 9, 0, tzinfo=timezone.utc))
    counter = CountingStore()
    counter.wrap(platform, monkeypatch)
    result = platform.occasions.run_tenant("acme")
    assert result["done"] and result["awarded"] == 6  # three birthdays, three anniversaries
    assert counter.profiles == 6  # the due customers' profiles (3 per occasion), nobody else's
    for n in range(3):
        assert platform.ledger.head("acme", f"due{n}").balance == 150
    assert platform.ledger.head("acme", "c0").balance == 0


def test_once_a_year_under_redelivery_and_in_the_tenant_time_zone(platform, clock) -> None:
    make_tenant(platform, "acme")  # Europe/Paris
    platform.occasions.save_settings("acme", OccasionSettings(birthdayPoints=10))
    _register(platform, "acme", "b1", "1990-12-04")
    _set_day(clock, datetime(2026, 12, 3, 22, 30, tzinfo=timezone.utc))  # 23:30 in Paris: still the 3rd
    assert platform.occasions.run_tenant("acme")["awarded"] == 0
    clock.advance(timedelta(hours=1))  # 00:30 on the 4th in Paris, 23:30 on the 3rd in UTC
    assert platform.occasions.run_tenant("acme")["awarded"] == 1
    for _ in range(3):  # redelivered, repeated, re-run later the same day
        assert platform.occasions.run_tenant("acme")["awarded"] == 0
    assert len(_awards(platform, "acme", "b1", "birthday")) == 1


def test_leap_day_birthdays_are_celebrated_on_28_february_in_common_years(platform, clock) -> None:
    make_tenant(platform, "acme")
    platform.occasions.save_settings("acme", OccasionSettings(birthdayPoints=10))
    _register(platform, "acme", "leap", "2000-02-29")
    assert month_days_due(date(2027, 2, 28)) == ["02-28", "02-29"]
    assert month_days_due(date(2028, 2, 28)) == ["02-28"]
    _set_day(clock, datetime(2027, 2, 28, 12, tzinfo=timezone.utc))
    assert platform.occasions.run_tenant("acme")["awarded"] == 1
    clock.advance(timedelta(days=1))  # 1 March 2027: not again
    assert platform.occasions.run_tenant("acme")["awarded"] == 0
    _set_day(clock, datetime(2028, 2, 28, 12, tzinfo=timezone.utc))
    assert platform.occasions.run_tenant("acme")["awarded"] == 0
    clock.advance(timedelta(days=1))  # 29 February 2028
    assert platform.occasions.run_tenant("acme")["awarded"] == 1


def test_erasure_removes_the_birthday_entry(platform, clock) -> None:
    make_tenant(platform, "acme")
    platform.occasions.save_settings("acme", OccasionSettings(birthdayPoints=10))
    _register(platform, "acme", "gone", "1990-12-04")
    doc = platform.customers.get("acme", "gone")
    assert doc["birthdayIndex"] and "12-04" not in doc["birthdayIndex"]
    assert platform.store.read(PII_INDEX, doc["birthdayIndex"], "gone") is not None
    platform.vault.erase("acme", "gone", None, "asked")
    assert platform.store.read(PII_INDEX, doc["birthdayIndex"], "gone") is None
    assert "birthdayIndex" not in platform.customers.get("acme", "gone")
    _set_day(clock, datetime(2026, 12, 4, 12, tzinfo=timezone.utc))
    assert platform.occasions.run_tenant("acme")["awarded"] == 0


def _stray(platform, customer_id: str, occasion: str, month_day: str, **fields) -> None:
    """An index entry a losing registration of ``customer_id`` filed (a race the pre-check cannot
    close: two registrations of one new id with different dates)."""
    pk = index_pk("acme", platform.occasions.tag("acme", occasion, month_day))
    platform.store.upsert(PII_INDEX, {"id": customer_id, "pk": pk, "docType": "occasionIndex", "tenantId": "acme",
                                      "customerId": customer_id, "occasion": occasion, **fields})


def test_entries_the_profile_does_not_account_for_award_nothing(platform, clock) -> None:
    make_tenant(platform, "acme")
    platform.occasions.save_settings("acme", OccasionSettings(birthdayPoints=10, anniversaryPoints=5))
    _register(platform, "acme", "r1", "1990-06-20", joined="2020-03-10")
    _stray(platform, "r1", "birthday", "02-14")
    _stray(platform, "r1", "anniversary", "02-14", since=2019)
    # The entry under the real anniversary, overwritten by a loser that joined the same day a year later.
    _stray(platform, "r1", "anniversary", "03-10", since=2025)
    _set_day(clock, datetime(2026, 2, 14, 12, tzinfo=timezone.utc))
    assert platform.occasions.run_tenant("acme")["awarded"] == 0
    _set_day(clock, datetime(2026, 3, 10, 12, tzinfo=timezone.utc))
    assert platform.occasions.run_tenant("acme")["awarded"] == 1  # the profile joined in 2020
    _set_day(clock, datetime(2026, 6, 20, 12, tzinfo=timezone.utc))
    assert platform.occasions.run_tenant("acme")["awarded"] == 1
    assert len(_awards(platform, "acme", "r1", "birthday")) == len(_awards(platform, "acme", "r1", "anniversary")) == 1


def test_registering_an_existing_id_files_nothing(platform, clock) -> None:
    make_tenant(platform, "acme")
    _register(platform, "acme", "x1", "1990-06-20", joined="2020-03-10")
    before = platform.store.query(PII_INDEX, Query(pk=None, filters=(Filter("customerId", "=", "x1"),), limit=10))
    for birth, joined in ((None, "2021-07-07"), ("1991-01-02", "2020-03-10")):
        with pytest.raises(Conflict):
            _register(platform, "acme", "x1", birth, joined=joined)
    after = platform.store.query(PII_INDEX, Query(pk=None, filters=(Filter("customerId", "=", "x1"),), limit=10))
    assert sorted(map(str, after)) == sorted(map(str, before))


def test_the_timer_job_fans_out_per_tenant_local_day(platform, clock) -> None:
    make_tenant(platform, "acme")
    platform.occasions.save_settings("acme", OccasionSettings(anniversaryPoints=7))
    _register(platform, "acme", "a1", None, joined="2020-12-04")
    _set_day(clock, datetime(2026, 12, 4, 6, tzinfo=timezone.utc))
    for _ in range(2):  # two timer runs in one hour: one fan-out, one tenant item
        run_job(BY_NAME["occasions"], platform)
        work_items(platform).run()
        work_items(platform).run()
    clock.advance(timedelta(hours=1))
    run_job(BY_NAME["occasions"], platform)
    work_items(platform).run()
    work_items(platform).run()
    assert platform.ledger.head("acme", "a1").balance == 7


_tenants = itertools.count(1)
births = st.dates(min_value=date(1950, 1, 1), max_value=date(2008, 12, 31))
joins = st.dates(min_value=date(2015, 1, 1), max_value=date(2027, 6, 30))


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(people=st.lists(st.tuples(births | st.none(), joins), min_size=1, max_size=6),
       year=st.sampled_from([2027, 2028]), repeats=st.lists(st.integers(0, 365), max_size=5))
def test_a_year_of_daily_runs_awards_each_customer_exactly_once(platform, clock, people, year, repeats) -> None:
    tenant_id = f"occ{next(_tenants)}"
    make_tenant(platform, tenant_id)
    platform.occasions.save_settings(tenant_id, OccasionSettings(birthdayPoints=1, anniversaryPoints=1))
    for n, (birth, joined) in enumerate(people):
        _register(platform, tenant_id, f"p{n}", birth.isoformat() if birth else None, joined.isoformat())
    _set_day(clock, datetime(year, 1, 1, 12, tzinfo=timezone.utc))
    days = 366 if year == 2028 else 365
    extra = set(repeats)
    for day in range(days):
        platform.occasions.run_tenant(tenant_id)
        if day in extra:
            platform.occasions.run_tenant(tenant_id)  # a redelivery
        clock.advance(timedelta(days=1))
    for n, (birth, joined) in enumerate(people):
        assert len(_awards(platform, tenant_id, f"p{n}", "birthday")) == (1 if birth else 0)
        assert len(_awards(platform, tenant_id, f"p{n}", "anniversary")) == (1 if joined.year < year else 0)
