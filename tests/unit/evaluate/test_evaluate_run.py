"""`evaluate()` on registered scikit-learn models: metrics, comparison, the recorded run, lineage."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.metrics import accuracy_score, roc_auc_score

from threadline.errors import InvalidArgument, NotFound
from threadline.evaluate import evaluate, latest_evaluation
from threadline.evaluate.compare import CHALLENGER_BETTER
from threadline.lineage.graph import LineageGraph, Node
from threadline.tracking import TrackingStore
from threadline.tracking.active import start_run

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import Churn


def test_evaluate_scores_the_model_on_the_table_and_records_a_run(churn: Churn) -> None:
    result = evaluate(churn.registry, "churn@2", churn.ref, target="churned", slice_by=["segment"],
                      replicates=200)
    model = churn.registry.load_model("churn@2")
    frame = churn.table.to_pandas()
    y = frame["churned"].to_numpy()
    assert result.task == "classification"
    assert result.rows == 600
    features = frame[["a", "b", "c"]]
    assert result.metrics["accuracy"] == pytest.approx(accuracy_score(y, model.predict(features)))
    assert result.metrics["roc_auc"] == pytest.approx(
        roc_auc_score(y, model.predict_proba(features)[:, 1]))
    assert result.metrics["accuracy"] > 0.8
    low, high = result.intervals["accuracy"].low, result.intervals["accuracy"].high
    assert low is not None
    assert high is not None
    assert low < result.metrics["accuracy"] < high
    assert sorted((s.value, s.rows) for s in result.slices) == [
        ("<script>alert(1)</script>", 200), ("retail", 200), ("smb", 200)]
    assert (result.model.name, result.model.version, result.data.commit) == ("churn", 2, churn.commit)

    assert result.run_id is not None
    store = TrackingStore(churn.registry.repos)
    run = store.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert store.get_experiment(run.info.experiment_id).name == "evaluations"
    assert run.params["model"] == "churn"
    assert run.params["model_version"] == "2"
    assert run.params["data_commit"] == churn.commit
    assert (run.params["target"], run.params["seed"]) == ("churned", "0")
    assert run.metrics["accuracy"].value == pytest.approx(result.metrics["accuracy"])
    assert run.metrics["accuracy.ci_low"].value == pytest.approx(low)
    assert [(i["repo"], i["commit"]) for i in run.inputs] == [("churn-splits", churn.commit)]
    names = {a["path"] for a in store.list_artifacts(result.run_id)}
    assert names == {"evaluation.json", "report.html"}
    stored = json.loads(store.read_artifact(result.run_id, "evaluation.json"))
    assert stored == json.loads(json.dumps(result.to_dict()))
    html = store.read_artifact(result.run_id, "report.html").decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>" not in html

    edges = LineageGraph(churn.registry.repos.db).direct(Node("run", result.run_id))
    found = {(e.source.kind, e.source.id, e.relation) for e in edges}
    assert ("model_version", "churn/2", "evaluated") in found
    assert ("data_commit", churn.commit, "input") in found
    latest = latest_evaluation(churn.registry.repos, "churn", 2, churn.commit)
    assert latest is not None
    assert latest.info.id == result.run_id
    assert latest_evaluation(churn.registry.repos, "churn", 1) is None


def test_challenger_against_champion_on_the_same_rows(churn: Churn) -> None:
    churn.registry.set_alias("churn", "production", 1)
    result = evaluate(churn.registry, "churn@2", churn.ref, target="churned",
                      against="churn@production", replicates=300, seed=4)
    assert result.against is not None
    assert result.against.version == 1
    verdicts = {c.metric: c.verdict for c in result.comparison}
    assert verdicts["accuracy"] == CHALLENGER_BETTER
    assert verdicts["roc_auc"] == CHALLENGER_BETTER
    first = result.comparison[0]
    assert first.difference == pytest.approx(result.metrics[first.metric] -
                                             result.against_metrics[first.metric])
    assert result.run_id is not None
    run = TrackingStore(churn.registry.repos).get_run(result.run_id)
    assert run.params["champion_version"] == "1"
    assert "diff.accuracy" in run.metrics
    edges = LineageGraph(churn.registry.repos.db).direct(Node("run", result.run_id))
    assert {e.source.id for e in edges if e.relation == "evaluated"} == {"churn/1", "churn/2"}
    again = evaluate(churn.registry, "churn@2", churn.ref, target="churned",
                     against="churn@production", replicates=300, seed=4, record=False)
    assert again.run_id is None
    assert [c.to_dict() for c in again.comparison] == [c.to_dict() for c in result.comparison]


def test_evaluating_inside_an_active_run_makes_a_child_run(churn: Churn) -> None:
    store = TrackingStore(churn.registry.repos)
    with start_run("pipeline", store=store) as parent:
        result = evaluate(churn.registry.repos, "churn@1", churn.ref, target="churned", replicates=20)
    assert result.run_id is not None
    assert store.get_run(result.run_id).info.parent_id == parent.id


def test_missing_columns_are_named(churn: Churn) -> None:
    with pytest.raises(InvalidArgument, match=r"has no target column 'label'; its columns are a, b, c"):
        evaluate(churn.registry, "churn@2", churn.ref, target="label", record=False)
    with pytest.raises(InvalidArgument, match=r"has no slice column 'plan'"):
        evaluate(churn.registry, "churn@2", churn.ref, target="churned", slice_by=["plan"],
                 record=False)
    with pytest.raises(InvalidArgument, match=r"lacks feature column\(s\) 'b' that churn@2 takes"):
        evaluate(churn.registry, "churn@2", "churn-splits@main:no_b.parquet", target="churned",
                 record=False)
    with pytest.raises(NotFound, match="no alias 'staging'"):
        evaluate(churn.registry, "churn@staging", churn.ref, target="churned", record=False)


def test_regression_is_inferred_for_a_regressor_on_a_float_target(churn: Churn, tmp_path: Path) -> None:
    frame = churn.table.to_pandas()
    frame["spend"] = 10 + 3 * frame["a"] - frame["b"]
    reg = LinearRegression().fit(frame[["a", "b", "c"]], frame["spend"])
    churn.registry.register("spend", reg, example=frame[["a", "b", "c"]].head(3))
    folder = tmp_path / "spend"
    folder.mkdir()
    pq.write_table(pa.Table.from_pandas(frame[["a", "b", "c", "spend"]]), folder / "t.parquet")
    churn.registry.repos.create("spend-data")
    churn.registry.repos.commit("spend-data", [folder], "t")
    result = evaluate(churn.registry, "spend", "spend-data@main:t.parquet", target="spend",
                      slice_by=["a"], replicates=50, record=False)
    assert result.task == "regression"
    assert result.metrics["rmse"] == pytest.approx(0.0, abs=1e-9)
    assert result.metrics["r2"] == pytest.approx(1.0)
    assert len(result.slices) == 4
    assert sum(result.diagnostics["residuals"]["counts"]) == 600
    assert np.isfinite(result.intervals["mae"].low or 0.0)
