"""Birthday and anniversary rewards: tenant settings, a blind month-day index, the daily run.

**The index.** ``birthDate`` is personal data, sealed in the profile; the daily job
must neither decrypt every customer nor keep the date in the clear. So when a
profile is registered, the customer is filed under a *tag* of their month and day:

    tag = HMAC-SHA256(tenant blind-index secret, "<occasion>:<MM-DD>")[:32 hex]

(the secret is the tenant's own, wrapped by its KEK: ``PersonalDataVault``). An index
entry is a document of ``piiindex`` in partition ``<tenant>:occasion:<tag>``, id the
customer id; the profile keeps the birthday entry's partition as ``birthdayIndex``
so erasure can delete it. The daily run for a local date computes that date's two
tags and reads those two partitions: it touches the customers due that day and
nobody else, and never opens an envelope. The year of birth is not in the index.
Anniversaries use the same scheme (their entry also keeps the join year, which is
not personal: the join date is stored in the clear).

**Exactly once a year.** Each award is a ledger EARN with the idempotency key
``occasion:<birthday|anniversary>:<customer>:<year>``: a redelivered or repeated
run, or a run on two instances, credits it once.

**29 February** (documented rule): a customer born (or joined) on 29 February is
celebrated on 28 February in a year without one, and on the 29th in a leap year.
Never on 1 March, never twice.

**Time zone.** "Today" is the tenant's local date (``TenantSettings.time_zone``):
the hourly job finds, per tenant, the local date and does it once (a per-tenant
``occasionsDone`` mark); a run that stops half way resumes from its cursor.

**Erasure** deletes the birthday entry (``PersonalDataVault.erase``); the
anniversary entry stays (the join date is kept after erasure, as the ledger is).
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import logging
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from shared.app.tenants import TenantDirectory
from shared.clock import Clock, iso
from shared.expiry.policy import credit_expiry
from shared.ledger.entries import MAX_POINTS, EntryDraft, EntryType, Head
from shared.ledger.service import Ledger, Plan, TransactionRequest, fingerprint_of
from shared.store.layout import PII_INDEX, TENANTS
from shared.store.port import DocumentStore, Filter, Query, read_many
from shared.store.removal import delete_if_present
from shared.store.replace import Change, replace

log = logging.getLogger("accrue.occasions")

BIRTHDAY, ANNIVERSARY = "birthday", "anniversary"
OCCASIONS = (BIRTHDAY, ANNIVERSARY)
SETTINGS_ID = "occasions"
# The last local date the fan-out enqueued for a tenant, and how far back it catches up.
FAN_OUT_ID = "occasions-fanout"
CATCH_UP_DAYS = 7
PAGE = 500
LEAP_DAY = (2, 29)


class OccasionSettings(BaseModel):
    """What a tenant gives on each occasion; 0 turns an occasion off."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    birthday_points: int = Field(default=0, ge=0, le=MAX_POINTS, alias="birthdayPoints")
    anniversary_points: int = Field(default=0, ge=0, le=MAX_POINTS, alias="anniversaryPoints")

    def points(self, occasion: str) -> int:
        return self.birthday_points if occasion == BIRTHDAY else self.anniversary_points


def month_days_due(day: date) -> list[str]:
    """The MM-DD whose occasions fall on ``day``: its own, and 02-29 on 28 February of a
    year without a 29th (the documented leap-day rule)."""
    due = [f"{day.month:02d}-{day.day:02d}"]
    if (day.month, day.day) == (2, 28) and not calendar.isleap(day.year):
        due.append("02-29")
    return due


def index_pk(tenant_id: str, tag: str) -> str:
    return f"{tenant_id}:occasion:{tag}"


