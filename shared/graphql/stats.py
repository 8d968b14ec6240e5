"""Is an experiment's difference real? Two confidence intervals, from sufficient statistics.

* Points per order (a mean of skewed, unequal-variance samples): **Welch's t interval** for
  the difference of means (treatment B minus control A), with the Welch-Satterthwaite
  degrees of freedom. Welch rather than Student's pooled t because a rule change moves the
  variance as well as the mean, and Welch stays valid when variances and arm sizes differ
  (the split is rarely 50/50). With hundreds of orders per arm the mean is close to normal.
* Conversion (the share of an arm's ordering customers who ordered again during the
  experiment: the repeat purchase a loyalty rule is meant to cause): **Newcombe's hybrid
  score interval** (method 10 of Newcombe 1998) for a difference of proportions, built from
  the two Wilson score intervals. Unlike the Wald interval it keeps its coverage near 0 and
  1 and for small arms, and it never leaves [-1, 1].

The difference is called significant when the interval excludes 0. The t quantile is
found by bisection on Student's t distribution function, computed from the regularized
incomplete beta function (its continued fraction, Lentz's method): exact to 1e-9, with no
SciPy in the runtime."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    method: str
    confidence: float = CONFIDENCE

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        for numerator in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                          -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def regularized_beta(a: float, b: float, x: float) -> float:
    assert 0.0 <= x <= 1.0
    if x in (0.0, 1.0):
        return x
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    tail = 0.5 * regularized_beta(df / 2, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` (possibly fractional) degrees of freedom."""
    assert 0 < p < 1 and df > 0
    if p < 0.5:
        return -t_quantile(1 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2
    for _ in range(200):
        middle = (low + high) / 2
        if t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
        if high - low < 1e-12:
            break
    return (low + high) / 2


def welch_interval(n_a: int, sum_a: float, sumsq_a: float, n_b: int, sum_b: float, sumsq_b: float,
                   confidence: float = CONFIDENCE) -> Interval | None:
    """B's mean minus A's, from counts, sums and sums of squares; None below two samples per arm."""
    if n_a < 2 or n_b < 2:
        return None
    mean_a, mean_b = sum_a / n_a, sum_b / n_b
    var_a = max(0.0, (sumsq_a - n_a * mean_a ** 2) / (n_a - 1))
    var_b = max(0.0, (sumsq_b - n_b * mean_b ** 2) / (n_b - 1))
    se_a, se_b = var_a / n_a, var_b / n_b
    diff = mean_b - mean_a
    if se_a + se_b == 0:
        return Interval(diff, diff, diff, "welch-t")
    df = (se_a + se_b) ** 2 / ((se_a ** 2 / (n_a - 1) if se_a else 0) + (se_b ** 2 / (n_b - 1) if se_b else 0))
    half = t_quantile(1 - (1 - confidence) / 2, df) * math.sqrt(se_a + se_b)
    return Interval(diff, diff - half, diff + half, "welch-t")


def wilson(successes: int, n: int, z: float) -> tuple[float, float]:
    assert 0 <= successes <= n and n > 0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(x_a: int, n_a: int, x_b: int, n_b: int, confidence: float = CONFIDENCE) -> Interval | None:
    """B's proportion minus A's (Newcombe's hybrid score interval); None when an arm is empty."""
    if n_a == 0 or n_b == 0:
        return None
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p_a, p_b = x_a / n_a, x_b / n_b
    l_a, u_a = wilson(x_a, n_a, z)
    l_b, u_b = wilson(x_b, n_b, z)
    diff = p_b - p_a
    low = diff - math.sqrt((p_b - l_b) ** 2 + (u_a - p_a) ** 2)
    high = diff + math.sqrt((u_b - p_b) ** 2 + (p_a - l_a) ** 2)
    return Interval(diff, max(-1.0, low), min(1.0, high), "newcombe-hybrid-score")
