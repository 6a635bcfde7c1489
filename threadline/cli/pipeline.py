"""`threadline pipeline ...`: parse, show live progress, delegate to `threadline.pipelines`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from threadline.cli.output import console, emit_json, err_console, repos
from threadline.errors import InvalidArgument, NotFound

if TYPE_CHECKING:
    from threadline.compute import Executor
    from threadline.config import Settings
    from threadline.pipelines.engine import RunResult, StepOutcome
    from threadline.pipelines.spec import PipelineSpec

app = typer.Typer(help="Data-driven pipelines: steps re-run exactly when their inputs change.",
                  no_args_is_help=True)

FileOpt = Annotated[Path | None,
                    typer.Option("--file", "-f", help="Pipeline YAML (default threadline.yaml).")]
ModuleOpt = Annotated[str | None,
                      typer.Option("--module", "-m", help="Python module defining Pipeline objects.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
AddressOpt = Annotated[str | None, typer.Option(
    help="Ray cluster (host:6379, ray://host:10001, auto); default: a private local one.")]
ShipCodeOpt = Annotated[bool, typer.Option(
    help="Upload the project code to the Ray cluster (with --address).")]
RuntimeEnvOpt = Annotated[Path | None, typer.Option(
    help="YAML or JSON file with a Ray runtime_env to add (e.g. pip: [...]).")]
SharedFsOpt = Annotated[bool, typer.Option(
    "--shared-filesystem",
    help="Every Ray node mounts this home at the same path: allow SQLite and a local store.")]
_COLOURS = {"succeeded": "green", "cached": "cyan", "failed": "red", "skipped": "yellow",
            "running": "blue", "would run": "magenta"}


def load_pipelines(file: Path | None, module: str | None) -> dict[str, PipelineSpec]:
    """The pipelines of a module, or of a YAML file (default ./threadline.yaml)."""
    if module:
        from threadline.pipelines.python_api import find_pipelines

        if str(Path.cwd()) not in sys.path:  # as `python -m` would: modules of the working folder
            sys.path.insert(0, str(Path.cwd()))
        found = find_pipelines(module)
        if not found:
            raise NotFound(f"module {module!r} defines no Pipeline(...) object")
        return found
    from threadline.pipelines.yaml_spec import load_file

    spec = load_file(file or Path("threadline.yaml"))
    return {spec.name: spec}


def pick(found: dict[str, PipelineSpec], name: str | None) -> PipelineSpec:
    """The pipeline called `name`, or the only one."""
    if name:
        if name not in found:
            raise NotFound(f"no pipeline {name!r}; found: {', '.join(sorted(found))}")
        return found[name]
    if len(found) > 1:
        raise InvalidArgument(f"several pipelines ({', '.join(sorted(found))}); name one")
    return next(iter(found.values()))


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """`k=v` or `step.k=v`; the value is read as a YAML scalar (0.5, true, text)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise InvalidArgument(f"--param {item!r} is not NAME=VALUE (or STEP.NAME=VALUE)")
        try:
            out[key.strip()] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def _steps_table(outcomes: list[StepOutcome], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("step", "status", "commit", "datums run/reused/removed", "seconds", "why"):
        table.add_column(column)
    for o in outcomes:
        colour = _COLOURS.get(o.status, "white")
        datums = f"{o.processed}/{o.skipped}/{o.removed}" if (o.processed or o.skipped or o.removed) else "-"
        why = o.error or "; ".join(o.reasons)
        table.add_row(o.step, f"[{colour}]{o.status}[/{colour}]", (o.commit or "")[:12], datums,
                      f"{o.duration_s:.2f}" if o.duration_s else "-", escape(why))
    return table


@app.command()
def run(
    pipeline: Annotated[str | None, typer.Argument(help="Pipeline name (when several).")] = None,
    file: FileOpt = None,
    module: ModuleOpt = None,
    param: Annotated[list[str] | None,
                     typer.Option("--param", "-p", help="NAME=VALUE or STEP.NAME=VALUE")] = None,
    executor: Annotated[str, typer.Option(help="local | ray")] = "local",
    workers: Annotated[int | None, typer.Option(help="Parallel workers.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would re-run and why.")] = False,
    address: AddressOpt = None,
    ship_code: ShipCodeOpt = True,
    ray_runtime_env: RuntimeEnvOpt = None,
    shared_filesystem: SharedFsOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Run a pipeline: unchanged steps are reused, changed ones re-run on the changed datums."""
    _check_cluster_options(executor, address, ray_runtime_env, shared_filesystem)
    if executor == "local" and not dry_run:
        from threadline.compute.local import prestart
        from threadline.pipelines import WORKER_MODULES

        prestart(WORKER_MODULES)  # the workers' imports run beside this process's own
    from threadline.config import load_settings

    spec = pick(load_pipelines(file, module), pipeline)
    settings = load_settings()
    chosen: str | Executor = executor
    if not dry_run:
        chosen = _cluster_executor([spec], settings, executor, workers, address, ship_code,
                                   ray_runtime_env, shared_filesystem)
    try:
        result = _run_live(spec, settings, chosen, param, workers, dry_run, as_json)
    finally:
        if not isinstance(chosen, str):
            chosen.shutdown()
    _report(result, f"pipeline {spec.name}" + (" (dry run)" if dry_run else ""), as_json)


def _check_cluster_options(executor: str, address: str | None, ray_runtime_env: Path | None,
                           shared_filesystem: bool) -> None:
    if (address is not None or ray_runtime_env is not None or shared_filesystem) and executor != "ray":
        raise InvalidArgument("--address, --ray-runtime-env and --shared-filesystem are Ray options; "
                              "add --executor ray")


def _cluster_executor(specs: list[PipelineSpec], settings: Settings, executor: str, workers: int | None,
                      address: str | None, ship_code: bool, ray_runtime_env: Path | None,
                      shared_filesystem: bool) -> str | Executor:
    """`executor` itself, or, with Ray cluster options, a Ray executor opened for `specs`
    (engines checked, code shipped); the caller shuts an opened one down."""
    if address is None and ray_runtime_env is None and not shared_filesystem:
        return executor
    from threadline.pipelines.cluster import open_cluster_executor

    return open_cluster_executor(specs, settings, address, workers=workers,
                                 ship_code=ship_code and address is not None,
                                 runtime_env=read_runtime_env(ray_runtime_env),
                                 shared_filesystem=shared_filesystem)


def read_runtime_env(path: Path | None) -> dict[str, Any] | None:
    """A Ray runtime_env from a YAML or JSON file (a mapping), or None without a file."""
    if path is None:
        return None
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidArgument(f"--ray-runtime-env {path}: cannot read it: {exc}") from exc
    if not isinstance(loaded, dict):
        raise InvalidArgument(f"--ray-runtime-env {path}: must hold a mapping (e.g. pip: [...]), "
                              f"not {type(loaded).__name__}")
    return loaded


def _run_live(spec: PipelineSpec, settings: Settings, executor: str | Executor, param: list[str] | None,
              workers: int | None, dry_run: bool, as_json: bool) -> RunResult:
    from threadline.pipelines.engine import run_pipeline

    live_rows: dict[str, StepOutcome] = {}
    title = f"pipeline {spec.name}" + (" (dry run)" if dry_run else "")
    show_live = err_console.is_terminal and not as_json
    with Live(console=err_console, transient=True, auto_refresh=False) if show_live else _Null() as live:

        def on_event(outcome: StepOutcome) -> None:
            live_rows[outcome.step] = outcome
            if show_live:
                live.update(_steps_table(list(live_rows.values()), title), refresh=True)

        return run_pipeline(spec, settings, repos(), params=parse_params(param),
                            executor=executor, workers=workers, dry_run=dry_run, on_event=on_event)


class _Null:
    def __enter__(self) -> _Null:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    def update(self, *_args: object, **_kwargs: object) -> None:
        return None


def _report(result: RunResult, title: str, as_json: bool) -> None:
    if as_json:
        emit_json(result.to_dict())
    else:
        console.print(_steps_table(list(result.steps.values()), title))
        if result.run_id:
            err_console.print(f"run {result.run_id[:12]} {result.status} in {result.duration_s:.2f} s")
    if result.status == "failed":
        if not as_json:
            failed = [f"{o.step}: {o.error}" for o in result.steps.values() if o.status == "failed"]
            err_console.print(f"[red]error:[/red] pipeline {result.pipeline} failed: "
                              f"{escape('; '.join(failed))}; nothing was published for the failed "
                              "steps - fix them and run again (finished steps are reused)", soft_wrap=True)
        raise typer.Exit(1)


@app.command()
def watch(
    file: FileOpt = None,
    module: ModuleOpt = None,
    once: Annotated[bool, typer.Option("--once", help="Poll once and exit.")] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between polls.")] = 10.0,
    executor: Annotated[str, typer.Option(help="local | ray")] = "local",
    workers: Annotated[int | None, typer.Option(help="Parallel workers.")] = None,
    address: AddressOpt = None,
    ship_code: ShipCodeOpt = True,
    ray_runtime_env: RuntimeEnvOpt = None,
    shared_filesystem: SharedFsOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Run pipelines when a branch they read gets a new commit, or on their cron schedule."""
    _check_cluster_options(executor, address, ray_runtime_env, shared_filesystem)
    from threadline.config import load_settings
    from threadline.pipelines.triggers import watch as run_watch

    started: list[dict[str, Any]] = []

    def on_run(spec: PipelineSpec, trigger: str, result: RunResult) -> None:
        started.append({"trigger": trigger, **result.to_dict()})
        if not as_json:
            err_console.print(f"{trigger}: run {str(result.run_id)[:12]} of {spec.name} {result.status}")

    pipelines = list(load_pipelines(file, module).values())
    settings = load_settings()
    chosen = _cluster_executor(pipelines, settings, executor, workers, address, ship_code,
                               ray_runtime_env, shared_filesystem)
    try:
        run_watch(pipelines, settings, repos(), once=once, interval_s=interval, executor=chosen,
                  workers=workers, on_run=on_run)
    finally:
        if not isinstance(chosen, str):
            chosen.shutdown()
    if as_json:
        emit_json(started)
    elif not started:
        err_console.print("no new commits on the watched branches")


@app.command("runs")
def list_runs(
    pipeline: Annotated[str | None, typer.Argument(help="Only this pipeline.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List pipeline runs, newest first."""
    from threadline.pipelines.runs import RunStore

    runs = RunStore(repos().db).list(pipeline, limit)
    if as_json:
        emit_json([r.to_dict() for r in runs])
        return
    table = Table()
    for column in ("run", "pipeline", "status", "trigger", "started", "seconds"):
        table.add_column(column)
    for r in runs:
        colour = _COLOURS.get(r.status, "white")
        table.add_row(r.id[:12], r.pipeline, f"[{colour}]{r.status}[/{colour}]", r.trigger,
                      f"{r.started_at:%Y-%m-%d %H:%M:%S}",
                      f"{r.duration_s:.2f}" if r.duration_s is not None else "-")
    console.print(table)


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="Run id or prefix.")],
    as_json: JsonOpt = False,
) -> None:
    """Show a run: each step's status, why it ran, datums, output commit and log tail."""
    from threadline.pipelines.runs import RunStore

    info = RunStore(repos().db).get(run_id)
    if as_json:
        emit_json(info.to_dict())
        return
    console.print(f"run {info.id} of [bold]{escape(info.pipeline)}[/bold]: {info.status} "
                  f"({info.trigger}, {info.executor})")
    table = Table()
    for column in ("step", "status", "commit", "datums run/reused/removed", "tries", "seconds", "why"):
        table.add_column(column)
    for s in info.steps:
        colour = _COLOURS.get(s.status, "white")
        table.add_row(s.step, f"[{colour}]{s.status}[/{colour}]", (s.output_commit or "")[:12],
                      f"{s.datums_processed}/{s.datums_skipped}/{s.datums_removed}", str(s.attempts),
                      f"{s.duration_s:.2f}", escape(s.error or s.reason))
    console.print(table)
    for s in info.steps:
        if s.log_tail.strip():
            console.print(f"[bold]log of {s.step}[/bold] (tail)")
            console.print(escape(s.log_tail.rstrip()), soft_wrap=True)


@app.command()
def impact(
    target: Annotated[str, typer.Argument(help="A data ref, a step name or a parameter (params.NAME).")],
    pipeline: Annotated[str | None, typer.Option("--pipeline", help="Pipeline name (when several).")] = None,
    file: FileOpt = None,
    module: ModuleOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List every step and output commit downstream of a change."""
    from threadline.pipelines.impact import impact as analyse

    spec = pick(load_pipelines(file, module), pipeline)
    result = analyse(spec, repos(), target)
    if as_json:
        emit_json(result.to_dict())
        return
    table = Table(title=f"downstream of {escape(target)} ({result.kind}) in {spec.name}",
                  title_justify="left")
    for column in ("step", "why", "output repo", "latest commit"):
        table.add_column(column)
    for s in result.steps:
        table.add_row(s.step, escape(s.reason), s.output_repo, (s.latest_commit or "-")[:12])
    console.print(table)
    if result.lineage:
        console.print("also downstream in lineage: " + ", ".join(n[:40] for n in result.lineage))