class Occasions:
    def __init__(self, store: DocumentStore, ledger: Ledger, tenants: TenantDirectory, clock: Clock,
                 secret: Any) -> None:
        """``secret``: ``tenant_id -> bytes``, the tenant's blind-index secret."""
        self._store = store
        self._ledger = ledger
        self._tenants = tenants
        self._clock = clock
        self._secret = secret

    # --- settings ----------------------------------------------------------------------

    def settings(self, tenant_id: str) -> OccasionSettings:
        doc = self._store.read(TENANTS, tenant_id, SETTINGS_ID)
        return OccasionSettings.model_validate(doc["settings"]) if doc else OccasionSettings()

    def save_settings(self, tenant_id: str, settings: OccasionSettings) -> Change:
        """Replace the settings (a repeat changes nothing; concurrent saves are serialised):
        ``before``/``after`` as OccasionSettings."""
        wanted = settings.model_dump(by_alias=True)
        done = replace(self._store, TENANTS, tenant_id, SETTINGS_ID,
                       lambda _current: {"id": SETTINGS_ID, "pk": tenant_id, "docType": "occasionSettings",
                                         "tenantId": tenant_id, "settings": wanted,
                                         "updatedAt": iso(self._clock.now())},
                       content=lambda doc: doc.get("settings"))
        before = OccasionSettings.model_validate(done.before["settings"]) if done.before else OccasionSettings()
        return Change(before, settings, done.changed and before != settings)

    # --- the index ---------------------------------------------------------------------

    def tag(self, tenant_id: str, occasion: str, month_day: str) -> str:
        assert occasion in OCCASIONS and len(month_day) == 5
        return hmac.new(self._secret(tenant_id), f"{occasion}:{month_day}".encode(), hashlib.sha256).hexdigest()[:32]

    def index_fields(self, tenant_id: str, birth_date: date | None) -> dict[str, Any]:
        """What the new profile keeps: the birthday entry's partition (to erase it)."""
        if birth_date is None:
            return {}
        return {"birthdayIndex": index_pk(tenant_id, self.tag(tenant_id, BIRTHDAY, birth_date.strftime("%m-%d")))}

    def index_docs(self, tenant_id: str, customer_id: str, birth_date: date | None,
                   join_date: date) -> list[dict[str, Any]]:
        """The index entries a new profile is filed under (``CustomerService`` writes them
        before the profile: a crash leaves entries the daily run skips, never a profile it
        cannot find)."""
        docs = []
        if birth_date is not None:
            docs.append({"id": customer_id, "pk": index_pk(
                tenant_id, self.tag(tenant_id, BIRTHDAY, birth_date.strftime("%m-%d"))), "docType": "occasionIndex",
                "tenantId": tenant_id, "customerId": customer_id, "occasion": BIRTHDAY})
        docs.append({"id": customer_id, "pk": index_pk(
            tenant_id, self.tag(tenant_id, ANNIVERSARY, join_date.strftime("%m-%d"))), "docType": "occasionIndex",
            "tenantId": tenant_id, "customerId": customer_id, "occasion": ANNIVERSARY, "since": join_date.year})
        return docs

    def abandon(self, tenant_id: str, customer_id: str, filed: list[dict[str, Any]],
                winner: dict[str, Any] | None) -> None:
        """Remove the entries ``filed`` by a registration that lost its id to ``winner``'s
        profile, those the winner does not account for: its birthday entry and the
        anniversary entry of its join date stay. A keyed birth month-day written for an id
        whose profile was erased meanwhile would otherwise outlive the erasure."""
        keep = set()
        if winner is not None:
            keep = {d["pk"] for d in self.index_docs(tenant_id, customer_id, None,
                                                      date.fromisoformat(winner["joinDate"]))}
            if winner.get("birthdayIndex"):
                keep.add(winner["birthdayIndex"])
        for doc in filed:
            if doc["pk"] not in keep:
                delete_if_present(self._store, PII_INDEX, doc["pk"], customer_id)

    # --- the daily run -----------------------------------------------------------------

    def local_date(self, tenant_id: str) -> date:
        zone = ZoneInfo(self._tenants.get(tenant_id).time_zone)
        return self._clock.now().astimezone(zone).date()

    def days_due(self, tenant_id: str) -> list[date]:
        """The tenant's local dates to run, oldest first: today, and the days after the last
        one the fan-out enqueued that no run has seen (a timer down for a day, a time-zone
        change that jumps the local date forward), at most ``CATCH_UP_DAYS`` back. Awards are
        keyed per occasion, customer and year, so a day run twice pays nothing twice."""
        today = self.local_date(tenant_id)
        state = self._store.read(TENANTS, tenant_id, FAN_OUT_ID)
        last = date.fromisoformat(state["lastDay"]) if state else None
        if last is None or last >= today:
            return [today]
        first = max(last + timedelta(days=1), today - timedelta(days=CATCH_UP_DAYS))
        return [first + timedelta(days=n) for n in range((today - first).days + 1)]

    def enqueued(self, tenant_id: str, day: date) -> None:
        """Remember ``day`` as enqueued (never moving back: a zone moved west repeats a date)."""
        state = self._store.read(TENANTS, tenant_id, FAN_OUT_ID)
        if state is not None and state["lastDay"] >= day.isoformat():
            return
        self._store.upsert(TENANTS, {"id": FAN_OUT_ID, "pk": tenant_id, "docType": "occasionsFanOut",
                                     "tenantId": tenant_id, "lastDay": day.isoformat()})

    def run_slice(self, tenant_id: str, day: date, cursor: dict[str, Any] | None) -> tuple[dict[str, Any], bool]:
        """One bounded slice of ``day``'s awards for the tenant: at most ``PAGE`` index entries.

        The cursor names the partition (occasion and month-day) and the last customer id
        done; what it counts it counts once (a redone slice's awards replay)."""
        settings = self.settings(tenant_id)
        cursor = dict(cursor or {"step": 0, "after": "", "awarded": 0, "seen": 0})
        steps = [(occasion, md) for occasion in OCCASIONS if settings.points(occasion) > 0
                 for md in month_days_due(day)]
        if cursor["step"] >= len(steps):
            return cursor, True
        occasion, month_day = steps[cursor["step"]]
        page = self._store.query(PII_INDEX, Query(
            pk=index_pk(tenant_id, self.tag(tenant_id, occasion, month_day)),
            filters=(Filter("docType", "=", "occasionIndex"), Filter("id", ">", cursor["after"])),
            order_by="id", limit=PAGE))
        cursor["seen"] += len(page)
        cursor["awarded"] += self._award(tenant_id, occasion, day, settings.points(occasion), page, month_day)
        if len(page) < PAGE:
            cursor.update(step=cursor["step"] + 1, after="")
        else:
            cursor["after"] = page[-1]["id"]
        return cursor, cursor["step"] >= len(steps)

    def _award(self, tenant_id: str, occasion: str, day: date, points: int, entries: list[dict[str, Any]],
               month_day: str) -> int:
        if not entries:
            return 0
        from shared.store.layout import CUSTOMERS, customer_pk  # noqa: PLC0415

        # Only the due customers' profiles are read (one call): an orphaned entry (a
        # registration that died before its profile) or an erased profile earns nothing.
        profiles = read_many(self._store, CUSTOMERS, [(customer_pk(tenant_id, e["customerId"]), e["customerId"])
                                                      for e in entries])
        requests = []
        stamp = credit_expiry(self._tenants.get(tenant_id), self._clock.now())
        for entry, profile in zip(entries, profiles):
            if profile is None:
                continue
            # An entry the profile does not account for is a registration of this id that lost
            # (filed, then refused: the id existed) or raced: the profile's own dates decide.
            if occasion == BIRTHDAY and (profile.get("erasedAt") or profile.get("birthdayIndex") != entry["pk"]):
                continue
            if occasion == ANNIVERSARY:
                joined = str(profile.get("joinDate") or "")
                if joined[5:10] != month_day:
                    continue
                if int(joined[:4]) >= day.year:
                    continue  # joined this year: the first anniversary is next year
            requests.append(_award_request(tenant_id, entry["customerId"], occasion, day, points, stamp))
        # Awards already given this year replay without an append (one read for the page):
        # a redelivered run writes nothing.
        known = self._ledger.known(requests)
        outcomes = self._ledger.append([r for r, k in zip(requests, known) if k is None])
        for outcome in outcomes:
            if outcome.error is not None:
                raise outcome.error  # a store-level refusal: the slice is retried from its cursor
        return sum(1 for o in outcomes if not o.duplicate)

    def run_tenant(self, tenant_id: str, cursor: dict[str, Any] | None = None,
                   max_slices: int | None = None) -> dict[str, Any]:
        """Today's (local) awards for the tenant, to the end (tests, the CLI)."""
        day = self.local_date(tenant_id)
        slices = 0
        while True:
            cursor, done = self.run_slice(tenant_id, day, cursor)
            slices += 1
            if done or (max_slices is not None and slices >= max_slices):
                return dict(cursor, day=day.isoformat(), done=done)


