"""The demo's retraining pipeline: fit the churn model again on recent labelled production
traffic (the prediction log with its feedback) and register it as a new version.

Its input is the deployment's prediction-log repo, so the run's lineage reaches the served
traffic it learned from, and the monitoring policy starts it when drift is found.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from threadline.pipelines import Input, Output, Pipeline, step

if TYPE_CHECKING:
    from pathlib import Path

FEATURES = ["tenure_months", "monthly_spend", "long_tenure"]


def _read(folder: Path) -> pa.Table:
    parts = [pq.read_table(p) for p in sorted(folder.rglob("*.parquet"))]
    return pa.concat_tables(parts, promote_options="permissive") if parts else pa.table({})


@step
def retrain(log: Path = Input("predictions-churn-live@main"), out: Path = Output(),
            model: str = "churn-live", recent: int = 3000) -> None:
    """Join the newest `recent` served rows to their labels, fit, register a new version."""
    from sklearn.linear_model import LogisticRegression

    from threadline.registry import ModelRegistry
    from threadline.serving.feedback import latest_labels

    served = _read(log / "log")
    served = served.filter(pc.equal(served["status"], 200))
    labels = latest_labels(_read(log / "feedback")).select(["request_id", "row", "label"])
    joined = served.join(labels.set_column(1, "row", labels["row"].cast(served["row"].type)),
                         ["request_id", "row"], join_type="inner")
    joined = joined.sort_by("ts").slice(max(joined.num_rows - recent, 0))
    frame = joined.select([f"in.{f}" for f in FEATURES] + ["label"]).to_pandas()
    frame.columns = [*FEATURES, "churned"]
    fitted = LogisticRegression(max_iter=500).fit(frame[FEATURES].astype(float), frame["churned"])
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), out / "train.parquet")
    ModelRegistry.open().register(model, fitted, example=frame[FEATURES].astype(float).head(20),
                                  data=["predictions-churn-live@main"],
                                  description=f"retrained on {len(frame)} labelled served rows")


pipeline = Pipeline("churn-retrain", steps=[retrain])
