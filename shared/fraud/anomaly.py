"""The anomaly check: a customer earning far above their own baseline.

Pure arithmetic over two sums the caller derives from the customer's ledger
(shared/fraud/velocity.py): ``recent``, the points earned in the last 24 hours
including the order being credited, and ``baseline``, the points earned in the
``baseline_days`` before those 24 hours. The baseline daily rate is
``baseline / baseline_days`` (a customer younger than the baseline simply has a
low rate: the floor is what protects new customers).

An earn is anomalous when ``recent > multiplier * baseline / baseline_days`` and
``recent > floor``. Compared in integers (``recent * days > multiplier *
baseline``), so there is no rounding at the boundary: under the floor it never
holds, above both thresholds it always holds.
"""

from __future__ import annotations

from typing import Any

from shared.fraud.policy import AnomalyPolicy


def is_anomalous(recent: int, baseline: int, policy: AnomalyPolicy) -> bool:
    if not policy.enabled or recent <= policy.floor_points:
        return False
    return recent * policy.baseline_days > policy.multiplier * max(baseline, 0)


def anomaly_reason(recent: int, baseline: int, policy: AnomalyPolicy) -> dict[str, Any] | None:
    if not is_anomalous(recent, baseline, policy):
        return None
    daily = baseline / policy.baseline_days
    return {
        "code": "anomaly",
        "detail": (f"{recent} points in 24 hours against a baseline of {daily:.1f} a day over "
                   f"{policy.baseline_days} days (threshold: {policy.multiplier}x, floor {policy.floor_points})"),
        "recent": recent, "baselineDailyRate": round(daily, 4), "multiplier": policy.multiplier,
        "floor": policy.floor_points,
    }
