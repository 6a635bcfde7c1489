"""One monitoring pass over a deployment's newest traffic: drift, accuracy, latency, errors.

A pass takes the window of the prediction log after the previous pass (or the last `rows` /
`minutes` the policy names), and for each version that answered in it compares the window's
summary with the version's reference summary (drift), scores the labelled rows (realised
accuracy), estimates accuracy from the model's own probabilities (before labels arrive), and
measures latency and the error rate. The result is stored as a check row and flattened into
the dotted values alert rules read (`drift.share`, `accuracy.value`, `latency.p95_ms`, ...).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select

from threadline.data.tables import TABLE_SUFFIXES, read_table
from threadline.errors import NotFound
from threadline.meta.models import MonitorCheckRow
from threadline.monitor.accuracy import (
    INPUT_PREFIX,
    Calibration,
    estimate_accuracy,
    realised,
    top_probability,
)
from threadline.monitor.drift import check_drift
from threadline.monitor.reference import Reference
from threadline.monitor.version_reference import reference_for_version
from threadline.monitor.window import summarise
from threadline.serving.feedback import join_feedback

if TYPE_CHECKING:
    from threadline.monitor.policy import Policy
    from threadline.registry.registry import ModelRegistry


@dataclass
class CheckResult:
    """What one pass found for one deployment."""

    id: str
    deployment: str
    window_start: int
    window_end: int
    rows: int
    verdict: str
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: versions answering a copy of the traffic (shadow routes): rows, accuracy, errors, latency
    shadows: dict[str, dict[str, Any]] = field(default_factory=dict)
    values: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (stored in the check row, printed by `threadline monitor run --json`)."""
        return {"id": self.id, "deployment": self.deployment, "window_start": self.window_start,
                "window_end": self.window_end, "rows": self.rows, "verdict": self.verdict,
                "versions": self.versions, "shadows": self.shadows, "values": self.values}


#: training rows scored to summarise a version's own predictions
PREDICTION_SAMPLE = 20_000


class References:
    """Reference summaries by version, built once per process (they never change)."""

    def __init__(self, registry: ModelRegistry, trusted: tuple[str, ...] = ()) -> None:
        self.registry = registry
        self.trusted = trusted
        self._cache: dict[str, Reference] = {}
        self._predictions: dict[str, Reference | None] = {}

    def predictions(self, version_uri: str) -> Reference | None:
        """The distribution of the version's own answers on (a sample of) its training table,
        summarised like an input column, so the answers served can be checked for drift too;
        None when the version records no readable training table."""
        if version_uri in self._predictions:
            return self._predictions[version_uri]
        version = self.registry.get_version(version_uri)
        inputs = (version.signature or {}).get("inputs") or {}
        columns = [str(c["name"]) for c in inputs.get("columns", [])]
        found: Reference | None = None
        entry = next((e for e in version.data if str(e.get("path") or "").lower().endswith(TABLE_SUFFIXES)),
                     None)
        if entry is not None and columns:
            table = read_table(self.registry.repos, f"{entry['repo']}@{entry['commit']}:{entry['path']}")
            if set(columns) <= set(table.column_names):
                frame = table.select(columns).slice(0, PREDICTION_SAMPLE).to_pandas()
                model = self.registry.load_version(version, trusted=self.trusted)
                answers = np.asarray(model.predict(frame))
                if answers.ndim == 1:
                    found = Reference.from_table({"prediction": answers})
        self._predictions[version_uri] = found
        return found

    def get(self, version_uri: str) -> Reference:
        """The reference summary of a version (`name@N`)."""
        found = self._cache.get(version_uri)
        if found is None:
            version = self.registry.get_version(version_uri)
            inputs = (version.signature or {}).get("inputs") or {}
            # the model's inputs only: a training table also holds labels, ids, ...
            columns = [str(c["name"]) for c in inputs.get("columns", [])] or None
            found = self._cache[version_uri] = reference_for_version(self.registry, version, columns)
        return found


def last_check(registry: ModelRegistry, deployment: str) -> MonitorCheckRow | None:
    """The newest stored check of a deployment."""
    with registry.db.session() as session:
        return session.scalar(select(MonitorCheckRow).where(MonitorCheckRow.deployment == deployment)
                              .order_by(MonitorCheckRow.created_at.desc()).limit(1))


def window(registry: ModelRegistry, deployment: str, policy: Policy, *,
           now_ms: int | None = None) -> tuple[pa.Table, pa.Table, int, int]:
    """The log rows a pass looks at, the whole labelled log they were taken from (read once:
    calibration uses the rows before the window), and the window's start and end (epoch ms)."""
    end = now_ms if now_ms is not None else int(time.time() * 1000)
    if policy.window_minutes is not None:
        start = end - int(policy.window_minutes * 60_000)
    else:
        previous = last_check(registry, deployment)
        start = previous.window_end if previous is not None and policy.incremental else 0
    try:
        joined = join_feedback(registry.repos, deployment)
    except NotFound:
        return read_empty(), read_empty(), start, end
    rows = joined.filter(pc.and_(pc.greater_equal(joined["ts"], start), pc.less(joined["ts"], end))) \
        if joined.num_rows else joined
    if policy.window_rows is not None and rows.num_rows > policy.window_rows:
        rows = rows.slice(rows.num_rows - policy.window_rows)
    return rows, joined, start, end


