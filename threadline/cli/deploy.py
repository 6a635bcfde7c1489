"""`threadline deploy ...`, `threadline serve` and `threadline token ...`: parse, show, delegate
to `threadline.serving`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from threadline.cli.output import console, emit_json, err_console, repos
from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from threadline.serving.deployments import Deployment, Deployments

app = typer.Typer(help="Deployments: routes (A/B, canary, shadow), settings, history, rollback.",
                  no_args_is_help=True)
tokens_app = typer.Typer(help="Bearer tokens for the servers (stored hashed).", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
MessageOpt = Annotated[str, typer.Option("--message", "-m", help="Why (kept in the history).")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="A setting KEY=VALUE (repeatable), e.g. --set max_batch_size=32 --set cache.ttl_s=60")]


def _deployments() -> Deployments:
    from threadline.registry import ModelRegistry
    from threadline.serving.deployments import Deployments

    return Deployments(ModelRegistry(repos()))


def _value(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def _settings(pairs: list[str] | None, file: Path | None) -> dict[str, Any]:
    import yaml

    settings: dict[str, Any] = {}
    if file is not None:
        loaded = yaml.safe_load(file.read_text())
        if not isinstance(loaded, dict):
            raise InvalidArgument(f"{file} must hold a mapping of settings")
        settings.update(loaded)
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"--set takes KEY=VALUE, not {pair!r}")
        head, _, sub = key.partition(".")
        if sub:
            settings.setdefault(head, {})[sub] = _value(value)
        else:
            settings[key] = _value(value)
    return settings


def _routes(models: list[str], canary: str | None, percent: float,
            shadow: list[str] | None) -> list[dict[str, Any]]:
    if not models:
        raise InvalidArgument("give the model to serve: --model NAME@ALIAS (or NAME@VERSION)")
    share = 100.0 - (percent if canary else 0.0)
    routes: list[dict[str, Any]] = [{"model": m, "weight": share / len(models), "mode": "primary"}
                                    for m in models]
    if canary:
        routes.append({"model": canary, "weight": percent, "mode": "canary"})
    routes += [{"model": s, "weight": 100, "mode": "shadow"} for s in shadow or []]
    return routes


def _show(deployment: Deployment) -> None:
    table = Table("route", "mode", "model", "weight")
    for route in deployment.spec.routes:
        weight = f"{route.weight:g}%" if route.mode == "shadow" else f"{route.weight:g}"
        table.add_row(escape(route.name), route.mode, escape(route.model), weight)
    console.print(f"deployment [bold]{escape(deployment.name)}[/] revision {deployment.revision}")
    console.print(table)


@app.command()
def create(
    name: str,
    model: Annotated[list[str], typer.Option("--model", help="Model to serve (repeat for A/B).")],
    canary: Annotated[str | None, typer.Option(help="A canary model, e.g. churn@4.")] = None,
    percent: Annotated[float, typer.Option(help="Canary share of traffic, in percent.")] = 10.0,
    shadow: Annotated[list[str] | None, typer.Option(help="A shadow model (gets a copy).")] = None,
    settings_file: Annotated[Path | None, typer.Option("--settings", help="YAML settings file.")] = None,
    setting: SetOpt = None,
    message: MessageOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Create a deployment of a model (alias routes follow the alias when it moves)."""
    deployment = _deployments().create(name, _routes(model, canary, percent, shadow),
                                       _settings(setting, settings_file), message=message)
    if as_json:
        emit_json(deployment.to_dict())
        return
    _show(deployment)
    err_console.print(f"serve it with `threadline serve {name}`")


