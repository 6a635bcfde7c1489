"""`threadline data ...`: parse, confirm, show progress, delegate to `threadline.data`."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from threadline.cli.output import console, emit_json, err_console, human, progress_bar, repos

app = typer.Typer(help="Versioned data repositories.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _total_size(paths: list[Path]) -> int:
    total = 0
    for p in paths:
        if p.is_file():
            total += p.stat().st_size
        elif p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return total


@app.command()
def create(
    repo: str,
    description: Annotated[str, typer.Option("--description", "-d")] = "",
    branch: Annotated[str, typer.Option("--default-branch")] = "main",
) -> None:
    """Create a data repo."""
    info = repos().create(repo, description, branch)
    err_console.print(f"Created data repo {info.name} (branch {info.default_branch})")


@app.command("list")
def list_(as_json: JsonOpt = False) -> None:
    """List data repos with their branches."""
    infos = repos().list()
    if as_json:
        emit_json([i.to_dict() for i in infos])
        return
    table = Table("repo", "branches", "tags", "description")
    for i in infos:
        branches = ", ".join(f"{b}={(c or '-')[:12]}" for b, c in sorted(i.branches.items()))
        table.add_row(i.name, branches, ", ".join(sorted(i.tags)), escape(i.description))
    console.print(table)


@app.command()
def delete(
    repo: str, yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False
) -> None:
    """Delete a data repo (its data is freed by the next `gc --yes`)."""
    if not yes and not typer.confirm(f"Delete data repo {repo} and all its history?"):
        raise typer.Abort
    repos().delete(repo)
    err_console.print(f"Deleted data repo {repo}; run `threadline data gc --yes` to free space")


@app.command()
def commit(
    ref: Annotated[str, typer.Argument(help="REPO or REPO@BRANCH")],
    paths: Annotated[list[Path], typer.Argument(help="Files and folders to commit")],
    message: Annotated[str, typer.Option("--message", "-m")] = "",
    update: Annotated[bool, typer.Option("--update", help="Keep other files of the parent.")] = False,
    prefix: Annotated[str, typer.Option("--prefix", help="Folder inside the repo.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Commit files or folders onto a branch; prints the commit id."""
    with progress_bar("committing", _total_size(paths)) as advance:
        result = repos().commit(ref, paths, message or "commit", update=update, prefix=prefix,
                                progress=advance)
    if as_json:
        emit_json({**result.commit.to_dict(), "created": result.created, "branch": result.branch})
        return
    if not result.created:
        err_console.print(f"nothing changed; {result.branch} stays at {result.commit.short_id}")
    sys.stdout.write(result.commit.id + "\n")


@app.command()
def log(
    ref: str, limit: Annotated[int, typer.Option("--limit", "-n")] = 50, as_json: JsonOpt = False
) -> None:
    """Show the commit history of a ref."""
    commits = repos().log(ref, limit)
    if as_json:
        emit_json([c.to_dict() for c in commits])
        return
    for c in commits:
        console.print(f"[yellow]{c.short_id}[/yellow] {c.created_at:%Y-%m-%d %H:%M:%S} "
                      f"{escape(c.author)}  {c.file_count} files {human(c.total_bytes)}  {escape(c.message)}")


@app.command()
def ls(
    ref: str,
    path: Annotated[str, typer.Argument()] = "",
    as_json: JsonOpt = False,
) -> None:
    """List the files of a commit."""
    data = repos()
    target = data.resolve(ref if not path else f"{ref.split(':')[0]}:{path}")
    entries = data.manifest(target.commit).under(target.path) if target.commit else []
    if as_json:
        emit_json([{"path": e.path, "size": e.size, "rows": e.rows, "key": e.key}
                   for e in entries])
        return
    for e in entries:
        rows = f"{e.rows:>10} rows" if e.rows is not None else " " * 15
        sys.stdout.write(f"{human(e.size):>10} {rows}  {e.path}\n")


@app.command()
def cat(ref: Annotated[str, typer.Argument(help="REPO@REV:PATH")]) -> None:
    """Write a committed file to stdout."""
    from threadline.data.tables import open_file

    with open_file(repos(), ref) as fh:
        shutil.copyfileobj(fh, sys.stdout.buffer, 1 << 20)


@app.command()
def diff(old: str, new: str, as_json: JsonOpt = False) -> None:
    """Added, removed and modified paths between two refs."""
    from threadline.data.diff import diff_manifests
    from threadline.data.manifest import Manifest

    data = repos()
    a, b = data.resolve(old), data.resolve(new)
    result = diff_manifests(
        data.manifest(a.commit) if a.commit else Manifest(),
        data.manifest(b.commit) if b.commit else Manifest(),
        b.path or a.path,
    )
    _show_diff(result, as_json)


def _show_diff(result: object, as_json: bool) -> None:
    from threadline.data.diff import Diff

    assert isinstance(result, Diff)
    if as_json:
        emit_json(result.to_dict())
        return
    if not result:
        err_console.print("no changes")
    marks = {"added": "[green]+[/green]", "removed": "[red]-[/red]", "modified": "[yellow]~[/yellow]"}
    for c in result.changes:
        sizes = f"{human(c.old.size) if c.old else ''} -> {human(c.new.size) if c.new else ''}"
        rows = ""
        if (c.old and c.old.rows is not None) or (c.new and c.new.rows is not None):
            rows = f"  rows {c.old.rows if c.old else '-'} -> {c.new.rows if c.new else '-'}"
        console.print(f"{marks[c.status]} {escape(c.path)}  {sizes}{rows}", soft_wrap=True)