def by_version(rows: pa.Table) -> list[tuple[str, int, pa.Table]]:
    """The rows of each (model, version) that answered them, in name and version order."""
    keys = sorted({(m, int(v)) for m, v in zip(rows["model"].to_pylist(), rows["version"].to_pylist())})
    return [(model, version, rows.filter(pc.and_(pc.equal(rows["model"], model),
                                                 pc.equal(rows["version"], version))))
            for model, version in keys]


def read_empty() -> pa.Table:
    """An empty joined log."""
    return pa.table({"ts": pa.array([], pa.int64()), "version": pa.array([], pa.int64())})


def window_inputs(rows: pa.Table, reference: Reference, *, prefix: str = INPUT_PREFIX) -> dict[str, Any]:
    """The logged inputs the reference knows, as the reference types them: requests carry JSON
    numbers where training had booleans or codes, so a categorical reference gets text
    (booleans as "true"/"false") and a numeric one gets floats."""
    out: dict[str, Any] = {}
    for name, ref in reference.columns.items():
        column = f"{prefix}{name}"
        if column not in rows.column_names:
            continue
        values = rows[column].to_pylist()
        if ref.kind == "categorical":
            boolean = set(getattr(ref, "categories", ())) <= {"true", "false"}
            out[name] = pa.array([None if v is None else ("true" if v else "false") if boolean
                                  else str(v) for v in values], pa.string())
        else:
            out[name] = pa.array([None if v is None else float(v) for v in values], pa.float64())
    return out


def _version_checks(registry: ModelRegistry, references: References, policy: Policy,
                    model: str, version: int, rows: pa.Table, history: pa.Table) -> dict[str, Any]:
    uri = f"{model}@{version}"
    out: dict[str, Any] = live_stats(rows, policy)
    ok = rows.filter(pc.equal(rows["status"], 200)) if "status" in rows.column_names else rows
    try:
        reference = references.get(uri)
        report = check_drift(reference, _summary(reference, window_inputs(ok, reference), ok.num_rows,
                                                 policy), **policy.drift_options)
        out["drift"] = report.to_dict()
        answers = references.predictions(uri) if "prediction" in ok.column_names else None
        if answers is not None:
            served = {"prediction": ok["prediction"]}
            out["prediction_drift"] = check_drift(
                answers, summarise(answers, window_inputs(pa.table(served), answers, prefix="")),
                **policy.drift_options).to_dict()
    except (NotFound, ValueError) as exc:
        out["drift"] = {"error": str(exc)}
    if policy.estimate and ok.num_rows and policy.metric == "accuracy":
        try:
            confidence = top_probability(registry, uri, ok, trusted=policy.trusted)
            calibration = _calibration(registry, uri, history, policy)
            out["estimated_accuracy"] = {"value": estimate_accuracy(confidence, calibration),
                                         "calibrated": bool(calibration.x)}
        except ValueError as exc:  # InvalidArgument: no probabilities, no named inputs
            out["estimated_accuracy"] = {"value": None, "error": str(exc)}
    return out


