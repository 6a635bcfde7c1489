"""Deployments and their monitoring under `/api/v1/`: routes, history, checks, alerts, actions.

    GET  /api/v1/deployments                          every deployment at its revision
    GET  /api/v1/deployments/{name}                   one deployment, with its history
    GET  /api/v1/deployments/{name}/checks?limit=     newest monitoring checks
    GET  /api/v1/deployments/{name}/alerts?status=    alert history
    GET  /api/v1/deployments/{name}/actions           what the policy did
    POST /api/v1/alerts/{id}/ack  {"by": "..."}       acknowledge an alert

Records are the `to_dict()` forms the CLI's `--json` prints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from starlette.routing import Route

from threadline.api.http import JSONResponse, call, int_param, read_json, stores
from threadline.errors import InvalidArgument
from threadline.meta.models import MonitorCheckRow
from threadline.monitor.alerts import Alerts
from threadline.monitor.loop import Monitor
from threadline.serving.deployments import Deployments

if TYPE_CHECKING:
    from typing import Any

    from starlette.requests import Request
    from starlette.responses import Response

    from threadline.api.http import Stores


def _limit(request: Request) -> int:
    limit = int_param(request.query_params.get("limit"), "limit", 50) or 50
    if not 0 < limit <= 1000:
        raise InvalidArgument(f"limit must be between 1 and 1000, not {limit}")
    return limit


async def list_deployments(request: Request) -> Response:
    """GET /api/v1/deployments."""
    found = await call(Deployments(stores(request).registry).all)
    return JSONResponse({"deployments": [d.to_dict() for d in found]})


async def get_deployment(request: Request) -> Response:
    """GET /api/v1/deployments/{name}: the current revision and every change."""
    deployments = Deployments(stores(request).registry)
    name = request.path_params["name"]
    current = await call(deployments.get, name)
    history = await call(deployments.history, name)
    return JSONResponse({**current.to_dict(), "history": [c.to_dict() for c in history]})


def _checks(found: Stores, name: str, limit: int) -> list[dict[str, Any]]:
    Deployments(found.registry).get(name)  # NotFound with the create hint
    with found.repos.db.session() as session:
        rows = session.scalars(select(MonitorCheckRow).where(MonitorCheckRow.deployment == name)
                               .order_by(MonitorCheckRow.created_at.desc()).limit(limit)).all()
        return [{**r.result, "created_at": r.created_at} for r in rows]


async def list_checks(request: Request) -> Response:
    """GET /api/v1/deployments/{name}/checks?limit=: newest first."""
    checks = await call(_checks, stores(request), request.path_params["name"], _limit(request))
    return JSONResponse({"checks": checks})


async def list_alerts(request: Request) -> Response:
    """GET /api/v1/deployments/{name}/alerts?status=firing|resolved|pending&limit=."""
    status = request.query_params.get("status") or None
    if status not in (None, "firing", "resolved", "pending"):
        raise InvalidArgument(f"status must be firing, resolved or pending, not {status!r}")
    alerts = Alerts(stores(request).repos.db)
    found = await call(alerts.history, request.path_params["name"], status=status, limit=_limit(request))
    return JSONResponse({"alerts": [a.to_dict() for a in found]})


async def list_actions(request: Request) -> Response:
    """GET /api/v1/deployments/{name}/actions: what the monitoring policy did, newest first."""
    monitor = Monitor(stores(request).registry)
    found = await call(monitor.actions, request.path_params["name"], _limit(request))
    return JSONResponse({"actions": found})


async def ack_alert(request: Request) -> Response:
    """POST /api/v1/alerts/{id}/ack with {"by": NAME}."""
    raw = request.path_params["alert_id"]
    if not str(raw).isdigit():
        raise InvalidArgument(f"alert id must be a number, not {raw!r}")
    body = await read_json(request)
    by = body.get("by")
    if not isinstance(by, str) or not by.strip():
        raise InvalidArgument('acknowledging needs {"by": "who"}')
    record = await call(Alerts(stores(request).repos.db).acknowledge, int(raw), by.strip())
    return JSONResponse({"alert": record.to_dict()})


def routes() -> list[Route]:
    """The deployment and monitoring routes."""
    return [
        Route("/api/v1/deployments", list_deployments, methods=["GET"]),
        Route("/api/v1/deployments/{name}", get_deployment, methods=["GET"]),
        Route("/api/v1/deployments/{name}/checks", list_checks, methods=["GET"]),
        Route("/api/v1/deployments/{name}/alerts", list_alerts, methods=["GET"]),
        Route("/api/v1/deployments/{name}/actions", list_actions, methods=["GET"]),
        Route("/api/v1/alerts/{alert_id}/ack", ack_alert, methods=["POST"]),
    ]
