"""MLflow's tracking REST API (`/api/2.0/mlflow/experiments/...`, `runs/...`, `metrics/...`).

Each endpoint reads MLflow's request JSON (or query string for GETs), makes one call into
`TrackingStore` in the thread pool and answers with MLflow's response JSON, so the unmodified
`mlflow` client works against `threadline server`. Errors are Threadline errors; the app turns
them into MLflow's `{"error_code", "message"}` (see app.py).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from threadline.api import mlflow_json as mj
from threadline.api.http import (
    MLFLOW_API,
    JSONResponse,
    both_prefixes,
    call,
    empty,
    int_param,
    list_param,
    params,
    stores,
    str_param,
)
from threadline.api.mlflow_search import search_experiments
from threadline.errors import AlreadyExists, InvalidArgument, NotFound

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from threadline.tracking.model import Experiment
    from threadline.tracking.store import TrackingStore

DEFAULT_MAX_RUNS = 1000

# ------------------------------------------------------------------------ experiments
async def create_experiment(request: Request) -> Response:
    """experiments/create: a new experiment; RESOURCE_ALREADY_EXISTS if the name is taken."""
    body = await params(request)
    name = str_param(body, "name")
    tags = mj.parse_pairs(body.get("tags"), "tags")
    store = stores(request).tracking

    def work() -> str:
        try:
            store.experiment(name, create=False)
        except NotFound:
            pass
        else:
            raise AlreadyExists(f"an experiment named {name!r} exists already")
        exp = store.experiment(name)
        for key, value in tags.items():
            store.set_experiment_tag(exp.id, key, value)
        return str(exp.id)

    return JSONResponse({"experiment_id": await call(work)})


async def get_experiment(request: Request) -> Response:
    """experiments/get."""
    body = await params(request)
    store = stores(request).tracking

    def work() -> Experiment:
        return store.get_experiment(mj.experiment_id(store, str_param(body, "experiment_id")))

    return JSONResponse({"experiment": mj.experiment_json(await call(work))})


async def get_experiment_by_name(request: Request) -> Response:
    """experiments/get-by-name (deleted experiments included, as in MLflow)."""
    body = await params(request)
    store = stores(request).tracking
    exp = await call(store.experiment, str_param(body, "experiment_name"), create=False)
    return JSONResponse({"experiment": mj.experiment_json(exp)})


async def update_experiment(request: Request) -> Response:
    """experiments/update: rename."""
    body = await params(request)
    store = stores(request).tracking
    await call(lambda: store.rename_experiment(mj.experiment_id(store, str_param(body, "experiment_id")),
                                               str_param(body, "new_name")))
    return empty()


async def delete_experiment(request: Request) -> Response:
    """experiments/delete (its runs are hidden with it)."""
    body = await params(request)
    store = stores(request).tracking
    await call(lambda: store.delete_experiment(mj.experiment_id(store, str_param(body, "experiment_id"))))
    return empty()


async def restore_experiment(request: Request) -> Response:
    """experiments/restore."""
    body = await params(request)
    store = stores(request).tracking
    await call(lambda: store.restore_experiment(mj.experiment_id(store, str_param(body, "experiment_id"))))
    return empty()


async def set_experiment_tag(request: Request) -> Response:
    """experiments/set-experiment-tag."""
    body = await params(request)
    store = stores(request).tracking
    await call(lambda: store.set_experiment_tag(
        mj.experiment_id(store, str_param(body, "experiment_id")), str_param(body, "key"),
        str(body.get("value", ""))))
    return empty()


async def delete_experiment_tag(request: Request) -> Response:
    """experiments/delete-experiment-tag."""
    body = await params(request)
    store = stores(request).tracking
    await call(lambda: store.delete_experiment_tag(
        mj.experiment_id(store, str_param(body, "experiment_id")), str_param(body, "key")))
    return empty()


# ------------------------------------------------------------------------------- runs
def _create_run(store: TrackingStore, body: dict[str, Any]) -> dict[str, Any]:
    tags = mj.parse_pairs(body.get("tags"), "tags")
    name = str_param(body, "run_name", required=False) or tags.get(mj.RUN_NAME_TAG) or (
        f"run-{secrets.token_hex(3)}")  # MLflow names unnamed runs too
    tags[mj.RUN_NAME_TAG] = name
    parent = tags.get(mj.PARENT_TAG) or None
    info = store.create_run(
        mj.experiment_id(store, str_param(body, "experiment_id", required=False) or mj.MLFLOW_DEFAULT_ID),
        name=name, parent_id=parent, tags=tags, user=str_param(body, "user_id", required=False) or None,
        start_time=int_param(body.get("start_time"), "start_time"),
        source={"client": "mlflow"},
    )
    return mj.run_json(store.get_run(info.id))


async def create_run(request: Request) -> Response:
    """runs/create: `mlflow.parentRunId` in the tags makes it a child run in lineage too."""
    body = await params(request)
    return JSONResponse({"run": await call(_create_run, stores(request).tracking, body)})


def _run_id(body: dict[str, Any]) -> str:
    return str_param(body, "run_id", "run_uuid")


async def get_run(request: Request) -> Response:
    """runs/get."""
    body = await params(request)
    run = await call(stores(request).tracking.get_run, _run_id(body))
    return JSONResponse({"run": mj.run_json(run)})


async def update_run(request: Request) -> Response:
    """runs/update: status, end time, name."""
    body = await params(request)
    store = stores(request).tracking
    run_id = _run_id(body)
    name = str_param(body, "run_name", required=False) or None

    def work() -> dict[str, Any]:
        info = store.update_run(run_id, status=str_param(body, "status", required=False) or None,
                                end_time=int_param(body.get("end_time"), "end_time"), name=name)
        if name is not None:
            store.log_batch(run_id, tags={mj.RUN_NAME_TAG: name})
        return mj.run_info_json(info)

    return JSONResponse({"run_info": await call(work)})


async def delete_run(request: Request) -> Response:
    """runs/delete."""
    body = await params(request)
    await call(stores(request).tracking.delete_run, _run_id(body))
    return empty()


async def restore_run(request: Request) -> Response:
    """runs/restore."""
    body = await params(request)
    await call(stores(request).tracking.restore_run, _run_id(body))
    return empty()


async def log_metric(request: Request) -> Response:
    """runs/log-metric: one point."""
    body = await params(request)
    metric = mj.parse_metric(body)
    await call(stores(request).tracking.log_batch, _run_id(body), metrics=[metric])
    return empty()


async def log_param(request: Request) -> Response:
    """runs/log-parameter: params are immutable; a different value is INVALID_PARAMETER_VALUE."""
    body = await params(request)
    key = str_param(body, "key")
    value = body.get("value")
    await call(stores(request).tracking.log_batch, _run_id(body),
               params={key: "" if value is None else str(value)})
    return empty()


async def set_tag(request: Request) -> Response:
    """runs/set-tag (setting `mlflow.runName` renames the run, as in MLflow)."""
    body = await params(request)
    store = stores(request).tracking
    run_id, key = _run_id(body), str_param(body, "key")
    value = "" if body.get("value") is None else str(body["value"])

    def work() -> None:
        store.log_batch(run_id, tags={key: value})
        if key == mj.RUN_NAME_TAG:
            store.update_run(run_id, name=value)

    await call(work)
    return empty()


async def delete_tag(request: Request) -> Response:
    """runs/delete-tag."""
    body = await params(request)
    await call(stores(request).tracking.delete_tag, _run_id(body), str_param(body, "key"))
    return empty()


async def log_batch(request: Request) -> Response:
    """runs/log-batch: metrics, params and tags in one transaction."""
    body = await params(request)
    metrics = [mj.parse_metric(m) for m in list_param(body.get("metrics"))]
    run_params = mj.parse_pairs(body.get("params"), "params")
    tags = mj.parse_pairs(body.get("tags"), "tags")
    await call(stores(request).tracking.log_batch, _run_id(body), metrics=metrics,
               params=run_params, tags=tags)
    return empty()


async def log_inputs(request: Request) -> Response:
    """runs/log-inputs: datasets are kept as tags (see mlflow_json.py); model inputs ignored."""
    body = await params(request)
    tags = mj.dataset_tags(list_param(body.get("datasets")))
    await call(stores(request).tracking.log_batch, _run_id(body), tags=tags)
    return empty()


async def search_runs(request: Request) -> Response:
    """runs/search: MLflow's filter and order_by language, paged."""
    body = await params(request)
    store = stores(request).tracking
    max_results = int_param(body.get("max_results"), "max_results", DEFAULT_MAX_RUNS) or DEFAULT_MAX_RUNS

    def work() -> dict[str, Any]:
        ids = [mj.experiment_id(store, e) for e in list_param(body.get("experiment_ids"))]
        runs, token = store.search_runs(
            ids, str_param(body, "filter", required=False),
            [str(o) for o in list_param(body.get("order_by"))], max_results,
            str_param(body, "page_token", required=False) or None, mj.view(body.get("run_view_type")))
        out: dict[str, Any] = {"runs": [mj.run_json(r) for r in runs]}
        if token:
            out["next_page_token"] = token
        return out

    return JSONResponse(await call(work))


