"""Synchronous data parallelism: convergence, a worker killed mid-epoch, resume from a checkpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.linear_model import SGDClassifier, SGDRegressor
from sklearn.naive_bayes import GaussianNB
from train_data import blobs, linear
from train_faults import CrashingSGD

from threadline.errors import InvalidArgument
from threadline.tracking import TrackingStore
from threadline.train import Progress, fit, resume

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from threadline.compute import LocalExecutor
    from threadline.data.repos import DataRepos


def test_sync_sgd_converges_close_to_a_single_process(home: DataRepos, pool: LocalExecutor) -> None:
    X, y = blobs(6000, features=6, classes=3, spread=2.5, seed=4)
    test_X, test_y = blobs(3000, features=6, classes=3, spread=2.5, seed=4)
    result = fit(SGDClassifier(tol=None), (X, y), strategy="sync", epochs=5, executor=pool, seed=0)
    single = SGDClassifier(tol=None, max_iter=5, random_state=0).fit(X, y)
    assert result.model.score(test_X, test_y) >= single.score(test_X, test_y) - 0.03
    history = TrackingStore(home).metric_history(result.run_id, "train_score")
    assert [m.step for m in history] == [0, 1, 2, 3, 4]
    Xr, yr = linear(6000)
    reg = fit(SGDRegressor(tol=None), (Xr, yr), strategy="sync", epochs=4, executor=pool).model
    assert reg.score(Xr, yr) > 0.99


def test_naive_bayes_sync_is_one_exact_pass(home: DataRepos, pool: LocalExecutor) -> None:
    X, y = blobs(2000)
    result = fit(GaussianNB(), (X, y), strategy="sync", epochs=5, executor=pool)
    assert result.metrics["epochs_run"] == 1
    np.testing.assert_allclose(result.model.theta_, GaussianNB().fit(X, y).theta_, rtol=1e-10)


def test_a_killed_worker_makes_the_epoch_retry_and_training_completes(
    home: DataRepos, pool: LocalExecutor, tmp_path: Path
) -> None:
    X, y = blobs(2000, seed=6)
    flag = tmp_path / "crash-once"
    flag.write_text("die")
    crashed = fit(CrashingSGD(str(flag), tol=None), (X, y), strategy="sync", epochs=3, executor=pool, seed=3)
    assert not flag.exists()  # the first attempt did die
    clean = fit(CrashingSGD("", tol=None), (X, y), strategy="sync", epochs=3, executor=pool, seed=3)
    # the retried shard recomputed the identical update: the same model as without a crash
    np.testing.assert_array_equal(crashed.model.coef_, clean.model.coef_)


class Interrupt(Exception):
    pass


def test_resume_continues_an_interrupted_run_from_its_checkpoint(
    home: DataRepos, pool: LocalExecutor, commit_table: Callable[..., str]
) -> None:
    X, y = blobs(3000, seed=8)
    ref = commit_table(X, y)

    def stop_after_two(event: Progress) -> None:
        if event.stage == "epoch" and event.done == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(SGDClassifier(tol=None), ref, "label", strategy="sync", epochs=5, executor=pool, seed=5,
            name="interrupted", progress=stop_after_two)
    store = TrackingStore(home)
    runs = store.search_runs([store.experiment("training").id])[0]
    interrupted = next(r for r in runs if r.info.name == "interrupted")
    assert interrupted.info.status == "FAILED"
    resumed = resume(interrupted.info.id[:8], executor=pool)
    whole = fit(SGDClassifier(tol=None), ref, "label", strategy="sync", epochs=5, executor=pool, seed=5)
    np.testing.assert_array_equal(resumed.model.coef_, whole.model.coef_)
    np.testing.assert_array_equal(resumed.model.intercept_, whole.model.intercept_)
    again = store.get_run(resumed.run_id)
    assert again.tags["resumed_from"] == interrupted.info.id
    assert [m.step for m in store.metric_history(resumed.run_id, "train_score")] == [2, 3, 4]
    assert resumed.metrics["epochs_run"] == 3


def test_resume_refuses_runs_without_checkpoints(home: DataRepos, pool: LocalExecutor) -> None:
    X, y = blobs(300)
    done = fit(GaussianNB(), (X, y), executor=pool)
    with pytest.raises(InvalidArgument, match="only sync or ddp training on a committed table has "
                                              "checkpoints"):
        resume(done.run_id, executor=pool)


def test_sync_mini_batch_kmeans_finds_the_single_fit_centroids(home: DataRepos, pool: LocalExecutor) -> None:
    points, _ = blobs(6000, features=2, classes=4, spread=0.3, seed=2)
    result = fit(MiniBatchKMeans(n_clusters=4, n_init=3, batch_size=256), (points, np.zeros(len(points))),
                 strategy="sync", epochs=3, executor=pool, seed=1)
    single = KMeans(n_clusters=4, n_init=3, random_state=0).fit(points)
    distances = np.linalg.norm(single.cluster_centers_[:, None] - result.model.cluster_centers_[None], axis=2)
    assert distances.min(axis=1).max() < 0.1
    assert result.model._counts.sum() > 3 * 6000  # every epoch's rows were counted
