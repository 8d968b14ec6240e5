"""Tier decisions: pure functions from (programme, current state, qualifying values) to a decision.

Two moments decide, with different powers:

* ``on_change`` (the change-feed projection, after any earn, refund or order):
  may only **upgrade**, to the highest tier the window value reaches, and only
  if that is above the current tier. It never downgrades and never touches the
  grace clock.
* ``at_evaluation`` (the periodic evaluation, at a scheduled instant ``E``): may
  upgrade (a change the projection missed), confirm the tier (which clears the
  grace clock), or downgrade, respecting the grace rule. ``belowSince`` is the
  evaluation instant that first found the customer below their tier:

  - ``none``: downgraded at the first evaluation that finds them below;
  - ``nextEvaluation``: kept through that evaluation, downgraded at a later one
    if still below (``belowSince < E``);
  - ``days`` N: downgraded at the first evaluation at least N calendar days (in
    the tenant's time zone, so a DST change does not shift it) after ``belowSince``.

  A downgrade goes straight to the highest tier still reached (or none). A tier
  that is no longer in the programme is replaced at the evaluation, with no grace.

A tier name not in the programme (e.g. set at registration) ranks as "no tier".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from shared.tiers.history import REASON_BELOW_THRESHOLD, REASON_THRESHOLD_REACHED, REASON_TIER_REMOVED
from shared.tiers.model import DaysGrace, NextEvaluationGrace, NoGrace, TierProgram
from shared.tiers.qualifying import Qualifying


@dataclass(frozen=True)
class TierState:
    tier: str | None
    below_since: datetime | None = None


@dataclass(frozen=True)
class Decision:
    tier: str | None                    # the tier after the decision
    below_since: datetime | None        # the grace clock after the decision
    reason: str | None = None           # set when the tier changes

    @property
    def changes(self) -> bool:
        return self.reason is not None


def highest_reached(program: TierProgram, values: Qualifying) -> int:
    """The rank of the highest tier whose threshold the window value reaches (-1: none)."""
    reached = -1
    for index, tier in enumerate(program.tiers):
        if (tier.min_points is not None and values.points >= tier.min_points) or \
                (tier.min_spend is not None and values.spend >= tier.min_spend):
            reached = index
    return reached


def _name(program: TierProgram, rank: int) -> str | None:
    return program.tiers[rank].name if rank >= 0 else None


def on_change(program: TierProgram, state: TierState, values: Qualifying) -> Decision:
    target = highest_reached(program, values)
    if target > program.rank(state.tier):
        return Decision(_name(program, target), None, REASON_THRESHOLD_REACHED)
    return Decision(state.tier, state.below_since)


def grace_over(program: TierProgram, below_since: datetime, evaluation_at: datetime, zone: ZoneInfo) -> bool:
    grace = program.grace
    if isinstance(grace, NoGrace):
        return True
    if isinstance(grace, NextEvaluationGrace):
        return below_since < evaluation_at
    assert isinstance(grace, DaysGrace)
    days = (evaluation_at.astimezone(zone).date() - below_since.astimezone(zone).date()).days
    return days >= grace.days


def at_evaluation(program: TierProgram, state: TierState, values: Qualifying, evaluation_at: datetime,
                  zone: ZoneInfo) -> Decision:
    target = highest_reached(program, values)
    current = program.rank(state.tier)
    if state.tier is not None and current < 0:
        return Decision(_name(program, target), None, REASON_TIER_REMOVED)
    if target > current:
        return Decision(_name(program, target), None, REASON_THRESHOLD_REACHED)
    if target == current:
        return Decision(state.tier, None)
    below_since = state.below_since or evaluation_at
    if grace_over(program, below_since, evaluation_at, zone):
        return Decision(_name(program, target), None, REASON_BELOW_THRESHOLD)
    return Decision(state.tier, below_since)
