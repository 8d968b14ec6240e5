"""The return window: which earned points are pending, and until when.

A tenant may set ``pendingDays`` (1..365): points earned on an order are then
**pending** until ``maturesAt`` and cannot be redeemed, converted or
transferred; a refund inside the window cancels them (shared/app/corrections.py)
instead of clawing back available points. A rule may override the window per
earn (``earn … points pending for 14 days``; ``pending for 0 days`` makes the
rule's points available at once even when the tenant has a window).

``maturesAt`` is the order's acceptance instant plus the window in **calendar
days of the tenant's time zone**: 10:00 local on 1 March + 14 days is 10:00
local on 15 March, whatever daylight-saving change lies between (a window is a
merchant's promise in days, not in hours). A wall time that does not exist on
the target day (a spring-forward gap) is read with ``fold=0`` by zoneinfo,
which lands just after the gap; one that occurs twice is its first occurrence.

How a pending earn is written (one ledger entry per earn, as today):

* ``status`` PENDING, ``signedAmount`` the points: it counts in the running
  ``pending`` total and forms no lot (shared/ledger/lots.py), so no debit can
  take it;
* ``attributes.maturesAt``: the instant it matures (UTC, ISO 8601); this is
  what tells a window earn from a fraud hold (held earns carry none);
* ``attributes.expiresAt`` only when the rule gave an explicit expiry: the
  tenant policy's expiry is stamped at maturity instead (the expiry clock of a
  lot starts when it matures; docs/pending.md).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

MAX_PENDING_DAYS = 365
MATURES_AT = "maturesAt"


def matures_at(accepted_at: datetime, days: int, time_zone: str) -> datetime:
    """The UTC instant points accepted at ``accepted_at`` mature, ``days`` local calendar days later."""
    assert 0 <= days <= MAX_PENDING_DAYS, "pending window out of range"
    assert accepted_at.tzinfo is not None, "an aware instant"
    zone = ZoneInfo(time_zone)
    local = accepted_at.astimezone(zone)
    # Calendar arithmetic on the naive wall time, then placed in the zone again.
    target = (local.replace(tzinfo=None) + timedelta(days=days)).replace(tzinfo=zone)
    return target.astimezone(timezone.utc)


def stamp(instant: datetime) -> str:
    return instant.astimezone(timezone.utc).isoformat()


def maturity_of(entry: dict[str, Any]) -> datetime | None:
    """A window earn's ``maturesAt`` (None: not a window earn)."""
    value = (entry.get("attributes") or {}).get(MATURES_AT)
    if not isinstance(value, str):
        return None
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return instant.replace(tzinfo=timezone.utc) if instant.tzinfo is None else instant.astimezone(timezone.utc)


def is_window_earn(entry: dict[str, Any]) -> bool:
    """A PENDING credit written for the return window and not held for a fraud review
    (``attributes.fraudHold``: the review settles it, never the maturation job)."""
    return (entry.get("docType") == "entry" and entry.get("status") == "PENDING"
            and entry.get("signedAmount", 0) > 0 and maturity_of(entry) is not None
            and not (entry.get("attributes") or {}).get("fraudHold"))
