"""Drift checks: every column of a window against its reference, with few false alarms.

`check_drift(reference, summarise(reference, window))` gives a `DriftReport`: per column a
test, its p-value, the p-value adjusted across columns, effect sizes, and a verdict. Model
outputs are checked the same way: include the prediction column in the reference (from the
validation predictions) and in the window.

How a verdict is reached, and why:

1. **Test by type and size** (`tests=` overrides per column). Numeric columns use
   Kolmogorov-Smirnov when the window holds fewer than `KS_MAX_ROWS` rows (the stronger test
   for shifts in small samples, where 64 bins would hold a handful of values each) and the
   chi-square test over the reference bins otherwise (it sees shape and spread changes that
   KS is weak on, and binned KS is conservative). Categorical columns use chi-square over the
   listed categories and "other". Nulls are one more bin in every test (last in KS order),
   so a jump in the null rate is a change in distribution.
2. **Correction across columns**: p-values are adjusted by Benjamini-Hochberg (false
   discovery rate; `correction="holm"` for family-wise control, "none" to switch off), so
   fifty clean columns do not give 2.5 alarms per check at alpha = 0.05.
3. **Significant and large enough**: at 100k rows a shift of 0.01 standard deviations is
   significant and nobody's concern. A column drifts only if its adjusted p-value is under
   `alpha` AND its effect reaches `min_effect`: Wasserstein distance in units of the
   reference spread for numeric columns (0.05: a twentieth of a standard deviation), PSI for
   categorical ones (0.02), or a change of the null share (0.01) for either. Effects are
   reported for every column, so subtle shifts are visible without raising alarms.
4. **No verdict, never an exception**, for a column missing from the window, an empty or
   all-null window, fewer than `min_rows` rows, or a reference without values.

With effect-only tests (`"psi"`, `"jensenshannon"`, `"wasserstein"` in `tests=`) there is no
p-value; the verdict is the effect against `min_effect` alone (as most drift tools do).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from threadline.errors import InvalidArgument
from threadline.monitor import stattests
from threadline.monitor.reference import NumericReference

if TYPE_CHECKING:
    from collections.abc import Mapping

    from threadline.monitor.reference import ColumnReference, Reference
    from threadline.monitor.window import ColumnWindow, WindowSummary

Test = Literal["auto", "ks", "chisquare", "psi", "jensenshannon", "wasserstein"]
Correction = Literal["bh", "holm", "none"]

TESTS: tuple[str, ...] = ("auto", "ks", "chisquare", "psi", "jensenshannon", "wasserstein")
#: below this many window rows a numeric column is tested with KS, from here on with chi-square
KS_MAX_ROWS = 1000
#: the smallest effect that counts as drift, per effect measure (see the module docstring)
DEFAULT_MIN_EFFECT: dict[str, float] = {
    "wasserstein": 0.05,  # in reference standard deviations (IQR / 1.349)
    "psi": 0.02,
    "jensenshannon": 0.05,
    "null_rate": 0.01,  # absolute change of the null share
}
_EFFECT_ONLY = ("psi", "jensenshannon", "wasserstein")
Float64s = np.ndarray[Any, np.dtype[np.float64]]


@dataclass(frozen=True)
class ColumnDrift:
    """One column's result.

    Attributes:
        column: the column name.
        kind: "numeric" or "categorical".
        test: the test used ("ks", "chisquare", or an effect-only measure); "" without verdict.
        statistic: the test's statistic (KS D, chi-square, or the effect measure).
        p_value: the raw p-value (None for effect-only tests and without verdict).
        p_adjusted: the p-value after the correction across columns.
        effect: the effect measure the verdict rests on ("wasserstein", "psi", "null_rate"...).
        effect_value: its value.
        effects: every effect measured, by name.
        drifted: True/False, or None for no verdict.
        rows: window rows (nulls included); nulls: window nulls.
        reason: why there is no verdict, or "".
        unlisted: most frequent window values outside a categorical reference's categories.
    """

    column: str
    kind: str
    test: str
    statistic: float | None
    p_value: float | None
    p_adjusted: float | None
    effect: str
    effect_value: float | None
    effects: dict[str, float]
    drifted: bool | None
    rows: int
    nulls: int
    reason: str = ""
    unlisted: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class DriftReport:
    """A drift check's results: one `ColumnDrift` per reference column, and the settings used."""

    columns: list[ColumnDrift]
    rows: int
    reference_rows: int
    alpha: float
    correction: str
    min_effect: dict[str, float]

    @property
    def drifted(self) -> list[str]:
        """Names of the columns that drifted."""
        return [c.column for c in self.columns if c.drifted]

    @property
    def no_verdict(self) -> list[str]:
        """Names of the columns without a verdict."""
        return [c.column for c in self.columns if c.drifted is None]

    @property
    def share(self) -> float:
        """Drifted columns as a share of the columns with a verdict (0.0 when none has one)."""
        judged = sum(1 for c in self.columns if c.drifted is not None)
        return len(self.drifted) / judged if judged else 0.0

    def column(self, name: str) -> ColumnDrift:
        """The result of one column.

        Raises:
            InvalidArgument: no such column in the report.
        """
        for c in self.columns:
            if c.column == name:
                return c
        raise InvalidArgument(f"column {name!r} is not in the drift report; it has "
                              f"{[c.column for c in self.columns]}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (no NaN or infinity: those become None)."""
        return {"rows": self.rows, "reference_rows": self.reference_rows, "alpha": self.alpha,
                "correction": self.correction, "min_effect": dict(self.min_effect),
                "drifted": self.drifted, "share": self.share, "no_verdict": self.no_verdict,
                "columns": [_clean(asdict(c)) for c in self.columns]}


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def check_drift(
    reference: Reference,
    window: WindowSummary,
    *,
    alpha: float = 0.05,
    correction: Correction = "bh",
    min_effect: Mapping[str, float] | None = None,
    tests: Mapping[str, Test] | None = None,
    min_rows: int = 10,
) -> DriftReport:
    """Check each reference column of a summarised window for drift.

    Args:
        reference: the reference summary (training data).
        window: the window, summarised against `reference` (`summarise`), possibly merged.
        alpha: the significance level after correction.
        correction: "bh" (Benjamini-Hochberg, default), "holm" or "none".
        min_effect: the smallest effect that counts, per measure; merged over
            `DEFAULT_MIN_EFFECT` (keys "wasserstein", "psi", "jensenshannon", "null_rate").
        tests: a test per column overriding the automatic choice.
        min_rows: fewer window rows than this give no verdict.

    Raises:
        InvalidArgument: a bad setting, an unknown test, or a window summarised against
            another reference.
    """
    if not 0.0 < alpha < 1.0:
        raise InvalidArgument(f"alpha={alpha} must be between 0 and 1 (e.g. 0.05)")
    if correction not in ("bh", "holm", "none"):
        raise InvalidArgument(f"unknown correction {correction!r}; use 'bh', 'holm' or 'none'")
    thresholds = {**DEFAULT_MIN_EFFECT, **(min_effect or {})}
    chosen = dict(tests or {})
    for name, test in chosen.items():
        if test not in TESTS:
            raise InvalidArgument(f"unknown test {test!r} for column {name!r}; use one of {list(TESTS)}")
    if window.reference != reference.fingerprint():
        raise InvalidArgument("the window was summarised against another reference (its bins differ); "
                              "summarise it again with `summarise(reference, rows)`")
    raw = [_one(ref, window.columns.get(name), chosen.get(name, "auto"), min_rows)
           for name, ref in reference.columns.items()]
    tested = [i for i, r in enumerate(raw) if r.p_value is not None]
    adjusted = stattests.adjust([raw[i].p_value or 0.0 for i in tested], correction)
    p_adj: dict[int, float] = dict(zip(tested, adjusted, strict=True))
    results = [_verdict(r, p_adj.get(i), alpha, thresholds) for i, r in enumerate(raw)]
    return DriftReport(results, window.rows, reference.rows, alpha, correction, thresholds)


@dataclass(frozen=True)
class _Measured:
    column: str
    kind: str
    test: str
    statistic: float | None
    p_value: float | None
    effects: dict[str, float]
    rows: int
    nulls: int
    reason: str
    unlisted: dict[str, int]


def _one(ref: ColumnReference, cur: ColumnWindow | None, test: Test, min_rows: int) -> _Measured:
    if cur is None:
        return _Measured(ref.name, ref.kind, "", None, None, {}, 0, 0,
                         "not in the window: log the column, or drop it from the reference", {})
    rows, values = cur.rows, int(cur.counts.sum())
    reason = ""
    if rows < min_rows:
        reason = f"the window has {rows} rows; a verdict needs at least {min_rows} (min_rows)"
    elif values == 0:
        reason = f"no values in the window: all {rows} rows are null"
    elif int(ref.counts.sum()) == 0:
        reason = "the reference has no values in this column; rebuild it from data that do"
    if reason:
        return _Measured(ref.name, ref.kind, "", None, None, {}, rows, cur.nulls, reason, cur.unlisted)
    # reference counts scaled to the rows the tests may trust (fewer when it came from a sketch)
    weight = ref.effective_rows / ref.rows if ref.rows else 1.0
    ref_all = np.append(ref.counts, ref.nulls).astype(np.float64) * min(1.0, weight)
    cur_all = np.append(cur.counts, cur.nulls).astype(np.float64)
    effects = _effects(ref, cur, ref_all, cur_all)
    if test == "auto":
        test = "ks" if ref.kind == "numeric" and rows < KS_MAX_ROWS else "chisquare"
    if test == "wasserstein" and not isinstance(ref, NumericReference):
        raise InvalidArgument(f"column {ref.name!r} is categorical: Wasserstein needs ordered values; "
                              "use 'chisquare', 'psi' or 'jensenshannon'")
    if test in _EFFECT_ONLY:
        return _Measured(ref.name, ref.kind, test, effects[test], None, effects, rows, cur.nulls, "",
                         cur.unlisted)
    statistic, p = (stattests.ks_binned(ref_all, cur_all) if test == "ks"
                    else stattests.chi_square(ref_all, cur_all))
    return _Measured(ref.name, ref.kind, test, statistic, p, effects, rows, cur.nulls, "", cur.unlisted)


def _effects(ref: ColumnReference, cur: ColumnWindow, ref_all: Float64s,
             cur_all: Float64s) -> dict[str, float]:
    out = {"psi": stattests.psi(ref_all, cur_all), "jensenshannon": stattests.js_distance(ref_all, cur_all),
           "null_rate": abs(cur.nulls / cur.rows - ref.nulls / ref.rows) if ref.rows else 0.0}
    if isinstance(ref, NumericReference):
        distance = stattests.wasserstein_binned(ref.counts.astype(np.float64), cur.counts.astype(np.float64),
                                                ref.edges, ref.lo, ref.hi)
        out["wasserstein"] = distance / ref.scale
    return out


def _verdict(m: _Measured, p_adjusted: float | None, alpha: float,
             thresholds: Mapping[str, float]) -> ColumnDrift:
    if m.reason:
        return ColumnDrift(m.column, m.kind, "", None, None, None, "", None, {}, None, m.rows, m.nulls,
                           m.reason, m.unlisted)
    primary = m.test if m.test in _EFFECT_ONLY else ("wasserstein" if m.kind == "numeric" else "psi")
    big = m.effects[primary] >= thresholds[primary]
    effect = primary
    if not big and m.effects["null_rate"] >= thresholds["null_rate"]:
        big, effect = True, "null_rate"
    drifted = big if m.p_value is None else bool(big and p_adjusted is not None and p_adjusted < alpha)
    return ColumnDrift(m.column, m.kind, m.test, m.statistic, m.p_value, p_adjusted, effect,
                       m.effects[effect], m.effects, drifted, m.rows, m.nulls, "", m.unlisted)


__all__ = ["DEFAULT_MIN_EFFECT", "KS_MAX_ROWS", "TESTS", "ColumnDrift", "Correction", "DriftReport", "Test",
           "check_drift"]
