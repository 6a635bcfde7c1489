"""Binned two-sample statistics and p-value corrections, checked against scipy's unbinned ones."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from threadline.errors import InvalidArgument
from threadline.monitor import stattests

scipy_stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize("df", [1, 2, 7, 64, 300])
def test_chi2_tail_matches_scipy(df: int) -> None:
    for x in np.linspace(0.01, 4 * df + 60, 40):
        expected = float(scipy_stats.chi2.sf(x, df))
        assert stattests.chi2_sf(float(x), df) == pytest.approx(expected, rel=1e-9, abs=1e-300)
    assert stattests.chi2_sf(0.0, df) == 1.0


@pytest.mark.parametrize("n", [5, 30, 1000, 100_000])
def test_kolmogorov_tail_is_within_a_tenth_of_a_point_of_scipys_exact_one(n: int) -> None:
    for p in (0.2, 0.05, 0.01, 0.001):
        d = float(scipy_stats.kstwo.isf(p, n))
        assert stattests.kolmogorov_sf(d, n) == pytest.approx(p, abs=1e-3, rel=0.25)
    assert stattests.kolmogorov_sf(0.0, n) == 1.0
    assert stattests.kolmogorov_sf(1.0, n) == 0.0


def test_chi_square_is_the_contingency_test_and_ignores_bins_empty_on_both_sides() -> None:
    ref = np.array([120.0, 80.0, 0.0, 50.0])
    cur = np.array([100.0, 95.0, 0.0, 70.0])
    stat, p = stattests.chi_square(ref, cur)
    expected = scipy_stats.chi2_contingency(np.vstack([ref[[0, 1, 3]], cur[[0, 1, 3]]]), correction=False)
    assert stat == pytest.approx(expected.statistic)
    assert p == pytest.approx(expected.pvalue)
    assert stattests.chi_square(np.array([5.0, 0.0]), np.array([7.0, 0.0])) == (0.0, 1.0)


Floats = np.ndarray[Any, np.dtype[np.float64]]


def _binned(x: Floats, y: Floats, bins: int = 64) -> tuple[Floats, Floats, Floats]:
    """Both samples counted in the bins cut at x's quantiles, and the cut points."""
    edges = np.unique(np.quantile(x, np.arange(1, bins) / bins))

    def count(v: Floats) -> Floats:
        return np.bincount(np.searchsorted(edges, v), minlength=edges.size + 1).astype(np.float64)

    return count(x), count(y), edges


def test_binned_ks_is_conservative_and_close_to_the_exact_test() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=5000), rng.normal(0.08, 1.0, size=4000)
    r, c, _ = _binned(x, y)
    d, p = stattests.ks_binned(r, c)
    exact = scipy_stats.ks_2samp(x, y)
    assert d <= exact.statistic + 1e-12
    assert d == pytest.approx(exact.statistic, abs=1 / 64)
    assert p >= exact.pvalue * 0.9  # never (much) smaller: binning only loses evidence


def test_binned_wasserstein_is_close_to_the_exact_distance() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=20_000), rng.normal(0.3, 1.4, size=20_000)
    r, c, edges = _binned(x, y)
    w = stattests.wasserstein_binned(r, c, edges, float(x.min()), float(x.max()))
    assert w == pytest.approx(scipy_stats.wasserstein_distance(x, y), rel=0.1)
    assert stattests.wasserstein_binned(r, r, edges, -1.0, 1.0) == 0.0


def test_psi_and_js_are_zero_for_equal_shares_and_finite_for_a_new_bin() -> None:
    a = np.array([10.0, 20.0, 30.0, 0.0])
    assert stattests.psi(a, 2 * a) == pytest.approx(0.0, abs=1e-12)
    assert stattests.js_distance(a, 3 * a) == pytest.approx(0.0, abs=1e-6)
    b = np.array([10.0, 20.0, 30.0, 15.0])
    assert 0.1 < stattests.psi(a, b) < math.inf
    assert 0.0 < stattests.js_distance(a, b) < 1.0


def test_benjamini_hochberg_and_holm_adjust_in_input_order() -> None:
    p = [0.04, 0.001, 0.03, 0.5]
    # BH: sorted 0.001, 0.03, 0.04, 0.5 -> 0.004, 0.053.., 0.053.., 0.5 (monotone from the top)
    assert stattests.adjust(p, "bh") == pytest.approx([0.04 * 4 / 3, 0.004, 0.04 * 4 / 3, 0.5])
    assert stattests.adjust(p, "holm") == pytest.approx([0.09, 0.004, 0.09, 0.5])
    assert stattests.adjust(p, "none") == p
    assert stattests.adjust([], "bh") == []
    with pytest.raises(InvalidArgument, match="unknown correction 'fdr'"):
        stattests.adjust(p, "fdr")
