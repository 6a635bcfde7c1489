"""MLflow's model-registry REST API (`/api/2.0/mlflow/registered-models/...`, `model-versions/...`).

Models and versions are Threadline registry entries. MLflow's stages are not supported (aliases
replace them, in MLflow too): `transition-stage` is refused and every version reports stage
"None". Model-version tags have no place in the registry yet and are refused when given.

A version's source is a run's files (`runs:/<run>/<path>`, `mlflow-artifacts:/<exp>/<run>/
artifacts/<path>`) or an MLflow 3 logged model (`models:/<model id>`, what `register_model`
sends); either way it becomes `ModelRegistry.register_external` over the run's artifacts that
hold the files, and `get-download-uri` answers the location the artifact proxy serves them at.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from threadline.api import mlflow_json as mj
from threadline.api import mlflow_logged_models as mlm
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
from threadline.api.mlflow_search import experiment_filter, matches
from threadline.errors import InvalidArgument, NotFound

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from threadline.registry.records import ModelVersion
    from threadline.registry.registry import ModelRegistry
    from threadline.tracking.store import TrackingStore

DEFAULT_MAX_MODELS = 100
_VERSION_CLAUSE = re.compile(
    r"^\s*(?P<key>name|run_id)\s*(?P<op>=|!=|LIKE|ILIKE)\s*'(?P<value>(?:[^']|'')*)'\s*$", re.IGNORECASE)
_RUNS_URI = re.compile(r"^runs:/(?P<run>[0-9a-f]{32})(?:/(?P<path>.*))?$")
_MODEL_ARTIFACTS = re.compile(r"^mlflow-artifacts:(?://[^/]*)?/(?P<rest>\d+/models/.*)$")
_ARTIFACTS_URI = re.compile(
    r"^mlflow-artifacts:(?://[^/]*)?/(?P<exp>\d+)/(?P<run>[0-9a-f]{32})/artifacts(?:/(?P<path>.*))?$")


def parse_source(source: str) -> tuple[str, str]:
    """(run id, artifact path) of an MLflow model source URI this server serves.

    Raises:
        InvalidArgument: the source is not a `runs:/` or this server's `mlflow-artifacts:` URI.
    """
    match = _RUNS_URI.match(source) or _ARTIFACTS_URI.match(source)
    if match is None:
        raise InvalidArgument(
            f"model version source {source!r} is not served here: use runs:/<run_id>/<path>, "
            "models:/<logged model id> or mlflow-artifacts:/<experiment>/<run_id>/artifacts/<path> "
            "of this server")
    return match["run"], (match["path"] or "").strip("/")


def source_files(tracking: TrackingStore, source: str) -> tuple[str, str]:
    """(run id, artifact path) of any source this server serves, logged models included.

    Raises:
        InvalidArgument: the source is not a URI of this server.
        NotFound: it names a logged model that does not exist.
    """
    found = mlm.resolve_source(tracking, source)
    if found is not None:
        return found
    location = _MODEL_ARTIFACTS.match(source)
    if location is not None:
        resolved = mlm.resolve_location(tracking, location["rest"])
        if resolved is not None:
            return resolved[1], resolved[2]
    return parse_source(source)


def _version(body: dict[str, Any]) -> int:
    number = int_param(str_param(body, "version"), "version")
    assert number is not None
    return number


def version_dict(version: ModelVersion) -> dict[str, Any]:
    """A version in MLflow's JSON, with its MLflow source (or a `models:/` URI for native ones)
    and, for a version of a logged model, the model's id (the client loads `models:/<name>/<n>`
    through it)."""
    out = mj.version_json(version, version.external_source or f"models:/{version.name}/{version.version}")
    model_id = mlm.model_id_of(version.external_source or "")
    if model_id is not None:
        out["model_id"] = model_id
    return out


def model_dict(registry: ModelRegistry, name: str) -> dict[str, Any]:
    """A registered model in MLflow's JSON, with its latest version."""
    model = registry.get_model(name)
    latest = None
    if model.latest_version is not None:
        latest = version_dict(registry.get_version(name, model.latest_version))
    return mj.model_json(model, latest)


def _registry(request: Request) -> ModelRegistry:
    return stores(request).registry


# --------------------------------------------------------------------- registered models
async def create_model(request: Request) -> Response:
    """registered-models/create."""
    body = await params(request)
    registry = _registry(request)
    name = str_param(body, "name")
    tags = mj.parse_pairs(body.get("tags"), "tags")

    def work() -> dict[str, Any]:
        registry.create_model(name, str(body.get("description") or ""), tags)
        return model_dict(registry, name)

    return JSONResponse({"registered_model": await call(work)})


async def get_model(request: Request) -> Response:
    """registered-models/get."""
    body = await params(request)
    return JSONResponse({"registered_model": await call(model_dict, _registry(request),
                                                        str_param(body, "name"))})


