"""Parallel training against single-process scikit-learn, in one run; medians of --repeats.

    python benchmarks/train_parallel.py                  # reduced sizes, about 3 minutes on 2 cores
    python benchmarks/train_parallel.py --rf-rows 1000000 --lr-rows 5000000 --repeats 3   # full size

1. Random forest, 200 trees, 20 features: `fit` (combine) with 1 and 2 workers, speed-up, and
   test accuracy against one `RandomForestClassifier.fit` (target: >= 1.8x, within 0.3 points).
2. Logistic regression: combine (LogisticRegression) and sync (SGDClassifier, log loss) with 2
   workers against one LogisticRegression fit (target: within 0.5 points, time <= 0.6x).
3. Search, 32 trials (grid over a decision tree): 1 vs 2 workers (target >= 1.8x), and against
   GridSearchCV(n_jobs=2) on the same grid with the same single hold-out split.
4. Ray against local: the forest of (1) with 2 workers on a local Ray cluster (target: <= 15% slower).

Every `fit` runs in full - reads, shards, tracks the run and logs the model - with a warm
executor (opened once per configuration, as a long-lived process would); the pool start-up is
reported separately. Data is generated with NumPy; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import tempfile
import time
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable


def make_data(rows: int, features: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A binary problem with a linear part, interactions and label noise (not separable)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features))
    w = np.random.default_rng(1234).normal(size=features)  # the same concept for train and test
    score = X @ w * 0.6 + 1.5 * np.sin(X[:, 0] * 1.5) + X[:, 1] * X[:, 2]
    score += rng.normal(scale=0.8, size=rows)
    return X, (score > 0).astype(np.int64)


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median seconds of `repeats` calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def warm_up(pool: Any, workers: int) -> float:
    """Start the workers and import scikit-learn in each (a tiny fit per worker); returns seconds."""
    from sklearn.naive_bayes import GaussianNB

    from threadline.train import fit

    start = time.perf_counter()
    X, y = make_data(200 * workers, 4, seed=5)
    fit(GaussianNB(), (X, y), workers=workers, executor=pool)
    return time.perf_counter() - start


def line(name: str, value: str, target: str = "") -> None:
    print(f"  {name:<44} {value:>14}   {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rf-rows", type=int, default=20_000)
    parser.add_argument("--trees", type=int, default=200)
    parser.add_argument("--lr-rows", type=int, default=400_000)
    parser.add_argument("--search-rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parts", default="rf,lr,search,ray", help="comma list of rf, lr, search, ray")
    args = parser.parse_args()

    from sklearn.ensemble import RandomForestClassifier

    from threadline.config import init_home

    home = tempfile.mkdtemp(prefix="tl-bench-train-")
    os.environ["THREADLINE_HOME"] = os.path.join(home, ".threadline")
    init_home()
    reps = args.repeats
    parts = set(args.parts.split(","))
    print(f"train_parallel: {os.cpu_count()} CPUs, medians of {reps} runs")

    X, y = make_data(args.rf_rows, 20, seed=0)
    Xt, yt = make_data(50_000, 20, seed=99)
    rf = RandomForestClassifier(n_estimators=args.trees, n_jobs=1)
    results: dict[int, Any] = {}
    if "rf" in parts or "ray" in parts:
        results = forest(args, rf, X, y, Xt, yt, reps)
    if "lr" in parts:
        logistic(args, Xt, yt, reps)
    if "search" in parts:
        grid_search(args, reps)
    if "ray" in parts:
        ray_vs_local(rf, X, y, Xt, reps, results)


def forest(args: Any, rf: Any, X: np.ndarray, y: np.ndarray, Xt: np.ndarray, yt: np.ndarray, reps: int
           ) -> dict[int, Any]:
    """1. Random forest: 1 vs 2 workers, and 2 shards on one slot (the gain of smaller shards alone)."""
    from sklearn.ensemble import RandomForestClassifier

    from threadline.compute import LocalExecutor
    from threadline.train import fit

    print(f"\nrandom forest, {args.trees} trees, {args.rf_rows:,} rows x 20 features")
    t_single, single = timed(lambda: RandomForestClassifier(n_estimators=args.trees, n_jobs=1,
                                                            random_state=0).fit(X, y), reps)
    acc_single = single.score(Xt, yt)
    results: dict[int, Any] = {}
    for workers in (1, 2):
        with LocalExecutor(workers=workers) as pool:
            startup = warm_up(pool, workers)
            results[workers] = timed(lambda: fit(rf, (X, y), workers=workers, executor=pool), reps)  # noqa: B023
            if workers == 1:  # two shards through one slot: what smaller shards save without parallelism
                t_serial, _ = timed(lambda: fit(rf, (X, y), workers=2, executor=pool), reps)
        line(f"fit combine, {workers} worker(s)", f"{results[workers][0]:.2f} s",
             f"(pool start and first fit {startup:.2f} s)")
    acc_two = results[2][1].model.score(Xt, yt)
    line("fit combine, 2 shards on 1 slot", f"{t_serial:.2f} s")
    line("sklearn single fit (n_jobs=1)", f"{t_single:.2f} s")
    line("speed-up 1 -> 2 workers", f"{results[1][0] / results[2][0]:.2f}x", "target >= 1.8x")
    line("  of which parallel (2 shards: 1 slot -> 2)", f"{t_serial / results[2][0]:.2f}x")
    line("test accuracy: single / combined (2)", f"{acc_single:.4f} / {acc_two:.4f}",
         f"diff {100 * (acc_two - acc_single):+.2f} points, target within 0.3")
    return results


def logistic(args: Any, Xt: np.ndarray, yt: np.ndarray, reps: int) -> None:
    """2. Logistic regression: combine and sync against one LogisticRegression fit."""
    from sklearn.linear_model import LogisticRegression, SGDClassifier

    from threadline.compute import LocalExecutor
    from threadline.train import fit

    X2, y2 = make_data(args.lr_rows, 20, seed=1)
    print(f"\nlogistic regression, {args.lr_rows:,} rows x 20 features, 2 workers")
    t_lr, lr_single = timed(lambda: LogisticRegression(max_iter=200).fit(X2, y2), reps)
    acc_lr = lr_single.score(Xt, yt)
    line("sklearn LogisticRegression fit", f"{t_lr:.2f} s", f"test accuracy {acc_lr:.4f}")
    with LocalExecutor(workers=2) as pool:
        warm_up(pool, 2)
        for label, est, kw in [("combine LogisticRegression", LogisticRegression(max_iter=200), {}),
                               ("sync SGDClassifier(log_loss), 3 epochs",
                                SGDClassifier(loss="log_loss", tol=None), {"strategy": "sync", "epochs": 3})]:
            t, res = timed(lambda: fit(est, (X2, y2), workers=2, executor=pool, **kw), reps)  # noqa: B023
            acc = res.model.score(Xt, yt)
            line(f"fit {label}", f"{t:.2f} s", f"{t / t_lr:.2f}x of single (target <= 0.6x); accuracy "
                 f"{acc:.4f} ({100 * (acc - acc_lr):+.2f} points, target within 0.5)")


def grid_search(args: Any, reps: int) -> None:
    """3. Search: 32 trials with 1 and 2 workers, and GridSearchCV(n_jobs=2) on the same grid."""
    from sklearn.model_selection import GridSearchCV, ShuffleSplit
    from sklearn.tree import DecisionTreeClassifier

    from threadline.compute import LocalExecutor
    from threadline.train import fit

    X3, y3 = make_data(args.search_rows, 20, seed=2)
    grid = {"max_depth": [2, 4, 6, 8, 10, 12, 14, None], "min_samples_leaf": [1, 5, 20, 50]}
    search = {"method": "grid", "space": grid, "validation": 0.2, "refit": False}
    print(f"\nsearch, 32 trials (decision tree grid), {args.search_rows:,} rows")
    found = {}
    for workers in (1, 2):
        with LocalExecutor(workers=workers) as pool:
            warm_up(pool, workers)
            found[workers] = timed(lambda: fit(DecisionTreeClassifier(random_state=0), (X3, y3),
                                               workers=workers, executor=pool, search=search), reps)  # noqa: B023
        line(f"fit search, {workers} worker(s)", f"{found[workers][0]:.2f} s")
    split = ShuffleSplit(n_splits=1, test_size=0.2, random_state=0)
    t_grid, gs = timed(lambda: GridSearchCV(DecisionTreeClassifier(random_state=0), grid, cv=split,
                                            n_jobs=2, refit=False).fit(X3, y3), reps)
    line("sklearn GridSearchCV(n_jobs=2), same grid", f"{t_grid:.2f} s",
         f"ours / GridSearchCV = {found[2][0] / t_grid:.2f}")
    line("speed-up 1 -> 2 workers", f"{found[1][0] / found[2][0]:.2f}x", "target >= 1.8x")
    line("best params: ours / GridSearchCV", f"{found[2][1].best_params} / {gs.best_params_}")


def ray_vs_local(rf: Any, X: np.ndarray, y: np.ndarray, Xt: np.ndarray, reps: int, results: dict[int, Any]
                 ) -> None:
    """4. The forest with 2 workers on a local Ray cluster against the local pool."""
    from threadline.compute import RayExecutor
    from threadline.train import fit

    print("\nray vs local, the forest of (1), 2 workers")
    # a private token: a local cluster would otherwise write the shared ~/.ray/auth_token
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    start = time.perf_counter()
    with RayExecutor(workers=2) as ray:
        warm_up(ray, 2)
        startup = time.perf_counter() - start
        t_ray, res = timed(lambda: fit(rf, (X, y), workers=2, executor=ray), reps)
    line("fit combine on a local Ray cluster", f"{t_ray:.2f} s", f"(cluster start {startup:.2f} s)")
    line("ray / local", f"{t_ray / results[2][0]:.2f}x", "target <= 1.15x")
    probe = Xt[:1000]
    same = np.array_equal(res.model.predict_proba(probe), results[2][1].model.predict_proba(probe))
    line("same model as local (same seed)", str(same))


if __name__ == "__main__":
    main()
