"""`threadline models ...`: parse, show, delegate to `threadline.registry.ModelRegistry`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from threadline.cli.output import console, emit_json, err_console, repos
from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from threadline.registry import AliasEntry, ModelRegistry

app = typer.Typer(help="The model registry: versions, aliases, promotion, rollback.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
MessageOpt = Annotated[str, typer.Option("--message", "-m", help="Why (kept in the history).")]


def _registry() -> ModelRegistry:
    # the registry (and the tracking store it reads runs from) is opened only by its commands,
    # so `threadline --help` and the data commands do not pay for importing it
    from threadline.registry import ModelRegistry

    return ModelRegistry(repos())


def _when(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _said(entry: AliasEntry) -> None:
    old = f"v{entry.old_version}" if entry.old_version is not None else "-"
    new = f"v{entry.new_version}" if entry.new_version is not None else "(deleted)"
    err_console.print(f"{entry.action}: {escape(entry.alias)} {old} -> {new}")


@app.command("list")
def list_(as_json: JsonOpt = False) -> None:
    """List registered models with their latest version and aliases."""
    models = _registry().list_models()
    if as_json:
        emit_json([m.to_dict() for m in models])
        return
    table = Table("model", "latest", "aliases", "description")
    for m in models:
        aliases = ", ".join(f"{a}=v{v}" for a, v in m.aliases.items())
        table.add_row(escape(m.name), f"v{m.latest_version}" if m.latest_version else "-",
                      escape(aliases), escape(m.description))
    console.print(table)


@app.command()
def show(name: str, as_json: JsonOpt = False) -> None:
    """Show a model's versions, aliases and promotion policy."""
    registry = _registry()
    model = registry.get_model(name)
    found = registry.list_versions(name)
    if as_json:
        emit_json({**model.to_dict(), "versions": [v.to_dict() for v in found]})
        return
    table = Table("version", "flavor", "aliases", "run", "metrics", "created")
    for v in found:
        metrics = ", ".join(f"{k}={val:.4g}" if isinstance(val, float) else f"{k}={val}"
                            for k, val in sorted(v.metrics.items()))
        table.add_row(f"v{v.version}", v.flavor, ", ".join(v.aliases), (v.run_id or "-")[:12],
                      escape(metrics), _when(v.created_at))
    console.print(f"[b]{escape(model.name)}[/b] {escape(model.description)}")
    console.print(table)
    for alias, gates in sorted(model.policy.items()):
        console.print(f"policy {escape(alias)}: {escape(str(gates))}")


