"""The built-in training step: `uses: threadline.train`, a tracked parallel fit as a pipeline step.

    train:
      uses: threadline.train
      inputs: {table: "step:parts:train.parquet"}
      with: {estimator: sklearn.linear_model.LogisticRegression, params: {max_iter: 500},
             target: churned, strategy: combine, workers: 2, seed: 0}

`with:` takes the keys of a `train.yaml` (`threadline train run --config`) except `data`, which
is the step's `table` input. The step runs `threadline.train.fit` on the input commit, so the
training is a tracked run whose lineage points at that commit; its output commit holds the
trained model folder (`model/`, the run's artifact, loadable and registrable) and
`training.json` (run id, strategy, metrics, data commit). Like every step it is cached on its
input commit, its parameters and its code (the source of `threadline.train`): an unchanged
input is not trained again.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from threadline.data.repos import DataRepos

__all__ = ["KEYS", "run_train"]

KEYS = frozenset({"estimator", "params", "target", "features", "strategy", "workers", "executor", "epochs",
                  "search", "seed", "experiment", "name"})


def run_train(repos: DataRepos, table: str, into: str, params: dict[str, Any]) -> str:
    """Train on `table` as `params` say and commit the model into `into`; returns the commit id.

    Raises:
        InvalidArgument: unknown or missing keys, a bad estimator, or bad data (nothing is committed).
    """
    unknown = sorted(set(params) - KEYS)
    if unknown:
        raise InvalidArgument(f"threadline.train: unknown `with:` keys {unknown}; allowed: {sorted(KEYS)}")
    for key in ("estimator", "target"):
        if not isinstance(params.get(key), str) or not params[key]:
            raise InvalidArgument(f"threadline.train needs `with: {{{key}: ...}}` (a string)")
    from threadline.tracking.store import TrackingStore
    from threadline.train import fit
    from threadline.train.spec import estimator_from_name

    store = TrackingStore(repos)
    estimator = estimator_from_name(params["estimator"], dict(params.get("params") or {}))
    result = fit(estimator, table, params["target"], params.get("features"),
                 strategy=str(params.get("strategy", "auto")), workers=int(params.get("workers", 2)),
                 executor=str(params.get("executor", "local")), epochs=int(params.get("epochs", 5)),
                 search=params.get("search"), seed=int(params.get("seed", 0)),
                 experiment=str(params.get("experiment", "training")), name=str(params.get("name", "")),
                 store=store)
    summary = {"run_id": result.run_id, "strategy": result.strategy, "data": table,
               "estimator": params["estimator"], "params": dict(params.get("params") or {}),
               "metrics": result.metrics, "best_params": result.best_params}
    with tempfile.TemporaryDirectory(prefix="tl-train-step-") as tmp:
        out = Path(tmp)
        store.download_artifacts(result.run_id, "model", out)
        (out / "training.json").write_text(json.dumps(summary, indent=1, sort_keys=True, default=str) + "\n")
        message = f"train {params['estimator']} on {table} (run {result.run_id[:8]})"
        commit = repos.commit(into, [out], message, metadata={"training_run": result.run_id})
    return commit.commit.id
