"""Threadline's own read API under `/api/v1/`: health, data repos, runs, models, lineage.

Records are the `to_dict()` forms the CLI's `--json` prints, so a script can move between the
two. Lists are wrapped in an object (`{"runs": [...], "next_page_token": ...}`) so fields can be
added without breaking clients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from starlette.responses import PlainTextResponse
from starlette.routing import Route

from threadline.api.http import JSONResponse, call, int_param, stores
from threadline.errors import InvalidArgument
from threadline.lineage.graph import LineageGraph, Node

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from threadline.api.http import Stores
    from threadline.lineage.graph import Direction

#: what `/version` answers: the MLflow server version whose REST API this server speaks
MLFLOW_API_VERSION = "3.17.2"
MAX_LOG = 10_000


async def health(request: Request) -> Response:
    """Liveness: answers without touching the stores."""
    return JSONResponse({"status": "ok"})


async def mlflow_health(request: Request) -> Response:
    """`/health` as MLflow's server answers it (some tools probe it)."""
    return PlainTextResponse("OK")


async def mlflow_version(request: Request) -> Response:
    """`/version`: the MLflow API version served, for clients that gate features on it."""
    return PlainTextResponse(MLFLOW_API_VERSION)


async def list_repos(request: Request) -> Response:
    """GET /api/v1/repos: every data repo with its branches and tags."""
    found = await call(stores(request).repos.list)
    return JSONResponse({"repos": [r.to_dict() for r in found]})


async def repo_log(request: Request) -> Response:
    """GET /api/v1/repos/{name}/log?ref=&limit=: commits reachable from ref, newest first."""
    name = request.path_params["name"]
    ref = request.query_params.get("ref", "")
    limit = int_param(request.query_params.get("limit"), "limit", 100) or 100
    if not 0 < limit <= MAX_LOG:
        raise InvalidArgument(f"limit must be between 1 and {MAX_LOG}, not {limit}")
    target = f"{name}@{ref}" if ref else name
    found = await call(stores(request).repos.log, target, limit)
    return JSONResponse({"commits": [c.to_dict() for c in found]})


def _search(found: Stores, query: dict[str, str], ids_text: str) -> dict[str, Any]:
    store = found.tracking
    view = query.get("view", "active")
    if ids_text:
        try:
            ids = [int(i) for i in ids_text.split(",") if i.strip()]
        except ValueError as exc:
            raise InvalidArgument(
                f"experiment_ids must be comma-separated integers, not {ids_text!r}") from exc
    else:
        ids = [e.id for e in store.list_experiments("all" if view == "all" else "active")]
    max_results = int_param(query.get("max_results"), "max_results", 100) or 100
    order = [o for o in query.get("order_by", "").split(",") if o.strip()]
    runs, token = store.search_runs(ids, query.get("filter", ""), order, max_results,
                                    query.get("page_token") or None, view)
    return {"runs": [r.to_dict() for r in runs], "next_page_token": token}


async def search_runs(request: Request) -> Response:
    """GET /api/v1/runs?experiment_ids=1,2&filter=&order_by=a,b&max_results=&page_token=&view=."""
    query = dict(request.query_params)
    return JSONResponse(await call(_search, stores(request), query, query.get("experiment_ids", "")))


async def get_run(request: Request) -> Response:
    """GET /api/v1/runs/{id}: params, latest metrics, tags and inputs (an id prefix works)."""
    store = stores(request).tracking
    run_id = request.path_params["run_id"]
    run = await call(lambda: store.get_run(store.resolve_run_prefix(run_id)))
    return JSONResponse(run.to_dict())


async def metric_history(request: Request) -> Response:
    """GET /api/v1/runs/{id}/metrics/{key}: every point of one metric."""
    store = stores(request).tracking
    run_id, key = request.path_params["run_id"], request.path_params["key"]
    points = await call(lambda: store.metric_history(store.resolve_run_prefix(run_id), key))
    return JSONResponse({"key": key, "points": [p.to_dict() for p in points]})


async def list_models(request: Request) -> Response:
    """GET /api/v1/models: registered models with their aliases and latest version."""
    found = await call(stores(request).registry.list_models)
    return JSONResponse({"models": [m.to_dict() for m in found]})


async def get_model(request: Request) -> Response:
    """GET /api/v1/models/{name}: the model, its versions and its alias history."""
    registry = stores(request).registry
    name = request.path_params["name"]

    def work() -> dict[str, Any]:
        model = registry.get_model(name)
        return {**model.to_dict(), "versions": [v.to_dict() for v in registry.list_versions(name)],
                "alias_history": [e.to_dict() for e in registry.alias_history(name)]}

    return JSONResponse(await call(work))


async def get_version(request: Request) -> Response:
    """GET /api/v1/models/{name}/versions/{version}: a version by number or alias."""
    registry = stores(request).registry
    name, version = request.path_params["name"], request.path_params["version"]
    number: int | str = int(version) if version.isdigit() else version
    found = await call(registry.get_version, name, number)
    return JSONResponse(found.to_dict())


async def lineage(request: Request) -> Response:
    """GET /api/v1/lineage/{kind}/{id}?direction=up|down: edges reachable from a node."""
    direction = request.query_params.get("direction", "up")
    if direction not in ("up", "down"):
        raise InvalidArgument(f"direction must be 'up' or 'down', not {direction!r}")
    depth = int_param(request.query_params.get("max_depth"), "max_depth", 1000) or 1000
    node = Node(request.path_params["kind"], request.path_params["node_id"])
    graph = LineageGraph(stores(request).repos.db)
    edges = await call(graph.edges, node, cast("Direction", direction), depth)
    return JSONResponse({
        "node": str(node), "direction": direction,
        "edges": [{"from": str(e.source), "relation": e.relation, "to": str(e.target), "meta": e.meta}
                  for e in edges],
    })


def routes() -> list[Route]:
    """Threadline's own routes, plus MLflow's `/health` and `/version` probes."""
    return [
        Route("/api/v1/health", health, methods=["GET"]),
        Route("/health", mlflow_health, methods=["GET"]),
        Route("/version", mlflow_version, methods=["GET"]),
        Route("/api/v1/repos", list_repos, methods=["GET"]),
        Route("/api/v1/repos/{name}/log", repo_log, methods=["GET"]),
        Route("/api/v1/runs", search_runs, methods=["GET"]),
        Route("/api/v1/runs/{run_id}", get_run, methods=["GET"]),
        Route("/api/v1/runs/{run_id}/metrics/{key:path}", metric_history, methods=["GET"]),
        Route("/api/v1/models", list_models, methods=["GET"]),
        Route("/api/v1/models/{name}", get_model, methods=["GET"]),
        Route("/api/v1/models/{name}/versions/{version}", get_version, methods=["GET"]),
        Route("/api/v1/lineage/{kind}/{node_id:path}", lineage, methods=["GET"]),
    ]
