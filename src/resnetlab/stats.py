"""Statistics over seeds: mean ± std, a t interval for a difference of means, and verdicts that say
"not resolved" when the seeds do not settle a comparison.

Two networks trained with the same seeds are compared pair by pair when they have the same seeds
(the seed fixes the data order for both, so the paired t interval removes that shared noise), and
by Welch's interval otherwise. Student's t quantile comes from the regularised incomplete beta
function (a continued fraction, as in Numerical Recipes, §6.4), so NumPy is all this needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float          # sample standard deviation (n - 1); 0 for one value
    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "n": self.n, "values": list(self.values)}

    def pct(self) -> str:
        """'7.03 ± 0.21%' (fractions shown as percent); one value: '7.03%'."""
        if self.n == 1:
            return f"{100 * self.mean:.2f}%"
        return f"{100 * self.mean:.2f} ± {100 * self.std:.2f}%"

    def fmt(self, percent: bool = True) -> str:
        """pct(), or '0.412 ± 0.013' for values that are not fractions."""
        if percent:
            return self.pct()
        return f"{self.mean:.3f}" if self.n == 1 else f"{self.mean:.3f} ± {self.std:.3f}"


def summarize(values) -> Summary:
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        raise ValueError("no values to summarise")
    return Summary(float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, tuple(float(x) for x in v))


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        even = m * (b - m) * x / ((qam + m2) * (a + m2))
        odd = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        for num in (even, odd):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom (any df > 0, not only integers)."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p, by bisection on t_cdf (to 1e-12)."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"need 0 < p < 1 and df > 0, got p={p}, df={df}")
    lo, hi = -1e3, 1e3
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class Difference:
    """mean(a) - mean(b) with a `confidence` interval."""
    diff: float
    low: float
    high: float
    confidence: float
    method: str          # "paired t" | "Welch t" | "one seed"
    agree: int           # paired: seeds where a < b; else pairs (i, j) with a_i < b_j
    of: int

    @property
    def resolved(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict:
        return {"diff": self.diff, "low": self.low, "high": self.high, "confidence": self.confidence,
                "method": self.method, "resolved": self.resolved, "a_lower": self.agree, "of": self.of}


def difference(a, b, confidence: float = 0.95, paired: bool | None = None) -> Difference:
    """Interval for mean(a) - mean(b). paired=None: paired when both have the same number of values
    (the same seeds, in the same order). One value each: no interval (never resolved)."""
    a, b = np.asarray(list(a), np.float64), np.asarray(list(b), np.float64)
    if a.size == 0 or b.size == 0:
        raise ValueError("no values to compare")
    paired = a.size == b.size if paired is None else paired
    q = 0.5 + confidence / 2.0
    if paired and a.size > 1:
        d = a - b
        half = t_quantile(q, d.size - 1) * float(d.std(ddof=1)) / math.sqrt(d.size)
        mean = float(d.mean())
        return Difference(mean, mean - half, mean + half, confidence, "paired t", int((d < 0).sum()), d.size)
    mean = float(a.mean() - b.mean())
    agree = int((a[:, None] < b[None, :]).sum())
    if a.size < 2 or b.size < 2:
        return Difference(mean, -math.inf, math.inf, confidence, "one seed", agree, a.size * b.size)
    va, vb = float(a.var(ddof=1)) / a.size, float(b.var(ddof=1)) / b.size
    se = math.sqrt(va + vb)
    if se == 0:
        return Difference(mean, mean, mean, confidence, "Welch t", agree, a.size * b.size)
    df = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    half = t_quantile(q, df) * se
    return Difference(mean, mean - half, mean + half, confidence, "Welch t", agree, a.size * b.size)


def compare(name_a: str, a, name_b: str, b, what: str = "error",
            confidence: float = 0.95, percent: bool = True) -> tuple[str, Difference]:
    """A verdict sentence on whether `name_a` has a lower `what` than `name_b` (values are fractions,
    shown as percent and points, unless percent=False), and the Difference behind it."""
    d = difference(a, b, confidence)
    sa, sb = summarize(a), summarize(b)
    both = f"{name_a} {sa.fmt(percent)} vs {name_b} {sb.fmt(percent)} {what}"
    k, unit, f = (100, " points", ".2f") if percent else (1, "", ".3f")
    interval = (f"difference {k * d.diff:+{f}}{unit}, {100 * confidence:.0f}% {d.method} interval "
                f"[{k * d.low:+{f}}, {k * d.high:+{f}}]" if d.method != "one seed" else "one seed each")
    agree = f"{d.agree} of {d.of} {'seeds' if d.method == 'paired t' else 'pairs'} have {name_a} lower"
    if not d.resolved:
        return f"not resolved at this budget: {both} ({interval}; {agree})", d
    lower, higher = (name_a, name_b) if d.diff < 0 else (name_b, name_a)
    return f"{lower} has the lower {what}: {both} ({interval}; {agree})", d
