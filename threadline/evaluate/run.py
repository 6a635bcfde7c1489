"""`evaluate`: score a registered model on a committed table, optionally against a champion.

    from threadline.evaluate import evaluate

    result = evaluate(repos, "churn@3", "churn-splits@main:validation.parquet",
                      target="churned", slice_by=["plan"], against="churn@production")
    result.metrics["roc_auc"], result.intervals["roc_auc"], result.comparison

The table is read at the commit its ref resolves to (recorded with the result); each model
gets the columns its signature names (the target and other columns are dropped), and every
model predicts the same rows, so the comparison is paired.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from threadline.data.tables import read_table
from threadline.errors import InvalidArgument
from threadline.evaluate.bootstrap import LEVEL, REPLICATES, interval, replicate
from threadline.evaluate.compare import from_samples
from threadline.evaluate.curves import diagnostics
from threadline.evaluate.metrics import Predictions, Task, check_task, encode, infer_task, point
from threadline.evaluate.record import record as record_run
from threadline.evaluate.result import DataInfo, EvaluationResult, ModelInfo
from threadline.evaluate.slices import slice_metrics
from threadline.registry.registry import ModelRegistry

if TYPE_CHECKING:
    from collections.abc import Sequence

    from threadline.data.repos import DataRepos
    from threadline.registry.records import ModelVersion


def _columns_of(signature: dict[str, Any]) -> list[str] | None:
    inputs = (signature or {}).get("inputs") or {}
    if inputs.get("type") == "columns":
        return [str(c["name"]) for c in inputs["columns"]]
    return None


def features(table: Any, version: ModelVersion, model: Any, target: str, ref: str) -> Any:
    """The model's input: the columns its signature names, as a data frame (or an array).

    A model whose signature is a tensor (registered with an array example) takes every
    column but the target, in table order, as a 2-D array; the count must match.
    """
    names = _columns_of(version.signature)
    if names is None and hasattr(model, "feature_names_in_"):
        names = [str(n) for n in model.feature_names_in_]
    if names is not None:
        missing = [n for n in names if n not in table.column_names]
        if missing:
            raise InvalidArgument(
                f"{ref} lacks feature column(s) {', '.join(map(repr, missing))} that "
                f"{version.uri} takes; the table has {', '.join(table.column_names)}")
        try:
            import pandas  # noqa: F401 - frames keep column names, which fitted models check
        except ImportError:
            return table.select(names)
        return table.select(names).to_pandas()
    rest = [c for c in table.column_names if c != target]
    shape = ((version.signature or {}).get("inputs") or {}).get("shape") or []
    if len(shape) == 2 and shape[1] not in (-1, len(rest)):
        raise InvalidArgument(
            f"{version.uri} takes {shape[1]} features but {ref} has {len(rest)} columns besides "
            f"the target {target!r}; evaluate on a table of the model's features and the target")
    return np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for c in rest])


def predict(model: Any, x: Any, task: Task | None, y: np.ndarray) -> tuple[Task, Predictions]:
    """Run the model; the task is inferred from it and the target unless given."""
    chosen = task or infer_task(model, y)
    pred = np.asarray(model.predict(x))
    if pred.ndim == 2 and pred.shape[1] == 1:
        pred = pred[:, 0]
    proba = classes = None
    if chosen == "classification" and callable(getattr(model, "predict_proba", None)):
        classes = getattr(model, "classes_", None)
        if classes is not None:  # without the class order the columns cannot be matched
            proba = np.asarray(model.predict_proba(x))
    return chosen, encode(chosen, y, pred, proba, classes)


def _model_info(uri: str, version: ModelVersion) -> ModelInfo:
    return ModelInfo(uri, version.name, version.version, version.flavor)


def _notes(p: Predictions, dropped: int, target: str) -> list[str]:
    notes = []
    if dropped:
        notes.append(f"{dropped} row(s) with no value of {target!r} were left out")
    if p.task == "regression":
        zeros = int((p.y == 0).sum())
        if zeros:
            notes.append(f"mape skips the {zeros} row(s) whose actual value is 0")
    elif p.proba is None:
        notes.append("the model gives no class probabilities: no ROC AUC, log loss or calibration")
    return notes


def evaluate(
    registry_or_repos: ModelRegistry | DataRepos,
    model_uri: str,
    data_ref: str,
    *,
    target: str,
    slice_by: Sequence[str] = (),
    against: str | None = None,
    task: str | None = None,
    seed: int = 0,
    replicates: int = REPLICATES,
    record: bool = True,
    trusted: Sequence[str] = (),
    allow_pickle: bool = False,
    allow_code: bool = False,
) -> EvaluationResult:
    """Evaluate a registered model on a committed table, and record it as a run.

    Args:
        registry_or_repos: the registry, or the data layer to open one on.
        model_uri: `name`, `name@version` or `name@alias` (the challenger when `against`).
        data_ref: the table, e.g. `churn-splits@main:validation.parquet`.
        target: the column of actual values.
        slice_by: columns to report metrics per value (or per quantile bin) of.
        against: a champion to compare with on the same rows, e.g. `churn@production`.
        task: `classification` or `regression`; default: inferred from model and target.
        seed: the bootstrap's seed (same seed, same intervals).
        replicates: bootstrap replicates.
        record: store the evaluation as a run of experiment `evaluations`.
        trusted, allow_pickle, allow_code: what loading the models may build
            (see `ModelRegistry.load_model`).

    Raises:
        InvalidArgument: the target, a slice column or a feature column is missing.
        NotFound: the model, version, alias or data ref does not exist.
    """
    registry = (registry_or_repos if isinstance(registry_or_repos, ModelRegistry)
                else ModelRegistry(registry_or_repos))
    repos = registry.repos
    chosen = check_task(task) if task is not None else None
    version = registry.get_version(model_uri)
    champion = registry.get_version(against) if against else None
    resolved = repos.resolve(data_ref)
    commit = resolved.require_commit()
    data = DataInfo(data_ref, resolved.repo.name, commit.id, resolved.path or "")
    table = read_table(repos, f"{data.repo}@{commit.id}:{data.path}" if data.path else data_ref)
    for column, what in [(target, "target"), *((s, "slice") for s in slice_by)]:
        if column not in table.column_names:
            raise InvalidArgument(f"{data_ref} has no {what} column {column!r}; its columns are "
                                  f"{', '.join(table.column_names)}")
    import pyarrow.compute as pc  # heavy: only when evaluating

    rows_read = table.num_rows
    table = table.filter(pc.is_valid(table.column(target)))
    if table.num_rows == 0:
        raise InvalidArgument(f"{data_ref} has no rows with a value of {target!r} to evaluate on")
    y = table.column(target).to_numpy(zero_copy_only=False)
    model = registry.load_version(version, trusted=trusted, allow_pickle=allow_pickle,
                                  allow_code=allow_code)
    chosen, preds = predict(model, features(table, version, model, target, data_ref), chosen, y)
    base: Predictions | None = None
    if champion is not None:
        other = registry.load_version(champion, trusted=trusted, allow_pickle=allow_pickle,
                                      allow_code=allow_code)
        _, base = predict(other, features(table, champion, other, target, data_ref), chosen, y)
    samples = replicate([preds] if base is None else [preds, base], replicates, seed)
    metrics = point(preds)
    against_metrics = point(base) if base is not None else {}
    result = EvaluationResult(
        model=_model_info(model_uri, version), data=data, target=target, task=chosen,
        rows=preds.rows, seed=seed, replicates=replicates,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        metrics=metrics, intervals={k: interval(v, LEVEL) for k, v in samples[0].items()},
        diagnostics=diagnostics(preds),
        slices=slice_metrics(preds, {c: table.column(c).to_numpy(zero_copy_only=False)
                                     for c in slice_by}, slice_by),
        against=_model_info(against, champion) if against and champion else None,
        against_metrics=against_metrics,
        comparison=(from_samples(against_metrics, metrics, samples[1], samples[0])
                    if base is not None else []),
        notes=_notes(preds, rows_read - table.num_rows, target),
    )
    return record_run(repos, result) if record else result