async def search_models(request: Request) -> Response:
    """registered-models/search: filter on name and tags, by name, paged."""
    body = await params(request)
    registry = _registry(request)
    clauses = experiment_filter(str_param(body, "filter", required=False))
    limit = int_param(body.get("max_results"), "max_results", DEFAULT_MAX_MODELS) or DEFAULT_MAX_MODELS
    offset = int_param(body.get("page_token"), "page_token", 0) or 0

    def work() -> dict[str, Any]:
        found = [m for m in registry.list_models() if matches(m.name, m.tags, clauses)]
        if any(str(o).split()[-1].upper() == "DESC" for o in list_param(body.get("order_by"))):
            found.reverse()
        out: dict[str, Any] = {"registered_models": [model_dict(registry, m.name)
                                                     for m in found[offset : offset + limit]]}
        if offset + limit < len(found):
            out["next_page_token"] = str(offset + limit)
        return out

    return JSONResponse(await call(work))


async def update_model(request: Request) -> Response:
    """registered-models/update: the description."""
    body = await params(request)
    registry = _registry(request)
    name = str_param(body, "name")

    def work() -> dict[str, Any]:
        registry.update_model(name, description=str(body.get("description") or ""))
        return model_dict(registry, name)

    return JSONResponse({"registered_model": await call(work)})


async def rename_model(request: Request) -> Response:
    """registered-models/rename."""
    body = await params(request)
    registry = _registry(request)
    new_name = str_param(body, "new_name")

    def work() -> dict[str, Any]:
        registry.rename_model(str_param(body, "name"), new_name)
        return model_dict(registry, new_name)

    return JSONResponse({"registered_model": await call(work)})


async def delete_model(request: Request) -> Response:
    """registered-models/delete."""
    body = await params(request)
    await call(_registry(request).delete_model, str_param(body, "name"))
    return empty()


async def set_model_tag(request: Request) -> Response:
    """registered-models/set-tag."""
    body = await params(request)
    await call(lambda: _registry(request).update_model(
        str_param(body, "name"), tags={str_param(body, "key"): str(body.get("value", ""))}))
    return empty()


async def delete_model_tag(request: Request) -> Response:
    """registered-models/delete-tag."""
    body = await params(request)
    await call(_registry(request).delete_model_tag, str_param(body, "name"), str_param(body, "key"))
    return empty()


async def latest_versions(request: Request) -> Response:
    """registered-models/get-latest-versions: the latest version (stage "None" is the only one)."""
    body = await params(request)
    registry = _registry(request)
    stages = [str(s).lower() for s in list_param(body.get("stages"))]

    def work() -> list[dict[str, Any]]:
        model = registry.get_model(str_param(body, "name"))
        if model.latest_version is None or (stages and "none" not in stages):
            return []
        return [version_dict(registry.get_version(model.name, model.latest_version))]

    return JSONResponse({"model_versions": await call(work)})


async def set_alias(request: Request) -> Response:
    """registered-models/alias POST: point an alias at a version (logged, compare-and-swap)."""
    body = await params(request)
    await call(_registry(request).set_alias, str_param(body, "name"), str_param(body, "alias"),
               _version(body))
    return empty()


async def delete_alias(request: Request) -> Response:
    """registered-models/alias DELETE."""
    body = await params(request)
    await call(_registry(request).delete_alias, str_param(body, "name"), str_param(body, "alias"))
    return empty()


async def get_by_alias(request: Request) -> Response:
    """registered-models/alias GET: the version an alias points at."""
    body = await params(request)
    registry = _registry(request)

    def work() -> dict[str, Any]:
        return version_dict(registry.get_version(str_param(body, "name"), str_param(body, "alias")))

    return JSONResponse({"model_version": await call(work)})


# ------------------------------------------------------------------------ model versions
def _create_version(registry: ModelRegistry, tracking: TrackingStore, body: dict[str, Any]
                    ) -> dict[str, Any]:
    if mj.parse_pairs(body.get("tags"), "tags"):
        raise InvalidArgument("model version tags are not supported by Threadline yet; register "
                              "without tags and keep notes in the description")
    source = str_param(body, "source")
    run_id, path = source_files(tracking, source)
    given = str_param(body, "run_id", required=False)
    if given and given != run_id:
        raise InvalidArgument(f"run_id {given} does not match the run {run_id} of source {source!r}")
    model_id = str_param(body, "model_id", required=False)
    if model_id and model_id != mlm.model_id_of(source):
        raise InvalidArgument(f"model_id {model_id} does not match source {source!r}; register "
                              f"source models:/{model_id}")
    version = registry.register_external(str_param(body, "name"), run_id, source, path=path,
                                         description=str(body.get("description") or ""))
    return version_dict(version)


async def create_version(request: Request) -> Response:
    """model-versions/create from a `runs:/`, `models:/<model id>` or `mlflow-artifacts:` source
    (flavor `mlflow`)."""
    body = await params(request)
    return JSONResponse({"model_version": await call(_create_version, _registry(request),
                                                     stores(request).tracking, body)})


async def get_version(request: Request) -> Response:
    """model-versions/get."""
    body = await params(request)
    registry = _registry(request)
    name, number = str_param(body, "name"), _version(body)
    return JSONResponse({"model_version": await call(
        lambda: version_dict(registry.get_version(name, number)))})