def _summary(reference: Reference, columns: dict[str, Any], rows: int, policy: Policy) -> Any:
    """The window's summary: here, or on the policy's executor for a big window."""
    if policy.executor is None or rows < policy.parallel_rows:
        return summarise(reference, columns)
    from threadline.compute import open_executor
    from threadline.monitor.parallel import summarise_parallel

    parts = max(2, rows // max(policy.parallel_rows // 2, 1))
    with open_executor(policy.executor) as executor:
        return summarise_parallel(reference, columns, executor, parts=parts)


def _calibration(registry: ModelRegistry, uri: str, history: pa.Table, policy: Policy) -> Calibration:
    """Fitted on this version's labelled rows before the window (identity if too few)."""
    if "label" not in history.column_names or history.num_rows == 0:
        return Calibration()
    labelled = history.filter(pc.is_valid(history["label"]))
    if labelled.num_rows < 200:
        return Calibration()
    confidence = top_probability(registry, uri, labelled, trusted=policy.trusted)
    predicted = np.asarray(labelled["prediction"].to_pylist(), dtype=object).astype(str)
    actual = np.asarray(labelled["label"].to_pylist(), dtype=object).astype(str)
    return Calibration.fit(confidence, predicted == actual)


def run_check(registry: ModelRegistry, deployment: str, policy: Policy, *,
              references: References | None = None, now_ms: int | None = None) -> CheckResult:
    """Check the newest window of `deployment` and store the result."""
    references = references or References(registry)
    rows, joined, start, end = window(registry, deployment, policy, now_ms=now_ms)
    result = CheckResult(uuid.uuid4().hex, deployment, start, end, rows.num_rows, "no_verdict")
    if rows.num_rows:
        shadowed = pc.equal(rows["mode"], "shadow")
        for model, version, served in by_version(rows.filter(pc.invert(shadowed))):
            result.versions[f"{model}/{version}"] = _version_checks(
                registry, references, policy, model, version, served,
                _history(joined, model, version, start))
        for model, version, copied in by_version(rows.filter(shadowed)):
            result.shadows[f"{model}/{version}"] = live_stats(copied, policy)
        result.values = flatten(result.versions)
        result.verdict = verdict(result.versions, policy)
    with registry.db.session() as session, session.begin():
        session.add(MonitorCheckRow(id=result.id, deployment=deployment, kind="window",
                                    window_start=start, window_end=end, rows=result.rows,
                                    verdict=result.verdict, result=result.to_dict(),
                                    created_at=int(time.time() * 1000)))
    return result


def live_stats(rows: pa.Table, policy: Policy) -> dict[str, Any]:
    """Rows, error rate, latency and realised accuracy of some served (or shadowed) rows."""
    ok = rows.filter(pc.equal(rows["status"], 200)) if "status" in rows.column_names else rows
    latency = rows["latency_ms"].to_numpy() if "latency_ms" in rows.column_names else np.array([])
    points = realised(ok, metric=policy.metric) if "label" in ok.column_names else []
    labelled = sum(p.rows for p in points)
    accuracy = sum((p.value or 0) * p.rows for p in points) / labelled if labelled else None
    return {"rows": rows.num_rows,
            "error_rate": 1 - ok.num_rows / rows.num_rows if rows.num_rows else None,
            "latency": {"p50_ms": float(np.percentile(latency, 50)) if latency.size else None,
                        "p95_ms": float(np.percentile(latency, 95)) if latency.size else None},
            "accuracy": {"metric": policy.metric, "labelled_rows": labelled,
                         "value": accuracy}}


def _history(joined: pa.Table, model: str, version: int, before: int) -> pa.Table:
    """A version's logged rows before `before` (what its estimate is calibrated on)."""
    if not joined.num_rows:
        return joined
    mask = pc.and_(pc.and_(pc.equal(joined["model"], model), pc.equal(joined["version"], version)),
                   pc.less(joined["ts"], before))
    return joined.filter(mask)


def flatten(versions: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """Dotted values for alert rules: the whole deployment (traffic-weighted over versions)
    and, prefixed `version.<name/N>.`, each version."""
    values: dict[str, float | None] = {}
    total = sum(v["rows"] for v in versions.values()) or 1
    for vid, found in versions.items():
        drift = found.get("drift") or {}
        flat = {"rows": float(found["rows"]), "error_rate": found.get("error_rate"),
                "latency.p50_ms": found["latency"]["p50_ms"], "latency.p95_ms": found["latency"]["p95_ms"],
                "prediction_drift.drifted": (
                    float(bool((found.get("prediction_drift") or {}).get("drifted")))
                    if "prediction_drift" in found else None),
                "drift.share": drift.get("share"), "drift.drifted": (
                    float(len(drift.get("drifted", []))) if "drifted" in drift else None),
                "accuracy.value": found["accuracy"]["value"],
                "estimated_accuracy.value": (found.get("estimated_accuracy") or {}).get("value")}
        for stats in drift.get("columns") or []:
            flat[f"drift.columns.{stats['column']}.effect"] = stats.get("effect_value")
        for key, value in flat.items():
            values[f"version.{vid}.{key}"] = value
            if value is None or key == "rows":
                continue
            weight = found["rows"] / total
            values[key] = (values.get(key) or 0.0) + value * weight
    values["rows"] = float(sum(v["rows"] for v in versions.values()))
    return values


def verdict(versions: dict[str, dict[str, Any]], policy: Policy) -> str:
    """`drift` when a version's inputs drifted on a watched column, `breach` when accuracy or
    its estimate is under the policy's floor, `ok` otherwise (`no_verdict` without data)."""
    found = "no_verdict"
    for result in versions.values():
        drift = result.get("drift") or {}
        drifted = set(drift.get("drifted") or [])
        watched = set(policy.key_columns) if policy.key_columns else drifted
        accuracy = result["accuracy"]["value"]
        estimated = (result.get("estimated_accuracy") or {}).get("value")
        floor = policy.min_accuracy
        if floor is not None and ((accuracy is not None and accuracy < floor)
                                  or (estimated is not None and estimated < floor)):
            return "breach"
        if drifted & watched:
            found = "drift"
        elif found == "no_verdict" and ("drifted" in drift or accuracy is not None):
            found = "ok"
    return found
