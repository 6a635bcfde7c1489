"""MLflow 3's logged-models REST API (`/api/2.0/mlflow/logged-models/...`, `runs/outputs`).

`mlflow.<flavor>.log_model` creates a logged model (PENDING), records it as an output of the
run, uploads its files to the model's `artifact_uri` and finalizes it (READY or FAILED);
`register_model("runs:/<run>/<name>")` finds it again by searching on its name. The records
and files are kept by `threadline.tracking.logged_models` (on the source run); this module
only translates MLflow's JSON.

A model's `artifact_uri` is `mlflow-artifacts:/<experiment>/models/<model id>/artifacts`, the
form MLflow's own server uses; the artifact proxy (`mlflow_artifacts.py`) maps it onto
`logged_models/<model id>/` in the source run's artifacts with `resolve_location`.
"""

from __future__ import annotations

import re
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
from threadline.errors import InvalidArgument, NotFound
from threadline.tracking import logged_models as lm

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from threadline.tracking.store import TrackingStore

DEFAULT_MAX_MODELS = 100
#: MLflow's `LoggedModelStatus` enum: proto names and numbers -> our statuses
_STATUS_IN = {"LOGGED_MODEL_PENDING": lm.PENDING, "LOGGED_MODEL_READY": lm.READY,
              "LOGGED_MODEL_UPLOAD_FAILED": lm.FAILED, "1": lm.PENDING, "2": lm.READY,
              "3": lm.FAILED, **{s: s for s in lm.STATUSES}}
_STATUS_OUT = {lm.PENDING: "LOGGED_MODEL_PENDING", lm.READY: "LOGGED_MODEL_READY",
               lm.FAILED: "LOGGED_MODEL_UPLOAD_FAILED"}
_MODELS_URI = re.compile(r"^models:/(?P<id>m-[0-9a-f]{40})/?$")
#: `<experiment>/models/<model id>/artifacts/<path>`: a logged model's files at the artifact proxy
MODEL_LOCATION = re.compile(r"^(?P<exp>\d+)/models/(?P<id>[^/]+)/artifacts(?:/(?P<rest>.*))?$")


def artifact_uri(model: lm.LoggedModel) -> str:
    """Where the MLflow client reads and writes the model's files (this server's proxy)."""
    return f"mlflow-artifacts:/{model.experiment_id}/models/{model.id}/artifacts"


def model_json(model: lm.LoggedModel) -> dict[str, Any]:
    """A logged model as MLflow's `LoggedModel` message."""
    return {
        "info": {
            "model_id": model.id, "experiment_id": str(model.experiment_id), "name": model.name,
            "creation_timestamp_ms": model.created_at, "last_updated_timestamp_ms": model.updated_at,
            "artifact_uri": artifact_uri(model), "status": _STATUS_OUT[model.status],
            "model_type": model.model_type, "source_run_id": model.source_run_id,
            "status_message": model.status_message,
            "tags": [{"key": k, "value": v} for k, v in model.tags.items()], "registrations": [],
        },
        "data": {"params": [{"key": k, "value": v} for k, v in model.params.items()], "metrics": []},
    }


def resolve_location(store: TrackingStore, location: str) -> tuple[int, str, str] | None:
    """`<exp>/models/<id>/artifacts/<path>` -> (experiment, source run, path in the run's
    artifacts); None for any other location (a run's). The path is not normalised here."""
    match = MODEL_LOCATION.match(location.strip("/"))
    if match is None:
        return None
    model = lm.get(store, match["id"], allow_deleted=True)
    if model.experiment_id != int(match["exp"]):
        raise NotFound(f"logged model {model.id} is not in experiment {match['exp']}")
    rest = (match["rest"] or "").strip("/")
    return model.experiment_id, model.source_run_id, f"{model.artifact_path}/{rest}".rstrip("/")


def resolve_source(store: TrackingStore, source: str) -> tuple[str, str] | None:
    """(source run, path in its artifacts) of `models:/<model id>`; None for other URIs."""
    match = _MODELS_URI.match(source)
    if match is None:
        return None
    model = lm.get(store, match["id"])
    return model.source_run_id, model.artifact_path


def model_id_of(source: str) -> str | None:
    """The logged model id in a `models:/<model id>` URI; None for any other URI."""
    match = _MODELS_URI.match(source)
    return match["id"] if match is not None else None


def model_location(store: TrackingStore, source: str) -> str | None:
    """The `artifact_uri` of the logged model a `models:/<model id>` source names (deleted ones
    too: a registered version keeps working); None for any other source."""
    model_id = model_id_of(source)
    if model_id is None:
        return None
    return artifact_uri(lm.get(store, model_id, allow_deleted=True))


def _tracking(request: Request) -> TrackingStore:
    return stores(request).tracking


def _model_id(request: Request) -> str:
    return str(request.path_params["model_id"])


def _answer(model: lm.LoggedModel) -> Response:
    return JSONResponse({"model": model_json(model)})