def version_filter(text: str) -> list[tuple[str, str, str]]:
    """`name = 'churn' AND run_id = '...'` -> [(key, op, value)]; other clauses are refused."""
    out: list[tuple[str, str, str]] = []
    for clause in re.split(r"\s+AND\s+", text.strip(), flags=re.IGNORECASE) if text.strip() else []:
        match = _VERSION_CLAUSE.match(clause)
        if match is None:
            raise InvalidArgument(f"unsupported model version filter clause {clause!r}: use name or "
                                  "run_id with =, !=, LIKE or ILIKE and a quoted string")
        out.append((match["key"].lower(), match["op"].upper(), match["value"].replace("''", "'")))
    return out


async def search_versions(request: Request) -> Response:
    """model-versions/search: filter on name and run_id, newest first, paged."""
    body = await params(request)
    registry = _registry(request)
    clauses = version_filter(str_param(body, "filter", required=False))
    limit = int_param(body.get("max_results"), "max_results", 10_000) or 10_000
    offset = int_param(body.get("page_token"), "page_token", 0) or 0
    names: list[tuple[str | None, str, str]] = [(None, op, v) for k, op, v in clauses if k == "name"]
    runs: list[tuple[str | None, str, str]] = [(None, op, v) for k, op, v in clauses if k == "run_id"]

    def work() -> dict[str, Any]:
        found: list[dict[str, Any]] = []
        for model in registry.list_models():
            if not matches(model.name, {}, names):
                continue
            found += [version_dict(v) for v in reversed(registry.list_versions(model.name))
                      if matches(v.run_id or "", {}, runs)]
        out: dict[str, Any] = {"model_versions": found[offset : offset + limit]}
        if offset + limit < len(found):
            out["next_page_token"] = str(offset + limit)
        return out

    return JSONResponse(await call(work))


async def update_version(request: Request) -> Response:
    """model-versions/update: the description."""
    body = await params(request)
    registry = _registry(request)
    name, number = str_param(body, "name"), _version(body)
    return JSONResponse({"model_version": await call(lambda: version_dict(
        registry.update_version_description(name, number, str(body.get("description") or ""))))})


async def delete_version(request: Request) -> Response:
    """model-versions/delete (aliases pointing at it are removed, as in MLflow)."""
    body = await params(request)
    await call(_registry(request).delete_version, str_param(body, "name"), _version(body))
    return empty()


async def download_uri(request: Request) -> Response:
    """model-versions/get-download-uri: where the MLflow client downloads the files from."""
    body = await params(request)
    registry, tracking = _registry(request), stores(request).tracking
    name, number = str_param(body, "name"), _version(body)

    def work() -> str:
        source = registry.get_version(name, number).external_source
        if source is None:
            raise NotFound(f"version {number} of {name!r} was registered by Threadline; its files "
                           f"load with `threadline models` (models:/ URIs are not served as files)")
        location = mlm.model_location(tracking, source)
        if location is not None:  # the logged model's own location, as MLflow's server answers
            return location
        run_id, path = source_files(tracking, source)
        info = tracking.get_run(run_id).info
        return f"{mj.artifact_root(info)}/{path}".rstrip("/")

    return JSONResponse({"artifact_uri": await call(work)})


async def unsupported(request: Request) -> Response:
    """Stage transitions and version tags: refused with the reason."""
    raise InvalidArgument(f"{request.url.path.rsplit('/', 2)[-2:]} is not supported by Threadline: "
                          "use aliases instead of stages; model version tags are not stored yet")


def routes() -> list[Route]:
    """The registry endpoints under both MLflow prefixes."""
    table: list[tuple[str, str, Any]] = [
        ("/registered-models/create", "POST", create_model),
        ("/registered-models/get", "GET", get_model),
        ("/registered-models/search", "GET", search_models),
        ("/registered-models/update", "PATCH", update_model),
        ("/registered-models/rename", "POST", rename_model),
        ("/registered-models/delete", "DELETE", delete_model),
        ("/registered-models/set-tag", "POST", set_model_tag),
        ("/registered-models/delete-tag", "DELETE", delete_model_tag),
        ("/registered-models/get-latest-versions", "POST", latest_versions),
        ("/registered-models/get-latest-versions", "GET", latest_versions),
        ("/registered-models/alias", "POST", set_alias),
        ("/registered-models/alias", "DELETE", delete_alias),
        ("/registered-models/alias", "GET", get_by_alias),
        ("/model-versions/create", "POST", create_version),
        ("/model-versions/get", "GET", get_version),
        ("/model-versions/search", "GET", search_versions),
        ("/model-versions/update", "PATCH", update_version),
        ("/model-versions/delete", "DELETE", delete_version),
        ("/model-versions/get-download-uri", "GET", download_uri),
        ("/model-versions/transition-stage", "POST", unsupported),
        ("/model-versions/set-tag", "POST", unsupported),
        ("/model-versions/delete-tag", "DELETE", unsupported),
    ]
    return both_prefixes(MLFLOW_API, table)
