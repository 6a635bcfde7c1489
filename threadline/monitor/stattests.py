"""Two-sample drift statistics computed from binned counts, and multiple-testing corrections.

Every function here takes two count vectors over the same bins (the reference's and the
window's), never raw rows: a check costs O(bins) once a window is summarised, and the
summaries of consecutive windows add up. The price of binning is documented per test:

* `chi_square`: the 2 x k test of homogeneity (both rows are samples). Exact for binned data.
* `ks_binned`: Kolmogorov-Smirnov with the CDFs compared only at bin edges, so the statistic
  is at most the unbinned one and its p-value is *conservative* (never too small); with 64
  quantile bins the loss is at most one bin's mass, 1/64, of the distance.
* `wasserstein_binned`: the L1 distance between the CDFs, integrated piecewise over bins,
  outer bins bounded by the reference min/max: an approximation, within about half a bin
  width of the exact distance.
* `psi` and `js_distance`: effect sizes with no p-value, smoothed so an empty bin on one side
  (a new category) gives a large finite value, not infinity.

Counts may be floats: a reference built from a sketch is rescaled to its effective size.

The two distributions needed (chi-square and Kolmogorov tails) are computed here rather than
taken from scipy, which is not a dependency of threadline; the tests check them against
`scipy.stats.chi2.sf` and `scipy.stats.kstwo.sf`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from threadline.errors import InvalidArgument

Counts = np.ndarray[Any, np.dtype[np.float64]]

#: added to each bin's share before logarithms (PSI, JS): a bin empty on one side stays finite
SMOOTHING = 1e-4


def _shares(counts: Counts) -> Counts:
    total = float(counts.sum())
    return counts / total if total > 0 else np.zeros_like(counts)


def psi(ref: Counts, cur: Counts) -> float:
    """Population stability index: sum((q - p) * ln(q / p)) over bins, shares smoothed.

    Rules of thumb: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift. Its sampling
    noise is about (bins - 1) * (1/n_ref + 1/n_cur), so compare it with a p-value, not alone.
    """
    p = _shares(ref) + SMOOTHING
    q = _shares(cur) + SMOOTHING
    return float(np.sum((q - p) * np.log(q / p)))


def js_distance(ref: Counts, cur: Counts) -> float:
    """Jensen-Shannon distance (square root of the divergence, base 2): 0 same, 1 disjoint."""
    p = _shares(ref) + SMOOTHING
    q = _shares(cur) + SMOOTHING
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)
    divergence = 0.5 * float(np.sum(p * np.log2(p / m))) + 0.5 * float(np.sum(q * np.log2(q / m)))
    return math.sqrt(max(divergence, 0.0))


def chi_square(ref: Counts, cur: Counts) -> tuple[float, float]:
    """Chi-square test of homogeneity of two count vectors: (statistic, p-value).

    Bins empty in both are dropped (they carry no information); fewer than two bins left
    means nothing can differ, so the statistic is 0 and the p-value 1.
    """
    keep = (ref + cur) > 0
    r, c = ref[keep], cur[keep]
    n_r, n_c = float(r.sum()), float(c.sum())
    if r.size < 2 or n_r <= 0 or n_c <= 0:
        return 0.0, 1.0
    total = r + c
    e_r = total * (n_r / (n_r + n_c))
    e_c = total * (n_c / (n_r + n_c))
    statistic = float(np.sum((r - e_r) ** 2 / e_r) + np.sum((c - e_c) ** 2 / e_c))
    return statistic, chi2_sf(statistic, r.size - 1)


def ks_binned(ref: Counts, cur: Counts) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov from binned counts: (D, p-value).

    D is the largest CDF gap at a bin edge; the p-value is the Kolmogorov distribution at the
    effective size n_ref * n_cur / (n_ref + n_cur), the usual approximation of the two-sample
    test (conservative here, see the module).
    """
    n_r, n_c = float(ref.sum()), float(cur.sum())
    if n_r <= 0 or n_c <= 0:
        return 0.0, 1.0
    d = float(np.max(np.abs(np.cumsum(ref) / n_r - np.cumsum(cur) / n_c)))
    return d, kolmogorov_sf(d, n_r * n_c / (n_r + n_c))


