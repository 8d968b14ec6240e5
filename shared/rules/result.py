"""Outcome record -> ``EarnResult``: lots with expiry, tags to add, and the trace.

Shared by both evaluators (see ``shared.rules.program``), so a trace looks the
same whichever evaluator produced it. The trace is a tuple of JSON-able dicts,
one per rule in evaluation order::

    {"rule": "Platinum double", "priority": 0, "status": "applied", "matched": true,
     "conditions": [{"condition": "customer.tier = \\"platinum\\"", "value": true}, ...],
     "actions": [{"action": "multiply", "factor": "2", "before": 120, "after": 240}]}

``status`` is ``applied``, ``not-matched``, ``failed`` (with ``error``: code,
message and which condition or action) or ``skipped`` (an earlier rule stopped
evaluation). A condition's value is true, false, null (not evaluated) or
"failed". Failed rules changed nothing (their actions were rolled back).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from typing import Any, Sequence
from zoneinfo import ZoneInfo

from shared.domain.orders import Order
from shared.earning import CustomerContext, EarnLot, EarnResult
from shared.rules import ast
from shared.rules.numeric import FAILURE_MESSAGES, FailureCode, to_text
from shared.rules.parser import EPOCH_ORDINAL
from shared.rules.program import APPLIED, FAILED, NOT_MATCHED, RULESET_ACTIVE, RULESET_BEFORE, UNSET, Program
from datetime import date

_STATUS = {APPLIED: "applied", NOT_MATCHED: "not-matched", FAILED: "failed", UNSET: "skipped"}
_COND = {0: False, 1: True, 2: "failed", UNSET: None}


def _expiry(action: ast.Earn, order: Order, zone: ZoneInfo) -> datetime | None:
    if action.expiry_days is not None:
        return order.timestamp.astimezone(timezone.utc) + timedelta(days=action.expiry_days)
    if action.expiry_date is not None:
        # "expiring on D": valid through the whole local day D.
        day_after = date.fromordinal(action.expiry_date.days + EPOCH_ORDINAL + 1)
        return datetime.combine(day_after, time(0), zone).astimezone(timezone.utc)
    return None


def build_result(program: Program, out: Sequence[int], order: Order, customer: CustomerContext, zone: ZoneInfo,
                 rule_set_id: str, version: int | None, arm: str | None) -> EarnResult:
    assert len(out) == program.size, "outcome record does not match the program"
    ruleset = program.ruleset
    if out[0] != RULESET_ACTIVE:
        bound = ruleset.valid_from if out[0] == RULESET_BEFORE else ruleset.valid_until
        assert bound is not None
        word = "before valid from" if out[0] == RULESET_BEFORE else "after valid until"
        trace = ({"ruleset": "inactive", "reason": f"order date is {word} {bound.text}"},)
        return EarnResult((), rule_set_id, version, arm, (), trace)
    trace: list[dict[str, Any]] = []
    tags: list[str] = []
    have = set(customer.tags)
    expiries: dict[int, datetime | None] = {}
    for plan in program.rules:
        rule = plan.rule
        status = out[plan.status]
        entry: dict[str, Any] = {"rule": rule.name, "priority": rule.priority, "status": _STATUS[status]}
        trace.append(entry)
        if status == UNSET:
            continue
        n_cond = len(rule.conditions)
        where = out[plan.fail_where]
        entry["matched"] = (status == APPLIED or (status == FAILED and where >= n_cond))
        entry["conditions"] = [{"condition": c.text, "value": _COND[out[plan.cond_base + i]]}
                               for i, c in enumerate(rule.conditions)]
        if status == NOT_MATCHED or (status == FAILED and where < n_cond):
            if status == FAILED:
                entry["matched"] = None
                entry["error"] = _error(out[plan.fail_code], f"condition {where + 1}")
            continue
        effects = []
        for index, action in enumerate(plan.actions):
            if status == FAILED and index == where - n_cond:
                effects.append({"action": action.kind, "error": FailureCode(out[plan.fail_code]).slug})
                entry["error"] = _error(out[plan.fail_code], f"action {index + 1} ({action.kind})")
                break
            slot = action.slot
            if action.kind == "earn":
                assert isinstance(action.action, ast.Earn)
                expires = _expiry(action.action, order, zone)
                expiries[action.lot] = expires
                effects.append({"action": "earn", "points": out[slot],
                                "expiresAt": expires.isoformat() if expires else None})
            elif action.kind == "multiply":
                effects.append({"action": "multiply", "factor": to_text(out[slot]),
                                "before": out[slot + 1], "after": out[slot + 2]})
            elif action.kind == "cap":
                effects.append({"action": "cap", "cap": out[slot], "before": out[slot + 1], "after": out[slot + 2]})
            elif action.kind == "tag":
                assert isinstance(action.action, ast.Tag)
                tag = action.action.tag
                effects.append({"action": "tag", "tag": tag})
                if status == APPLIED and tag not in have and tag not in tags:
                    tags.append(tag)
            else:
                effects.append({"action": "stop"})
        entry["actions"] = effects
    lots = []
    for number, (plan, action) in enumerate(program.lots):
        points = out[program.lots_base + number]
        if points > 0:
            assert out[plan.status] == APPLIED, "a lot survived a rule that did not apply"
            earn = action.action
            assert isinstance(earn, ast.Earn)
            lots.append(EarnLot(points=points, expires_at=expiries.get(number), rule=plan.rule.name,
                                pending_days=earn.pending_days, wallet=earn.wallet))
    return EarnResult(tuple(lots), rule_set_id, version, arm, tuple(tags), tuple(trace))


def _error(code: int, where: str) -> dict[str, str]:
    failure = FailureCode(code)
    return {"code": failure.slug, "message": FAILURE_MESSAGES[failure], "in": where}