@app.command()
def update(
    name: str,
    model: Annotated[list[str] | None, typer.Option("--model", help="Replace the routes.")] = None,
    canary: Annotated[str | None, typer.Option(help="A canary model.")] = None,
    percent: Annotated[float, typer.Option(help="Canary share of traffic, in percent.")] = 10.0,
    shadow: Annotated[list[str] | None, typer.Option(help="A shadow model.")] = None,
    settings_file: Annotated[Path | None, typer.Option("--settings", help="YAML settings file.")] = None,
    setting: SetOpt = None,
    message: MessageOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Change a deployment's routes and/or settings (a new revision; servers apply it live)."""
    routes = _routes(model, canary, percent, shadow) if model else None
    settings = _settings(setting, settings_file)
    if routes is None and not settings:
        raise InvalidArgument("nothing to change: give --model, --set or --settings")
    deployment = _deployments().change(name, routes=routes, settings=settings or None, message=message)
    if as_json:
        emit_json(deployment.to_dict())
        return
    _show(deployment)


@app.command("canary")
def canary_(
    name: str,
    model: Annotated[str, typer.Argument(help="The canary model, e.g. churn@4.")],
    percent: Annotated[float, typer.Option(help="Share of traffic (0 removes the canary).")] = 10.0,
    message: MessageOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Send a share of traffic to a canary model (sticky by the request key header)."""
    deployment = _deployments().set_canary(name, model, percent, message=message)
    if as_json:
        emit_json(deployment.to_dict())
        return
    _show(deployment)


@app.command()
def promote(name: str, message: MessageOpt = "", as_json: JsonOpt = False) -> None:
    """Give the canary all the traffic (it becomes the primary route)."""
    deployment = _deployments().promote_canary(name, message=message)
    if as_json:
        emit_json(deployment.to_dict())
        return
    _show(deployment)


@app.command("list")
def list_(as_json: JsonOpt = False) -> None:
    """List deployments."""
    found = _deployments().all()
    if as_json:
        emit_json([d.to_dict() for d in found])
        return
    table = Table("deployment", "revision", "routes")
    for d in found:
        table.add_row(escape(d.name), str(d.revision), escape(", ".join(
            f"{r.name}={r.model} ({r.weight:g})" for r in d.spec.routes)))
    console.print(table)


@app.command()
def status(
    name: str,
    url: Annotated[str | None, typer.Option(help="A running server to ask for live metrics.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a deployment's routes, the versions they resolve to and, with --url, live metrics."""
    deployments = _deployments()
    deployment = deployments.get(name)
    resolved = {r.name: deployments.registry.get_version(r.model) for r in deployment.spec.routes}
    live: dict[str, Any] | None = None
    if url:
        import httpx

        live = httpx.get(f"{url.rstrip('/')}/deployments/{name}/status", timeout=10).json()
    if as_json:
        body = deployment.to_dict()
        body["resolved"] = {k: f"{v.name}/{v.version}" for k, v in resolved.items()}
        if live is not None:
            body["live"] = live
        emit_json(body)
        return
    table = Table("route", "mode", "model", "version", "weight", "requests", "errors", "p50 ms", "p95 ms")
    stats = {(s["route"], s["version"]): s for s in (live or {}).get("metrics", {}).get("routes", [])}
    for route in deployment.spec.routes:
        version = resolved[route.name]
        s = stats.get((route.name, str(version.version)), {})
        table.add_row(escape(route.name), route.mode, escape(route.model), f"v{version.version}",
                      f"{route.weight:g}", str(s.get("requests", "-")), str(s.get("errors", "-")),
                      f"{s['p50_s'] * 1000:.2f}" if s.get("p50_s") else "-",
                      f"{s['p95_s'] * 1000:.2f}" if s.get("p95_s") else "-")
    console.print(f"deployment [bold]{escape(name)}[/] revision {deployment.revision}")
    console.print(table)


@app.command()
def history(name: str, as_json: JsonOpt = False) -> None:
    """Every change of a deployment, newest first."""
    from datetime import UTC, datetime

    changes = _deployments().history(name)
    if as_json:
        emit_json([c.to_dict() for c in changes])
        return
    table = Table("revision", "action", "routes", "by", "when", "message")
    for c in changes:
        routes = ", ".join(f"{r['name']}={r['model']} ({r['weight']:g})" for r in c.spec["routes"])
        when = datetime.fromtimestamp(c.created_at / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(str(c.revision), c.action, escape(routes), escape(c.actor), when, escape(c.message))
    console.print(table)


@app.command()
def rollback(
    name: str,
    to: Annotated[int | None, typer.Option(help="Revision to restore (default: the previous).")] = None,
    message: MessageOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Restore an earlier revision's routes and settings (as a new revision)."""
    deployment = _deployments().rollback(name, to=to, message=message)
    if as_json:
        emit_json(deployment.to_dict())
        return
    _show(deployment)


@app.command()
def delete(name: str, yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False) -> None:
    """Delete a deployment and its history (its prediction log repo stays)."""
    if not yes and not typer.confirm(f"delete deployment {name}?"):
        raise typer.Exit(1)
    _deployments().delete(name)
    err_console.print(f"deleted deployment {escape(name)}")


def serve(
    names: Annotated[list[str], typer.Argument(help="Deployments to serve.")],
    host: Annotated[str, typer.Option(help="Address to bind (not loopback: a token is required).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes sharing the port.")] = 1,
    auth: Annotated[bool, typer.Option("--auth", help="Require a bearer token on loopback too.")] = False,
    no_log: Annotated[bool, typer.Option("--no-log", help="Do not write the prediction log.")] = False,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request.")] = False,
    backend: Annotated[str, typer.Option(help="uvicorn (worker processes) or ray (Ray Serve).")]
    = "uvicorn",
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster to join (default: start one).")]
    = None,
    replicas: Annotated[int, typer.Option(help="Ray Serve replicas (without autoscaling).")] = 1,
    max_replicas: Annotated[int | None, typer.Option(help="Autoscale Ray Serve replicas up to this.")]
    = None,
) -> None:
    """Serve deployments over HTTP (Threadline, MLflow and Open Inference V2 protocols)."""
    from threadline.serving.server import serve as run

    if backend not in ("uvicorn", "ray"):
        raise InvalidArgument(f"--backend must be uvicorn or ray, not {backend!r}")
    ray = None
    if backend == "ray":
        from threadline.serving.ray_backend import RayOptions

        ray = RayOptions(address=ray_address, replicas=replicas, max_replicas=max_replicas)
        where = f"{replicas if max_replicas is None else f'1-{max_replicas}'} Ray Serve replica(s)"
    else:
        where = f"{workers} worker{'s' if workers > 1 else ''}"
    err_console.print(f"serving {', '.join(names)} on http://{host}:{port} ({where}); "
                      "Ctrl-C drains and stops")
    run(names, host, port, workers=workers, auth=auth or None, log_predictions=not no_log,
        access_log=access_log, ray=ray)


def _tokens() -> Any:
    from threadline.serving.auth import Tokens

    data = repos()
    return Tokens(data.db, data.author)


@tokens_app.command("create")
def token_create(name: str) -> None:
    """Create a token; it is printed once and only its hash is kept."""
    token = _tokens().create(name)
    err_console.print(f"token {escape(name)} created; it is shown only now:")
    console.print(token, markup=False)


@tokens_app.command("list")
def token_list(as_json: JsonOpt = False) -> None:
    """List tokens (names and dates, never the tokens)."""
    found = _tokens().list()
    if as_json:
        emit_json([{"name": t.name, "created_by": t.created_by, "created_at": t.created_at,
                    "revoked": t.revoked} for t in found])
        return
    table = Table("token", "created by", "revoked")
    for t in found:
        table.add_row(escape(t.name), escape(t.created_by), "yes" if t.revoked else "")
    console.print(table)


@tokens_app.command("revoke")
def token_revoke(name: str) -> None:
    """Stop accepting a token (running servers notice within a second)."""
    _tokens().revoke(name)
    err_console.print(f"revoked token {escape(name)}")
