"""The top-level SDK: `tl.start_run`, `tl.autolog` and `tl.load_model` on the working home."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

import threadline as tl
from threadline.registry import ModelRegistry
from threadline.tracking import TrackingStore

if TYPE_CHECKING:
    from threadline.data.repos import DataRepos


def test_a_notebook_tracks_a_fit_registers_it_and_loads_it_back(home: DataRepos) -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    features = rng.normal(size=(80, 2))
    labels = (features[:, 0] > 0).astype(int)
    with tl.start_run("notebook") as run:
        model = LogisticRegression(C=0.5).fit(features, labels)
        run.log_params({"C": 0.5})
        run.log_metric("accuracy", float(model.score(features, labels)))
    stored = TrackingStore(home).get_run(run.id)
    assert stored.info.status == "FINISHED"
    assert stored.params == {"C": "0.5"}
    assert stored.metrics["accuracy"].value == model.score(features, labels)

    ModelRegistry(home).register("churn", model, run_id=run.id, example=features[:5])
    loaded = tl.load_model("churn")
    assert (loaded.predict(features) == model.predict(features)).all()
