"""Recording an evaluation as a tracked run, and finding the latest one again.

The run (experiment `evaluations`) holds params (model name/version, data commit, target,
seed), the metrics with their interval bounds, the report files as artifacts and the data
commit as its input; lineage gets `model_version -[evaluated]-> run` for each model scored.
Tags `model_version` and `data_commit` let `latest_evaluation` (registry/evaluations.py, which
promotion gates with `on:` use) find the newest evaluation of a version on a given table.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from threadline.evaluate.report import render_html
from threadline.lineage.graph import Edge, add_edges
from threadline.registry.evaluations import (
    EXPERIMENT,
    TAG_CHAMPION,
    TAG_COMMIT,
    TAG_VERSION,
    latest_evaluation,
)
from threadline.registry.versions import version_node
from threadline.tracking.active import active_run, start_run
from threadline.tracking.model import run_node
from threadline.tracking.store import TrackingStore

if TYPE_CHECKING:
    from threadline.data.repos import DataRepos
    from threadline.evaluate.result import EvaluationResult

RELATION = "evaluated"
JSON_FILE = "evaluation.json"
HTML_FILE = "report.html"


def _metric_values(result: EvaluationResult) -> dict[str, float]:
    """Flat metrics of the run: `accuracy`, `accuracy.ci_low`, `champion.accuracy`, `diff...`."""
    out: dict[str, float] = {}
    for name, value in result.metrics.items():
        if value is not None:
            out[name] = value
        ci = result.intervals.get(name)
        if ci is not None and ci.low is not None and ci.high is not None:
            out[f"{name}.ci_low"], out[f"{name}.ci_high"] = ci.low, ci.high
    for name, value in result.against_metrics.items():
        if value is not None:
            out[f"champion.{name}"] = value
    for c in result.comparison:
        if c.difference is not None:
            out[f"diff.{c.metric}"] = c.difference
    return out


def _params(result: EvaluationResult) -> dict[str, Any]:
    params: dict[str, Any] = {
        "model": result.model.name, "model_version": result.model.version,
        "model_uri": result.model.uri, "data_ref": result.data.ref,
        "data_commit": result.data.commit, "target": result.target, "task": result.task,
        "seed": result.seed, "replicates": result.replicates, "rows": result.rows,
    }
    if result.against is not None:
        params.update({"champion": result.against.name, "champion_version": result.against.version,
                       "champion_uri": result.against.uri})
    return params


def write_files(result: EvaluationResult, folder: Path) -> None:
    """Write `evaluation.json` and `report.html` into `folder`."""
    (folder / JSON_FILE).write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    (folder / HTML_FILE).write_text(render_html(result), encoding="utf-8")


def record(repos: DataRepos, result: EvaluationResult) -> EvaluationResult:
    """Store the evaluation as a finished run; return the result with its `run_id`.

    The run is a child of the caller's active run when there is one.
    """
    model_key = f"{result.model.name}/{result.model.version}"
    pinned = f"{result.data.repo}@{result.data.commit}" + (
        f":{result.data.path}" if result.data.path else "")
    tags = {TAG_VERSION: model_key, TAG_COMMIT: result.data.commit,
            "data_ref": result.data.ref, "task": result.task}
    if result.against is not None:
        tags[TAG_CHAMPION] = f"{result.against.name}/{result.against.version}"
    with start_run(f"evaluate {model_key}", experiment=EXPERIMENT, store=TrackingStore(repos),
                   nested=active_run() is not None, tags=tags, inputs=[pinned]) as run:
        result = replace(result, run_id=run.id)
        run.log_params(_params(result))
        run.log_metrics(_metric_values(result))
        with tempfile.TemporaryDirectory(prefix="tl-evaluation-") as tmp:
            write_files(result, Path(tmp))
            run.log_artifacts(tmp)
        edges = [Edge(version_node(result.model.name, result.model.version), RELATION,
                      run_node(run.id), {"role": "challenger" if result.against else "model"})]
        if result.against is not None:
            edges.append(Edge(version_node(result.against.name, result.against.version), RELATION,
                              run_node(run.id), {"role": "champion"}))
        with repos.db.session() as session, session.begin():
            add_edges(session, edges)
    return result


__all__ = ["EXPERIMENT", "RELATION", "latest_evaluation", "record", "write_files"]