def wasserstein_binned(
    ref: Counts, cur: Counts, edges: np.ndarray[Any, np.dtype[np.float64]], lo: float, hi: float
) -> float:
    """Earth mover's distance between binned distributions, in the units of the values.

    `ref` and `cur` count the values in the len(edges) + 1 bins that `edges` (sorted,
    finite) cut; the CDF gap at each edge is weighted by half the distance to the edges on
    either side, the outer bins bounded by `lo` and `hi` (the reference's min and max).
    """
    n_r, n_c = float(ref.sum()), float(cur.sum())
    if n_r <= 0 or n_c <= 0 or edges.size == 0:
        return 0.0
    gap = np.abs(np.cumsum(ref)[:-1] / n_r - np.cumsum(cur)[:-1] / n_c)
    # an infinite min or max would make the outer bins infinitely wide: bound them by the edge
    first, last = float(edges[0]), float(edges[-1])
    lo = min(lo, first) if math.isfinite(lo) else first
    hi = max(hi, last) if math.isfinite(hi) else last
    bounds = np.concatenate([[lo], edges, [hi]])
    widths = 0.5 * (bounds[2:] - bounds[:-2])
    return float(np.dot(gap, widths))


def chi2_sf(x: float, df: int) -> float:
    """P(X >= x) for X chi-square with `df` degrees of freedom: Q(df/2, x/2).

    The regularised upper incomplete gamma function, by its series below a + 1 and by Lentz's
    continued fraction above (Numerical Recipes 6.2); relative error ~1e-13.
    """
    if x <= 0 or df <= 0:
        return 1.0
    a, z = 0.5 * df, 0.5 * x
    log_front = a * math.log(z) - z - math.lgamma(a)
    if z < a + 1.0:  # series for the lower function P(a, z)
        term = total = 1.0 / a
        k = a
        for _ in range(10_000):
            k += 1.0
            term *= z / k
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return float(min(1.0, max(0.0, 1.0 - total * math.exp(log_front))))
    tiny = 1e-300
    b = z + 1.0 - a
    c, d = 1.0 / tiny, 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return float(min(1.0, max(0.0, math.exp(log_front) * h)))


def kolmogorov_sf(d: float, n: float) -> float:
    """P(D_n >= d) for the Kolmogorov statistic of `n` observations (n may be fractional).

    Stephens' (1970) finite-sample form: the limiting tail 2 * sum((-1)^(k-1) exp(-2 k^2 t^2))
    at t = d * (sqrt(n) + 0.12 + 0.11 / sqrt(n)); within ~1% of the exact tail for n >= 5,
    and exactly the limit as n grows.
    """
    if d <= 0 or n <= 0:
        return 1.0
    if d >= 1:
        return 0.0
    root = math.sqrt(n)
    t = d * (root + 0.12 + 0.11 / root)
    if t < 0.2:  # the series converges slowly here, and the tail is 1 to 1e-10
        return 1.0
    total, sign = 0.0, 1.0
    for k in range(1, 101):
        term = math.exp(-2.0 * k * k * t * t)
        total += sign * term
        if term < 1e-17:
            break
        sign = -sign
    return float(min(1.0, max(0.0, 2.0 * total)))


def adjust(p_values: list[float], method: str) -> list[float]:
    """P-values adjusted for testing many columns at once, in the input order.

    Args:
        p_values: one p-value per test.
        method: "bh" (Benjamini-Hochberg: controls the false discovery rate; the default,
            as it keeps power when several columns really drift), "holm" (controls the
            family-wise error rate; stricter), or "none".

    Raises:
        InvalidArgument: an unknown method.
    """
    m = len(p_values)
    if m == 0 or method == "none":
        return list(p_values)
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if method == "bh":
        scaled = ranked * m / np.arange(1, m + 1)
        adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    elif method == "holm":
        scaled = ranked * (m - np.arange(m))
        adjusted = np.maximum.accumulate(scaled)
    else:
        raise InvalidArgument(f"unknown correction {method!r}; use 'bh', 'holm' or 'none'")
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return [float(x) for x in out]


__all__ = ["SMOOTHING", "adjust", "chi2_sf", "chi_square", "js_distance", "kolmogorov_sf", "ks_binned", "psi",
           "wasserstein_binned"]