async def metric_history(request: Request) -> Response:
    """metrics/get-history: every point of one metric, by step."""
    body = await params(request)
    run_id = _run_id(body)
    points = await call(stores(request).tracking.metric_history, run_id, str_param(body, "metric_key"))
    return JSONResponse({"metrics": [mj.metric_json(p, run_id) for p in points]})


async def metric_history_bulk_interval(request: Request) -> Response:
    """metrics/get-history-bulk-interval: one metric of several runs between two steps.

    At most `max_results` points per run (default 320, MLflow's), evenly spaced over the
    steps, always keeping the first and the last.
    """
    body = await params(request)
    store = stores(request).tracking
    run_ids = [str(r) for r in list_param(body.get("run_ids"))]
    if not run_ids:
        raise InvalidArgument("run_ids must name at least one run")
    key = str_param(body, "metric_key")
    start = int_param(body.get("start_step"), "start_step")
    end = int_param(body.get("end_step"), "end_step")
    limit = int_param(body.get("max_results"), "max_results", 320) or 320

    def work() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for run_id in run_ids:
            points = [p for p in store.metric_history(run_id, key)
                      if (start is None or p.step >= start) and (end is None or p.step <= end)]
            if len(points) > limit:
                span = max(limit - 1, 1)
                picks = {round(i * (len(points) - 1) / span) for i in range(limit)}
                points = [p for i, p in enumerate(points) if i in picks]
            out += [mj.metric_json(p, run_id) for p in points]
        return out

    return JSONResponse({"metrics": await call(work)})