@app.command()
def register(
    name: str,
    run: Annotated[str, typer.Option("--run", help="The run that logged the model.")],
    path: Annotated[str, typer.Option("--path", help="The model folder in the run's artifacts.")] = "model",
    data: Annotated[list[str] | None, typer.Option("--data", help="Training data ref (repeatable).")] = None,
    description: Annotated[str, typer.Option("--description", "-d")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Register a model folder logged by a run as the next version of NAME."""
    version = _registry().register(name, run_id=run, artifact_path=path, data=data or (),
                                   description=description)
    if as_json:
        emit_json(version.to_dict())
        return
    err_console.print(f"Registered {escape(name)} v{version.version} ({version.flavor}, "
                      f"{version.format_id})")


@app.command()
def alias(
    name: str,
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS")],
    version: Annotated[int | None, typer.Argument(help="Version to point the alias at.")] = None,
    delete: Annotated[bool, typer.Option("--delete", help="Remove the alias.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Bypass the alias's gates (logged).")] = False,
    message: MessageOpt = "",
) -> None:
    """Point ALIAS at VERSION, or remove it with --delete (gated aliases move by `promote`)."""
    registry = _registry()
    if delete:
        if version is not None:
            raise InvalidArgument("give either a VERSION or --delete, not both")
        registry.delete_alias(name, alias_name, message=message)
        err_console.print(f"Deleted alias {escape(name)}@{escape(alias_name)}")
        return
    if version is None:
        raise InvalidArgument(f"name the version: `threadline models alias {name} {alias_name} VERSION`")
    _said(registry.set_alias(name, alias_name, version, message=message, force=force))


@app.command()
def history(
    name: str,
    alias_name: Annotated[str | None, typer.Option("--alias", help="Only this alias.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show every move of a model's aliases, newest first."""
    entries = _registry().alias_history(name, alias_name)
    if as_json:
        emit_json([e.to_dict() for e in entries])
        return
    table = Table("when", "alias", "action", "from", "to", "actor", "message")
    for e in entries:
        table.add_row(_when(e.created_at), escape(e.alias), e.action,
                      "-" if e.old_version is None else f"v{e.old_version}",
                      "-" if e.new_version is None else f"v{e.new_version}",
                      escape(e.actor), escape(e.message))
    console.print(table)


@app.command()
def promote(
    name: str,
    version: int,
    to: Annotated[str, typer.Option("--to", help="The alias to move.")] = "production",
    approve: Annotated[str | None, typer.Option("--approve", help="Who approves.")] = None,
    trust: Annotated[list[str] | None, typer.Option("--trust", help="Trust a type (latency gate).")] = None,
    allow_pickle: Annotated[bool, typer.Option("--allow-pickle")] = False,
    allow_code: Annotated[bool, typer.Option("--allow-code")] = False,
    message: MessageOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Move an alias to VERSION if every gate of the model's policy passes."""
    entry = _registry().promote(name, version, to, approve=approve, message=message,
                                trusted=trust or (), allow_pickle=allow_pickle, allow_code=allow_code)
    if as_json:
        emit_json(entry.to_dict())
        return
    _said(entry)
    for gate in entry.meta.get("gates", []):
        err_console.print(f"  passed {escape(gate['gate'])}: {gate['measured']} ({gate['required']})")


@app.command()
def rollback(
    name: str,
    alias_name: Annotated[str, typer.Option("--alias", help="The alias to roll back.")] = "production",
    to: Annotated[int | None, typer.Option("--to", help="Version (default: the previous one).")] = None,
    with_data: Annotated[bool, typer.Option("--with-data", help="Also move the training data.")] = False,
    undo: Annotated[bool, typer.Option("--undo", help="Reverse the latest rollback.")] = False,
    message: MessageOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Move an alias back (optionally with its training data's branches), or --undo that."""
    registry = _registry()
    if undo:
        if to is not None or with_data:
            raise InvalidArgument("--undo reverses the latest rollback as it was; drop --to/--with-data")
        entry = registry.rollback_undo(name, alias_name, message=message)
    else:
        entry = registry.rollback(name, alias_name, to=to, with_data=with_data, message=message)
    if as_json:
        emit_json(entry.to_dict())
        return
    _said(entry)
    for move in entry.meta.get("data_moves", []):
        err_console.print(f"  {escape(move['repo'])}@{escape(move['branch'])}: "
                          f"{str(move['old'])[:12]} -> {str(move['new'])[:12]}")


@app.command()
def policy(
    name: str,
    file: Annotated[Path | None, typer.Option("--file", help="A YAML policy to set.")] = None,
    show_it: Annotated[bool, typer.Option("--show", help="Print the current policy.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Set a model's promotion policy from a YAML file, or show it."""
    registry = _registry()
    if file is not None:
        if show_it:
            raise InvalidArgument("give either --file or --show")
        try:
            text = file.read_text()
        except OSError as exc:
            raise InvalidArgument(f"cannot read policy file {file}: {exc.strerror}") from exc
        current: dict[str, Any] = registry.set_policy(name, text)
        if as_json:
            emit_json(current)
        err_console.print(f"Set the policy of {escape(name)} for {', '.join(current) or 'no alias'}")
        return
    current = registry.get_policy(name)
    if as_json:
        emit_json(current)
        return
    import yaml

    sys.stdout.write(yaml.safe_dump(current, sort_keys=True) if current else "# no policy\n")

