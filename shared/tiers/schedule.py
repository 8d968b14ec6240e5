"""Calendar arithmetic of tiers, in the tenant's time zone.

* ``window_start``: the rolling qualifying window is the ``months`` calendar
  months before its end, same local wall time (the day clamped to the shorter
  month: 31 March minus one month is 28/29 February).
* ``last_evaluation`` / ``next_evaluation``: an evaluation takes place at local
  midnight of its date (``dayOfMonth`` each month, or ``month``/``day`` each
  year). A day of at most 28 exists in every month, so there is no clamping.

Pure functions of their arguments; every instant returned is UTC-aware.
"""

from __future__ import annotations

from calendar import monthrange
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from shared.tiers.model import MonthlyEvaluation, TierProgram, YearlyEvaluation


def _shift_months(year: int, month: int, delta: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + delta
    return index // 12, index % 12 + 1


def window_start(end: datetime, months: int, zone: ZoneInfo) -> datetime:
    local = end.astimezone(zone)
    year, month = _shift_months(local.year, local.month, -months)
    day = min(local.day, monthrange(year, month)[1])
    start = local.replace(year=year, month=month, day=day, tzinfo=None)
    return start.replace(tzinfo=zone).astimezone(timezone.utc)


def _midnight(year: int, month: int, day: int, zone: ZoneInfo) -> datetime:
    return datetime(year, month, day, tzinfo=zone).astimezone(timezone.utc)


def last_evaluation(program: TierProgram, now: datetime, zone: ZoneInfo) -> datetime:
    """The latest scheduled evaluation instant at or before ``now``."""
    local = now.astimezone(zone)
    schedule = program.evaluation
    if isinstance(schedule, MonthlyEvaluation):
        year, month = local.year, local.month
        for _ in range(2):
            moment = _midnight(year, month, schedule.day_of_month, zone)
            if moment <= now:
                return moment
            year, month = _shift_months(year, month, -1)
    else:
        assert isinstance(schedule, YearlyEvaluation)
        for year in (local.year, local.year - 1):
            moment = _midnight(year, schedule.month, schedule.day, zone)
            if moment <= now:
                return moment
    raise AssertionError("unreachable: an evaluation date exists in every month or year")


def next_evaluation(program: TierProgram, now: datetime, zone: ZoneInfo) -> datetime:
    """The first scheduled evaluation instant strictly after ``now``."""
    last = last_evaluation(program, now, zone).astimezone(zone)
    schedule = program.evaluation
    if isinstance(schedule, MonthlyEvaluation):
        year, month = _shift_months(last.year, last.month, 1)
        return _midnight(year, month, schedule.day_of_month, zone)
    assert isinstance(schedule, YearlyEvaluation)
    return _midnight(last.year + 1, schedule.month, schedule.day, zone)