def routes() -> list[Route]:
    """The tracking endpoints under both MLflow prefixes."""
    table: list[tuple[str, str, Any]] = [
        ("/experiments/create", "POST", create_experiment),
        ("/experiments/get", "GET", get_experiment),
        ("/experiments/get-by-name", "GET", get_experiment_by_name),
        ("/experiments/search", "POST", search_experiments),
        ("/experiments/search", "GET", search_experiments),
        ("/experiments/update", "POST", update_experiment),
        ("/experiments/delete", "POST", delete_experiment),
        ("/experiments/restore", "POST", restore_experiment),
        ("/experiments/set-experiment-tag", "POST", set_experiment_tag),
        ("/experiments/delete-experiment-tag", "POST", delete_experiment_tag),
        ("/runs/create", "POST", create_run),
        ("/runs/get", "GET", get_run),
        ("/runs/update", "POST", update_run),
        ("/runs/delete", "POST", delete_run),
        ("/runs/restore", "POST", restore_run),
        ("/runs/log-metric", "POST", log_metric),
        ("/runs/log-parameter", "POST", log_param),
        ("/runs/set-tag", "POST", set_tag),
        ("/runs/delete-tag", "POST", delete_tag),
        ("/runs/log-batch", "POST", log_batch),
        ("/runs/log-inputs", "POST", log_inputs),
        ("/runs/search", "POST", search_runs),
        ("/metrics/get-history", "GET", metric_history),
        ("/metrics/get-history-bulk-interval", "GET", metric_history_bulk_interval),
    ]
    return both_prefixes(MLFLOW_API, table)

