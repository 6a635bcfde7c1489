"""PyTorch DDP on the local executor: real gloo process groups over loopback, real workers.

Convergence against one worker, determinism, per-epoch checkpoints and resume, a rank killed
mid-epoch, refusals, and the install message without torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch
from sklearn.ensemble import RandomForestClassifier
from train_data import blobs

from threadline.errors import InvalidArgument
from threadline.tracking import TrackingStore
from threadline.train import Progress, TorchModel, fit, resume
from threadline.train.record import load_checkpoint
from threadline.train.spec import estimator_name, plain_params, read_config
from threadline.train.torch_model import load_state

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from threadline.compute import LocalExecutor
    from threadline.data.repos import DataRepos

NET = "threadline.train.torch_nets:mlp"


def _model(features: int = 6, classes: int = 3, **options: Any) -> TorchModel:
    params = {"features": features, "classes": classes, "hidden": 16, **options.pop("params", {})}
    return TorchModel(options.pop("factory", NET), params, lr=0.05, momentum=0.9, batch_size=64, **options)


def _same_weights(a: TorchModel, b: TorchModel) -> bool:
    assert a.state_ is not None
    assert b.state_ is not None
    return a.state_.keys() == b.state_.keys() and all(torch.equal(a.state_[k], b.state_[k]) for k in a.state_)


def test_two_workers_match_one_and_the_same_seed_gives_the_same_model(
    home: DataRepos, pool: LocalExecutor
) -> None:
    X, y = blobs(3000, features=6, classes=3, spread=2.5, seed=4)
    test_X, test_y = blobs(2000, features=6, classes=3, spread=2.5, seed=4)
    two = fit(_model(), (X, y), workers=2, executor=pool, epochs=3, seed=7)
    one = fit(_model(), (X, y), workers=1, executor=pool, epochs=3, seed=7)
    again = fit(_model(), (X, y), workers=2, executor=pool, epochs=3, seed=7)
    assert two.strategy == "ddp"  # "auto" picks ddp for a TorchModel
    accuracy = two.model.score(test_X, test_y)
    assert accuracy > 0.8  # chance is 1/3
    assert accuracy >= one.model.score(test_X, test_y) - 0.02
    assert _same_weights(two.model, again.model)
    assert not _same_weights(two.model, one.model)
    np.testing.assert_allclose(two.model.predict_proba(test_X[:5]).sum(axis=1), 1.0, rtol=1e-6)
    store = TrackingStore(home)
    assert [m.step for m in store.metric_history(two.run_id, "train_loss")] == [0, 1, 2]
    assert len(store.metric_history(two.run_id, "epoch_seconds")) == 3
    run = store.get_run(two.run_id)
    assert run.params["strategy"] == "ddp"
    assert run.params["estimator.lr"] == "0.05"
    weights, state = load_checkpoint(store, two.run_id)  # the last epoch's, with the optimizer's
    assert (state["epoch"], state["format"]) == (2, "torch-state/1")
    assert weights["optimizer"]["state"]  # momentum buffers
    meta = json.loads(store.read_artifact(two.run_id, "model/threadline-model.json"))
    assert meta["flavor"] == "torch"
    assert set(meta["files"]) == {"model.pt", "torch-model.json"}


class Interrupt(Exception):
    pass


def test_resume_continues_from_the_checkpoint_to_the_same_weights(
    home: DataRepos, pool: LocalExecutor, commit_table: Callable[..., str]
) -> None:
    X, y = blobs(1500, features=6, classes=3, spread=2.0, seed=8)
    ref = commit_table(X, y)

    def stop_after_one(event: Progress) -> None:
        if event.stage == "epoch" and event.done == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(_model(), ref, "label", strategy="ddp", epochs=3, executor=pool, seed=5, name="interrupted",
            progress=stop_after_one)
    store = TrackingStore(home)
    runs = store.search_runs([store.experiment("training").id])[0]
    interrupted = next(r for r in runs if r.info.name == "interrupted")
    resumed = resume(interrupted.info.id[:8], executor=pool)
    whole = fit(_model(), ref, "label", strategy="ddp", epochs=3, executor=pool, seed=5)
    assert _same_weights(resumed.model, whole.model)  # momentum buffers were carried over too
    assert store.get_run(resumed.run_id).tags["resumed_from"] == interrupted.info.id
    assert [m.step for m in store.metric_history(resumed.run_id, "train_loss")] == [1, 2]
    assert resumed.metrics["epochs_run"] == 2


def test_a_rank_killed_mid_epoch_makes_the_epoch_retry_on_every_rank(
    home: DataRepos, pool: LocalExecutor, tmp_path: Path
) -> None:
    X, y = blobs(1200, features=6, classes=3, seed=6)
    flag = tmp_path / "crash-once"
    flag.write_text("die")
    factory = "train_torch_faults:crashing_mlp"
    crashed = fit(_model(factory=factory, params={"crash_flag": str(flag)}), (X, y), strategy="ddp",
                  epochs=2, executor=pool, seed=3)
    assert not flag.exists()  # rank 1 did die, at its third step
    attempts = TrackingStore(home).metric_history(crashed.run_id, "epoch_attempts")
    assert [(m.step, m.value) for m in attempts] == [(0, 2.0), (1, 1.0)]
    clean = fit(_model(factory=factory, params={"crash_flag": ""}), (X, y), strategy="ddp", epochs=2,
                executor=pool, seed=3)
    assert _same_weights(crashed.model, clean.model)  # the retried epoch recomputed the same update


def test_a_hung_rank_times_its_peers_out_and_the_epoch_retries(
    home: DataRepos, pool: LocalExecutor, tmp_path: Path
) -> None:
    X, y = blobs(1200, features=6, classes=3, seed=6)
    flag = tmp_path / "hang-once"
    flag.write_text("hang")
    model = _model(factory="train_torch_faults:crashing_mlp", params={"crash_flag": str(flag), "hang": True},
                   timeout_s=2.0)
    began = time.monotonic()
    result = fit(model, (X, y), strategy="ddp", epochs=1, executor=pool, seed=3)
    assert time.monotonic() - began < 60  # rank 0 gave up after 2 s; the hung worker was killed
    attempts = TrackingStore(home).metric_history(result.run_id, "epoch_attempts")
    assert [m.value for m in attempts] == [2.0]


def test_ddp_is_refused_for_other_estimators_and_other_strategies_for_torch(
    home: DataRepos, pool: LocalExecutor
) -> None:
    X, y = blobs(200, features=6)
    with pytest.raises(InvalidArgument, match=r"RandomForestClassifier has no support for strategy 'ddp'; "
                                              r"use strategy='combine' or strategy='search' or "
                                              r"strategy='single'"):
        fit(RandomForestClassifier(), (X, y), strategy="ddp", executor=pool)
    with pytest.raises(InvalidArgument, match=r"a TorchModel trains with strategy='ddp' \(or 'auto'\)"):
        fit(_model(), (X, y), strategy="combine", executor=pool)
    with pytest.raises(InvalidArgument, match=r"outputs shape \(2, 2\) for 2 rows; the classification data "
                                              r"needs \(2, 3\)"):
        fit(_model(classes=2), (X, y), executor=pool)
    with pytest.raises(InvalidArgument, match=r"ddp runs its 3 ranks at once but the executor has 2 workers"):
        fit(_model(), (X, y), workers=3, executor=pool)


def test_missing_torch_says_which_extra_installs_it(
    home: DataRepos, pool: LocalExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y = blobs(200)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(InvalidArgument, match=r"needs torch: pip install 'threadline\[torch\]'"):
        fit(_model(), (X, y), executor=pool)


def test_importing_training_does_not_import_torch() -> None:
    code = "import sys, threadline.train; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_config_names_a_torch_model_and_the_spec_rebuilds_it(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("estimator: threadline.train.TorchModel\n"
                    f"params: {{factory: '{NET}', params: {{features: 6, classes: 3}}, lr: 0.1}}\n"
                    "data: ds@main:train.parquet\ntarget: label\nstrategy: ddp\n")
    model = read_config(path).build()
    assert isinstance(model, TorchModel)
    assert (model.lr, model.params, model.task) == (0.1, {"features": 6, "classes": 3}, "classification")
    rebuilt = read_config(path).build()
    assert plain_params(rebuilt) == plain_params(model)
    assert estimator_name(model) == "threadline.train.torch_model.TorchModel"
    with pytest.raises(InvalidArgument, match="write it as 'module:function'"):
        TorchModel("os.system")
    with pytest.raises(InvalidArgument, match="loss='mse' for classification: choose one of cross_entropy"):
        TorchModel(NET, loss="mse")


def test_a_state_file_is_read_without_unpickling_code(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (print, ("pwned",))

    path = tmp_path / "model.pt"
    torch.save({"format": "torch-state/1", "model": Evil()}, path)
    with pytest.raises(InvalidArgument, match="is not a TorchModel state file"):
        load_state(path)