async def create_model(request: Request) -> Response:
    """logged-models POST: a PENDING model of a run (Threadline keeps models on their run)."""
    body = await params(request)
    store = _tracking(request)
    run_id = str_param(body, "source_run_id", required=False)
    if not run_id:
        raise InvalidArgument("Threadline keeps each logged model with the run that logged it: "
                              "log the model inside `with mlflow.start_run():`")

    def work() -> lm.LoggedModel:
        return lm.create(
            store, mj.experiment_id(store, str_param(body, "experiment_id")), run_id,
            name=str_param(body, "name", required=False),
            model_type=str_param(body, "model_type", required=False),
            params=mj.parse_pairs(body.get("params"), "params"),
            tags=mj.parse_pairs(body.get("tags"), "tags"))

    return _answer(await call(work))


async def get_model(request: Request) -> Response:
    """logged-models/{id} GET (`?allow_deleted=true` shows deleted ones too)."""
    allow = request.query_params.get("allow_deleted", "").lower() == "true"
    return _answer(await call(lm.get, _tracking(request), _model_id(request), allow_deleted=allow))


async def finalize_model(request: Request) -> Response:
    """logged-models/{id} PATCH: the final status once the files are uploaded."""
    body = await params(request)
    given = str(body.get("status", "")).upper()
    status = _STATUS_IN.get(given)
    if status is None:
        raise InvalidArgument(f"status must be LOGGED_MODEL_READY or LOGGED_MODEL_UPLOAD_FAILED, "
                              f"not {body.get('status')!r}")
    return _answer(await call(lm.finalize, _tracking(request), _model_id(request), status))


async def delete_model(request: Request) -> Response:
    """logged-models/{id} DELETE: hidden from searches; files and registered versions stay."""
    await call(lm.delete, _tracking(request), _model_id(request))
    return empty()


async def set_tags(request: Request) -> Response:
    """logged-models/{id}/tags PATCH."""
    body = await params(request)
    tags = mj.parse_pairs(body.get("tags"), "tags")
    return _answer(await call(lm.set_tags, _tracking(request), _model_id(request), tags))


async def delete_tag(request: Request) -> Response:
    """logged-models/{id}/tags/{key} DELETE."""
    await call(lm.delete_tag, _tracking(request), _model_id(request), request.path_params["key"])
    return empty()


async def log_params(request: Request) -> Response:
    """logged-models/{id}/params POST: params never change their value once logged."""
    body = await params(request)
    values = mj.parse_pairs(body.get("params"), "params")
    await call(lm.log_params, _tracking(request), _model_id(request), values)
    return empty()


async def search_models(request: Request) -> Response:
    """logged-models/search: filter on attributes, tags and params; newest first; paged.

    The client also searches whenever it resolves `runs:/<run>/<name>` to a logged model.
    """
    body = await params(request)
    store = _tracking(request)
    if list_param(body.get("datasets")):
        raise InvalidArgument("searching logged models by dataset is not supported: Threadline "
                              "keeps no metrics per logged model; leave datasets out")
    order: list[tuple[str, bool]] = []
    for item in list_param(body.get("order_by")):
        if not isinstance(item, dict) or not item.get("field_name") or item.get("dataset_name"):
            raise InvalidArgument(f"order_by entries need a field_name (and no dataset), not {item!r}")
        order.append((str(item["field_name"]), item.get("ascending", True) is not False))
    limit = int_param(body.get("max_results"), "max_results", DEFAULT_MAX_MODELS) or DEFAULT_MAX_MODELS

    def work() -> dict[str, Any]:
        ids = [mj.experiment_id(store, e) for e in list_param(body.get("experiment_ids"))]
        found, token = lm.search(store, ids, str_param(body, "filter", required=False), order,
                                 limit, str_param(body, "page_token", required=False) or None)
        out: dict[str, Any] = {"models": [model_json(m) for m in found]}
        if token:
            out["next_page_token"] = token
        return out

    return JSONResponse(await call(work))


async def log_outputs(request: Request) -> Response:
    """runs/outputs: the models a run output, with the step each was logged at."""
    body = await params(request)
    store = _tracking(request)
    run_id = str_param(body, "run_id")
    outputs = list_param(body.get("models"))
    for item in outputs:
        if not isinstance(item, dict) or not isinstance(item.get("model_id"), str):
            raise InvalidArgument(f"each model output needs a model_id, not {item!r}")

    def work() -> None:
        for item in outputs:
            lm.log_output(store, run_id, item["model_id"], int_param(item.get("step"), "step", 0) or 0)

    await call(work)
    return empty()


def routes() -> list[Route]:
    """The logged-model endpoints under both MLflow prefixes."""
    table: list[tuple[str, str, Any]] = [
        ("/logged-models", "POST", create_model),
        ("/logged-models/search", "POST", search_models),
        ("/logged-models/{model_id}", "GET", get_model),
        ("/logged-models/{model_id}", "PATCH", finalize_model),
        ("/logged-models/{model_id}", "DELETE", delete_model),
        ("/logged-models/{model_id}/tags", "PATCH", set_tags),
        ("/logged-models/{model_id}/tags/{key:path}", "DELETE", delete_tag),
        ("/logged-models/{model_id}/params", "POST", log_params),
        ("/runs/outputs", "POST", log_outputs),
    ]
    return both_prefixes(MLFLOW_API, table)