@app.command()
def status(
    ref: str,
    paths: Annotated[list[Path], typer.Argument()],
    prefix: Annotated[str, typer.Option("--prefix")] = "",
    as_json: JsonOpt = False,
) -> None:
    """What committing PATH onto REF would change."""
    from threadline.data.status import status as compute

    _show_diff(compute(repos(), ref, paths, prefix=prefix), as_json)


@app.command()
def checkout(
    ref: str,
    dest: Path,
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty folder.")] = False,
) -> None:
    """Write the files of a ref into a folder."""
    from threadline.data.checkout import checkout as run
    from threadline.data.checkout import plan_checkout

    data = repos()
    entries, _ = plan_checkout(data, ref)
    with progress_bar("checking out", sum(e.size for e in entries)) as advance:
        written = run(data, ref, dest, force=force, progress=advance)
    err_console.print(f"checked out {len(written)} files "
                      f"({human(sum(e.size for e in written))}) into {escape(str(dest))}")


@app.command()
def branch(
    repo: str, name: str, from_ref: Annotated[str | None, typer.Option("--from")] = None
) -> None:
    """Create a branch."""
    repos().branch(repo, name, from_ref)
    err_console.print(f"created branch {repo}@{name}")


@app.command()
def tag(repo: str, name: str, ref: str) -> None:
    """Tag the commit REF resolves to."""
    repos().tag(repo, name, ref)
    err_console.print(f"tagged {escape(ref)} as {repo}@{name}")


@app.command()
def rollback(
    branch_ref: Annotated[str, typer.Argument(help="REPO@BRANCH")],
    to_ref: Annotated[str | None, typer.Argument(help="Earlier commit/tag")] = None,
    undo: Annotated[bool, typer.Option("--undo", help="Reverse the branch's last move.")] = False,
) -> None:
    """Point a branch back at an earlier commit (recorded; undo with --undo)."""
    data = repos()
    if undo:
        old, new = data.undo(branch_ref)
    elif to_ref is None:
        raise typer.BadParameter("give the commit to roll back to, or --undo")
    else:
        if "@" not in to_ref:
            to_ref = f"{branch_ref.split('@')[0]}@{to_ref}"
        old, new = data.rollback(branch_ref, to_ref)
    err_console.print(f"{branch_ref}: {(old or '-')[:12]} -> {new[:12]} "
                      f"(undo with `threadline data rollback {branch_ref} --undo`)")


@app.command()
def history(ref: str, as_json: JsonOpt = False) -> None:
    """Every move of a branch: commits, rollbacks, undos."""
    entries = repos().history(ref)
    if as_json:
        emit_json([e.to_dict() for e in entries])
        return
    for e in entries:
        console.print(f"{e.created_at:%Y-%m-%d %H:%M:%S} {e.action:9} "
                      f"{(e.old_commit or '-')[:12]} -> {(e.new_commit or '-')[:12]}  {escape(e.message)}")


@app.command()
def verify(repo: Annotated[str | None, typer.Argument()] = None, as_json: JsonOpt = False) -> None:
    """Re-hash every object reachable from the commits; name each missing or corrupt one."""
    from threadline.data.verify import verify as run

    report = run(repos(), repo)
    if as_json:
        emit_json(report.to_dict())
    else:
        for p in report.problems:
            console.print(f"[red]{p.kind}[/red] {p.key[:16]} used by {escape(p.used_by)}")
        err_console.print(f"checked {report.commits} commits, {report.files} files, "
                          f"{report.objects} objects ({human(report.bytes)}): "
                          + ("ok" if report.ok else f"{len(report.problems)} problems"))
    if not report.ok:
        raise typer.Exit(6)


@app.command()
def gc(
    yes: Annotated[bool, typer.Option("--yes", help="Really delete (default: dry run).")] = False,
    grace: Annotated[float, typer.Option("--grace-seconds")] = 3600.0,
    as_json: JsonOpt = False,
) -> None:
    """Remove objects no commit reaches (dry run unless --yes)."""
    from threadline.data.maintenance import gc as run

    plan = run(repos(), dry_run=not yes, grace_seconds=grace)
    if as_json:
        emit_json({**plan.to_dict(), "dry_run": not yes})
        return
    verb = "removed" if yes else "would remove"
    err_console.print(f"{verb} {plan.objects_removed} objects ({human(plan.bytes_freed)}) in "
                      f"{len(plan.delete) + len(plan.rewrite)} packs"
                      + ("" if yes else "; run `threadline data gc --yes` to do it"))


@app.command()
def du(repo: Annotated[str | None, typer.Argument()] = None, as_json: JsonOpt = False) -> None:
    """Logical versus stored bytes, de-duplication and compression ratios."""
    from threadline.data.maintenance import du as run

    usage = run(repos(), repo)
    if as_json:
        emit_json(usage.to_dict())
        return
    console.print(f"{usage.scope}: {usage.commits} commits, logical {human(usage.logical_bytes)}, "
                  f"unique {human(usage.unique_bytes)}, stored {human(usage.stored_bytes)} "
                  f"(dedup x{usage.dedup_ratio:.2f}, compression x{usage.compression_ratio:.2f})")
