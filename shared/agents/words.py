"""Rule evaluation traces and rule sources in plain words, for an agent to relay.

``explain_trace`` turns the trace kept on an order's ledger record
(shared/rules/result.py: one item per rule in evaluation order) into sentences:
which rules applied and what they did, which did not and the first condition
that was false, which failed or were skipped. ``rules_in_words`` describes a
rule set's source rule by rule. Both are pure functions of their input.
"""

from __future__ import annotations

import re
from typing import Any

_RULE_START = re.compile(r'^\s*rule\s+"', re.MULTILINE)


def _action_words(action: dict[str, Any]) -> str:
    kind = action.get("action", "action")
    before, after = action.get("before"), action.get("after")
    change = f" ({before} → {after} points)" if before is not None and after is not None else ""
    if kind == "multiply":
        return f"multiplied the points by {action.get('factor')}{change}"
    if kind == "cap":
        return f"capped the points at {action.get('cap', after)}{change}"
    if kind == "earn":
        return f"earned {action.get('points', after)} points{change}"
    if kind == "tag":
        return f"tagged the customer {action.get('tag')!r}"
    if kind == "stop":
        return "stopped evaluating later rules"
    return f"{kind}{change}"


def rule_words(item: dict[str, Any]) -> str:
    """One trace item as a sentence."""
    if "ruleset" in item:
        return f"The rule set was {item['ruleset']}: {item.get('reason', '')}".rstrip(": ")
    if "error" in item and "rule" in item and "status" not in item:
        return f"Rule “{item['rule']}” produced {item.get('points')} points, which was credited as 0 ({item['error']})"
    name, status = item.get("rule", "?"), item.get("status")
    conditions = item.get("conditions") or []
    if status == "applied":
        held = " and ".join(c["condition"] for c in conditions if c.get("value") is True)
        did = "; ".join(_action_words(a) for a in item.get("actions") or []) or "changed nothing"
        return f"Rule “{name}” applied{' because ' + held if held else ''}: it {did}."
    if status == "not-matched":
        false = next((c["condition"] for c in conditions if c.get("value") is False), None)
        return f"Rule “{name}” did not apply" + (f": {false} was not true for this order." if false else ".")
    if status == "failed":
        error = item.get("error") or {}
        return f"Rule “{name}” failed ({error.get('message') or error.get('code') or 'error'}) and changed nothing."
    if status == "skipped":
        return f"Rule “{name}” was not evaluated: an earlier rule stopped evaluation."
    return f"Rule “{name}”: {status}."


def explain_trace(trace: list[dict[str, Any]], points: int) -> list[str]:
    sentences = [rule_words(item) for item in trace]
    applied = sum(1 for item in trace if item.get("status") == "applied")
    sentences.append(f"In total the order earned {points} points from {applied} applied rule(s).")
    return sentences


def rules_in_words(source: str) -> list[dict[str, Any]]:
    """Each rule of a source: its name and its text, in source order."""
    starts = [m.start() for m in _RULE_START.finditer(source)]
    rules = []
    for i, start in enumerate(starts):
        block = source[start:starts[i + 1] if i + 1 < len(starts) else len(source)].strip()
        parts = block.split('"', 2)
        name, rest = (parts[1], parts[2]) if len(parts) == 3 else (f"rule {i + 1}", block)
        body = " ".join(line.split("#", 1)[0].strip() for line in rest.splitlines()
                        if line.split("#", 1)[0].strip())
        rules.append({"rule": name, "text": body})
    return rules


def rules_markdown(rule_set_id: str, version: int, source: str) -> str:
    lines = [f"# How customers earn points (rule set {rule_set_id}, version {version})", ""]
    for rule in rules_in_words(source):
        lines.append(f"- **{rule['rule']}**: {rule['text']}")
    if len(lines) == 2:
        lines.append("- No rules: orders earn the tenant's base rate.")
    return "\n".join(lines) + "\n"
