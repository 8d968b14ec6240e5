"""Tier tables: what a valid programme is, and that every bad one is refused with the field named."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.errors import ValidationFailed
from shared.tiers.model import MAX_TIERS, TierProgram, check_program

from .conftest import GOLDEN, program


def _fields(error: ValidationFailed) -> set[str]:
    return {p.field for p in error.problems}


def test_the_golden_programme_is_valid() -> None:
    checked = check_program(program())
    assert [t.name for t in checked.tiers] == ["silver", "gold", "platinum"]
    assert checked.tier("gold").multiplier == Decimal("1.5")
    assert checked.rank("gold") == 1 and checked.rank("bronze") == -1 and checked.rank(None) == -1


@pytest.mark.parametrize("tiers, field", [
    ([{"name": "a", "minPoints": 100}, {"name": "b", "minPoints": 100}], "tiers[1].minPoints"),   # equal
    ([{"name": "a", "minPoints": 500}, {"name": "b", "minPoints": 100}], "tiers[1].minPoints"),   # decreasing
    ([{"name": "a", "minPoints": 1}, {"name": "a", "minPoints": 2}], "tiers[1].name"),            # duplicate name
    ([{"name": "a", "minSpend": "10"}, {"name": "b", "minSpend": "10.00"}], "tiers[1].minSpend"),  # same spend
    ([{"name": "a", "minPoints": 1}, {"name": "b", "minSpend": "5"}], "tiers[1]"),                # mixed measures
    ([{"name": "a"}], "tiers[0]"),                                                               # no threshold
])
def test_overlapping_duplicate_or_inconsistent_thresholds_are_named(tiers, field) -> None:
    with pytest.raises(ValidationFailed) as refused:
        check_program(program(tiers=tiers))
    assert field in _fields(refused.value)


@pytest.mark.parametrize("change", [
    {"tiers": [{"name": "a", "minPoints": 1, "multiplier": "0"}]},
    {"tiers": [{"name": "a", "minPoints": 1, "multiplier": "-1"}]},
    {"tiers": [{"name": "a", "minPoints": 1, "multiplier": "10.5"}]},
    {"tiers": [{"name": "a", "minPoints": 1, "multiplier": "1.00001"}]},
    {"tiers": [{"name": "a", "minPoints": -1}]},
    {"tiers": [{"name": "Gold!", "minPoints": 1}]},
    {"tiers": []},
    {"tiers": [{"name": f"t{i}", "minPoints": i} for i in range(MAX_TIERS + 1)]},
    {"windowMonths": 0},
    {"evaluation": {"frequency": "monthly", "dayOfMonth": 31}},
    {"evaluation": {"frequency": "weekly"}},
    {"grace": {"kind": "days", "days": 0}},
    {"tiers": [{"name": "a", "minPoints": 1, "colour": "red"}]},
])
def test_shape_problems_are_refused_by_the_model(change) -> None:
    with pytest.raises(ValidationError):
        TierProgram.model_validate({**GOLDEN, **change})


@st.composite
def valid_tables(draw):  # type: ignore[no-untyped-def]
    count = draw(st.integers(1, MAX_TIERS))
    measures = draw(st.sampled_from((("minPoints",), ("minSpend",), ("minPoints", "minSpend"))))
    tiers = [{"name": f"tier{i}", "multiplier": str(draw(st.decimals("0.0001", "10", places=4)))} for i in range(count)]
    for measure in measures:
        values = sorted(draw(st.sets(st.integers(0, 10**9), min_size=count, max_size=count)))
        for tier, value in zip(tiers, values):
            tier[measure] = value if measure == "minPoints" else str(Decimal(value) / 100)
    return tiers


@settings(max_examples=60, deadline=None)
@given(tiers=valid_tables(), swap=st.integers(0, 100))
def test_strictly_increasing_tables_pass_and_any_swap_of_two_fails(tiers, swap) -> None:
    check_program(program(tiers=tiers))
    if len(tiers) < 2:
        return
    i = swap % (len(tiers) - 1)
    broken = [dict(t) for t in tiers]
    for key in ("minPoints", "minSpend"):
        if key in broken[i]:
            broken[i][key], broken[i + 1][key] = broken[i + 1][key], broken[i][key]
    with pytest.raises(ValidationFailed) as refused:
        check_program(program(tiers=broken))
    assert any(f.startswith(f"tiers[{i + 1}].min") for f in _fields(refused.value))