def _award_request(tenant_id: str, customer_id: str, occasion: str, day: date, points: int,
                   expiry: dict[str, str]) -> TransactionRequest:
    """``expiry``: the tenant's stamp for points earned now (``credit_expiry``)."""
    key = f"occasion:{occasion}:{customer_id}:{day.year}"
    outcome = {"status": "awarded", "occasion": occasion, "year": day.year, "customerId": customer_id,
               "points": points}

    def plan(head: Head) -> Plan:
        return Plan(entries=[EntryDraft(EntryType.EARN, points, rule_set_id=f"occasion:{occasion}",
                                        attributes={"occasion": occasion, "year": day.year, **expiry})],
                    outcome=outcome)

    # The fingerprint leaves out the points and the day: a tenant changing its settings, or a
    # late run on another day of the same year, replays the first award instead of refusing.
    return TransactionRequest(tenant_id, customer_id, key, fingerprint_of({"occasion": occasion, "year": day.year}),
                              plan)


def due_tenants(store: DocumentStore, after: str, limit: int) -> tuple[list[str], str | None, bool]:
    """Tenants with occasion settings saved (a page): the only ones the job visits."""
    docs = store.query(TENANTS, Query(pk=None, filters=(Filter("docType", "=", "occasionSettings"),
                                                        Filter("tenantId", ">", after)),
                                      order_by="tenantId", limit=limit))
    return [d["tenantId"] for d in docs], (docs[-1]["tenantId"] if docs else None), len(docs) == limit
