"""The experiments' confidence intervals against published values and their invariants."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.graphql import stats


@pytest.mark.parametrize(("df", "expected"), [(3, 3.182446), (10, 2.228139), (30, 2.042272), (200, 1.971896), (1, 12.706205)])
def test_the_t_quantile_matches_the_tables(df: int, expected: float) -> None:
    assert stats.t_quantile(0.975, df) == pytest.approx(expected, abs=1e-5)


def test_newcombe_matches_the_published_example() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 vs 48/80, method 10.
    found = stats.newcombe_interval(48, 80, 56, 70)
    assert found is not None
    assert found.estimate == pytest.approx(0.2)
    assert (found.low, found.high) == (pytest.approx(0.0524, abs=1e-4), pytest.approx(0.3339, abs=1e-4))
    assert found.significant


def test_welch_matches_a_direct_computation() -> None:
    a = [10, 12, 9, 11, 10, 14, 8]
    b = [15, 13, 17, 14, 16, 18, 12, 15]
    found = stats.welch_interval(len(a), sum(a), sum(x * x for x in a), len(b), sum(b), sum(x * x for x in b))
    assert found is not None
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    var_a = sum((x - mean_a) ** 2 for x in a) / (len(a) - 1)
    var_b = sum((x - mean_b) ** 2 for x in b) / (len(b) - 1)
    se = math.sqrt(var_a / len(a) + var_b / len(b))
    df = (var_a / len(a) + var_b / len(b)) ** 2 / ((var_a / len(a)) ** 2 / (len(a) - 1)
                                                   + (var_b / len(b)) ** 2 / (len(b) - 1))
    half = stats.t_quantile(0.975, df) * se
    assert found.estimate == pytest.approx(mean_b - mean_a)
    assert found.low == pytest.approx(mean_b - mean_a - half) and found.high == pytest.approx(mean_b - mean_a + half)
    assert found.significant


def test_too_few_samples_give_no_interval() -> None:
    assert stats.welch_interval(1, 5, 25, 10, 50, 300) is None
    assert stats.newcombe_interval(0, 0, 3, 10) is None


@given(st.integers(0, 500), st.integers(1, 500), st.integers(0, 500), st.integers(1, 500))
def test_newcombe_contains_the_estimate_and_stays_within_bounds(x_a: int, n_a: int, x_b: int, n_b: int) -> None:
    x_a, x_b = min(x_a, n_a), min(x_b, n_b)
    found = stats.newcombe_interval(x_a, n_a, x_b, n_b)
    assert found is not None
    assert -1.0 <= found.low <= found.estimate + 1e-12 and found.estimate - 1e-12 <= found.high <= 1.0


@given(st.lists(st.integers(0, 1000), min_size=2, max_size=60), st.lists(st.integers(0, 1000), min_size=2, max_size=60))
def test_welch_contains_the_estimate(a: list[int], b: list[int]) -> None:
    found = stats.welch_interval(len(a), sum(a), sum(x * x for x in a), len(b), sum(b), sum(x * x for x in b))
    assert found is not None
    assert found.low <= found.estimate + 1e-9 and found.estimate - 1e-9 <= found.high
    assert found.significant == (found.low > 0 or found.high < 0)
