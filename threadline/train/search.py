"""Parallel hyper-parameter search: grid, random or Bayesian (Optuna TPE), with successive halving.

Trials are Tasks: each fits a clone with its params on (a prefix of) the training shard and
scores it on a held-out validation shard, both spilled once and memory-mapped by the workers.
With `halving`, every rung trains the surviving trials on twice the rows of the last and
keeps the better half, so weak candidates cost a fraction of a full fit. Each trial becomes a
child run with its params and its score per rung; the best one is refitted on all rows.

The `search` option is a mapping::

    {"method": "grid" | "random" | "bayes", "space": {"C": [0.1, 1, 10],
     "alpha": {"low": 1e-5, "high": 1e-1, "log": true}}, "trials": 32,
     "metric": "accuracy", "halving": false, "validation": 0.2, "refit": true}

Lists are choices; `{"low", "high"}` a range (integers if both bounds are, log-scaled with
`log`). Grid search takes lists only. Optuna is the optional extra `tune`.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from threadline.compute.base import Task
from threadline.errors import InvalidArgument
from threadline.train.combine import fit_part
from threadline.train.context import ShardInfo
from threadline.train.libs import sk
from threadline.train.shards import load_shard, seed_for

if TYPE_CHECKING:
    from collections.abc import Sequence

    from threadline.train.context import Context

__all__ = ["run_search", "score_trial"]

_KEYS = {"method", "space", "trials", "metric", "halving", "validation", "refit"}


def score_trial(estimator: Any, train_path: str, valid_path: str, rows: int, metric: str
                ) -> tuple[float, float]:
    """Worker side: fit on the first `rows` training rows, score on the validation shard."""
    get_scorer = sk("sklearn.metrics").get_scorer

    X, y = load_shard(train_path)
    Xv, yv = load_shard(valid_path)
    start = time.perf_counter()
    estimator.fit(X[:rows], y[:rows])
    seconds = time.perf_counter() - start
    return float(get_scorer(metric)(estimator, Xv, yv)), seconds


def _check(search: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(search) - _KEYS)
    if unknown:
        raise InvalidArgument(f"search: unknown key(s) {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(_KEYS))}")
    space = search.get("space")
    if not isinstance(space, dict) or not space:
        raise InvalidArgument("search needs a 'space': {param: [choices] or {low:, high:, log:}}")
    method = search.get("method", "grid")
    if method not in ("grid", "random", "bayes"):
        raise InvalidArgument(f"search method {method!r}: use 'grid', 'random' or 'bayes'")
    return {"method": method, "space": space, "trials": int(search.get("trials", 16)),
            "metric": search.get("metric"), "halving": bool(search.get("halving", False)),
            "validation": float(search.get("validation", 0.2)), "refit": bool(search.get("refit", True))}


def _sample(dim: Any, rng: np.random.Generator) -> Any:
    if isinstance(dim, list):
        return dim[int(rng.integers(len(dim)))]
    low, high = dim["low"], dim["high"]
    if isinstance(low, int) and isinstance(high, int):
        return int(rng.integers(low, high + 1))
    if dim.get("log"):
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    return float(rng.uniform(low, high))


def _candidates(opts: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    space = opts["space"]
    if opts["method"] == "grid":
        if not all(isinstance(v, list) for v in space.values()):
            raise InvalidArgument("grid search takes lists of values; use method 'random' or 'bayes' "
                                  "for ranges")
        return [dict(p) for p in sk("sklearn.model_selection").ParameterGrid(space)]
    rng = np.random.default_rng(seed_for(seed, 3))
    return [{k: _sample(v, rng) for k, v in sorted(space.items())} for _ in range(opts["trials"])]


def _optuna() -> Any:
    try:
        import optuna
    except ImportError as exc:
        raise InvalidArgument("search method 'bayes' needs Optuna: pip install 'threadline[tune]'") from exc
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _suggest(trial: Any, name: str, dim: Any) -> Any:
    if isinstance(dim, list):
        return dim[trial.suggest_categorical(name, list(range(len(dim))))]
    if isinstance(dim["low"], int) and isinstance(dim["high"], int):
        return trial.suggest_int(name, dim["low"], dim["high"], log=bool(dim.get("log")))
    return trial.suggest_float(name, float(dim["low"]), float(dim["high"]), log=bool(dim.get("log")))


class _Trials:
    """Runs batches of trials on the executor and remembers every score."""

    def __init__(self, ctx: Context, estimator: Any, train: str, valid: str, metric: str) -> None:
        self.ctx, self.estimator, self.train, self.valid, self.metric = ctx, estimator, train, valid, metric
        self.params: list[dict[str, Any]] = []
        self.scores: list[list[float]] = []
        self.seconds: list[float] = []

    def add(self, params: dict[str, Any]) -> int:
        self.params.append(params)
        self.scores.append([])
        self.seconds.append(0.0)
        return len(self.params) - 1

    def run(self, ids: Sequence[int], rows: int) -> list[float]:
        clone = sk("sklearn.base").clone
        tasks = [Task(score_trial, (clone(self.estimator).set_params(**self.params[i]), self.train,
                                    self.valid, rows, self.metric),
                      name=f"trial {i}", retries=self.ctx.retries) for i in ids]
        results = self.ctx.executor.map(tasks)
        for i, (score, seconds) in zip(ids, results, strict=True):
            self.scores[i].append(score)
            self.seconds[i] += seconds
        return [r[0] for r in results]


def _halving(trials: _Trials, ids: list[int], rows: int) -> None:
    rungs = max(1, math.ceil(math.log2(len(ids))))
    for rung in range(rungs):
        budget = max(min(rows, 32), rows >> (rungs - 1 - rung))
        scores = trials.run(ids, budget)
        trials.ctx.progress("trials", rung + 1, rungs, rows=budget, best=max(scores))
        if rung < rungs - 1:
            keep = max(1, len(ids) // 2)
            # a stable sort: equal scores keep the candidates' order, so runs are reproducible
            ranked = sorted(range(len(ids)), key=lambda j: -scores[j])
            ids = [ids[j] for j in sorted(ranked[:keep])]


def run_search(ctx: Context, estimator: Any, search: dict[str, Any]
               ) -> tuple[Any, dict[str, float], list[ShardInfo], dict[str, Any]]:
    """Search, select the best params by validation score, refit; (model, metrics, trials, best)."""
    base = sk("sklearn.base")
    clone, is_classifier, is_regressor = base.clone, base.is_classifier, base.is_regressor
    opts = _check(search)
    metric = opts["metric"] or ("accuracy" if is_classifier(estimator) else
                                "r2" if is_regressor(estimator) else None)
    if metric is None:
        raise InvalidArgument(f"search over {type(estimator).__name__} needs search['metric'] "
                              "(a scikit-learn scorer name)")
    data, rows = ctx.data, ctx.data.rows
    order = np.random.default_rng(seed_for(ctx.seed, 4)).permutation(rows)
    n_valid = max(1, round(rows * opts["validation"]))
    train = ctx.spill.add("search-train", data.X[order[n_valid:]], data.y[order[n_valid:]])
    valid = ctx.spill.add("search-valid", data.X[order[:n_valid]], data.y[order[:n_valid]])
    trials = _Trials(ctx, estimator, train.path, valid.path, metric)
    ctx.run.log_params({"search.method": opts["method"], "search.metric": metric,
                        "search.halving": opts["halving"]})
    if opts["method"] == "bayes":
        optuna = _optuna()
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=ctx.seed))
        done = 0
        while done < opts["trials"]:
            batch = [study.ask() for _ in range(min(ctx.workers, opts["trials"] - done))]
            space = sorted(opts["space"].items())
            ids = [trials.add({k: _suggest(t, k, v) for k, v in space}) for t in batch]
            for t, score in zip(batch, trials.run(ids, train.rows), strict=True):
                study.tell(t, score)
            done += len(batch)
            ctx.progress("trials", done, opts["trials"], best=study.best_value)
    else:
        ids = [trials.add(p) for p in _candidates(opts, ctx.seed)]
        if opts["halving"] and len(ids) > 2:
            _halving(trials, ids, train.rows)
        else:
            trials.run(ids, train.rows)
            ctx.progress("trials", len(ids), len(ids), best=max(s[-1] for s in trials.scores))
    # the best full-budget score wins; a trial dropped early never outranks a finished one
    finals = [(len(s), s[-1], -i) for i, s in enumerate(trials.scores)]
    best = -max(finals)[2]
    info = [ShardInfo(i, train.rows, trials.seconds[i],
                      ctx.child_run(f"trial {i}", trials.params[i], {"seconds": trials.seconds[i]},
                                    {f"valid_{metric}": trials.scores[i]}))
            for i in range(len(trials.params))]
    model_spec = clone(estimator).set_params(**trials.params[best])
    target = ctx.spill.add("search-all", data.X, data.y) if opts["refit"] else train
    model, _, _ = ctx.executor.map([Task(fit_part, (model_spec, target.path), name="refit")])[0]
    metrics = {f"valid_{metric}": trials.scores[best][-1], "trials": float(len(trials.params)),
               "train_score": ctx.score(model)}
    return model, metrics, info, trials.params[best]
