"""The clock port: every "now" in the product comes from here, so tests can pin time."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """Wall-clock UTC time."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class ManualClock:
    """A clock that moves only when told; for tests of expiry, TTLs and schedules."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=timezone.utc)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._now += delta


_NO_OFFSET = timedelta(0)


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds and a Z: sorts lexically in time order.

    The text is ``strftime("%Y-%m-%dT%H:%M:%S.%fZ")`` of the UTC instant; for a year of
    four digits ``isoformat`` writes the same characters in a third of the time (a
    million-row import formats two instants a row). strftime does not pad a year
    before 1000, isoformat does: such a year keeps strftime (tests/unit/test_clock_iso.py
    holds the two to the same text)."""
    assert moment.tzinfo is not None, "naive datetimes are never stored"
    if moment.utcoffset() != _NO_OFFSET:
        moment = moment.astimezone(timezone.utc)
    if moment.year >= 1000:
        return moment.isoformat(timespec="microseconds")[:26] + "Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# The instants a client may give (a backfill's window, a balance's asOf, a history's
# range). Stored times are UTC strings compared as text, which needs four-digit
# years, and UTC conversion overflows at either end of the calendar (year 1 with a
# positive offset, year 9999 with a negative one): nothing of Accrue's is outside.
EARLIEST_INSTANT = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST_INSTANT = datetime(9000, 1, 1, tzinfo=timezone.utc)


def instant_problem(moment: datetime) -> str | None:
    """What is wrong with a client's instant, or None: it needs an offset and must lie
    in [EARLIEST_INSTANT, LATEST_INSTANT] (aware comparisons never overflow)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        return "needs a time zone offset, such as Z"
    if not EARLIEST_INSTANT <= moment <= LATEST_INSTANT:
        return f"must be from {iso(EARLIEST_INSTANT)} to {iso(LATEST_INSTANT)}"
    return None


def parse_iso(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone")
    return moment.astimezone(timezone.utc)
