"""`threadline prep ...`: parse, show, delegate to `threadline.prep`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from threadline.cli.output import console, emit_json, err_console, repos, rows_progress
from threadline.errors import InvalidArgument

app = typer.Typer(help="Data preparation steps, each recorded as a commit.", no_args_is_help=True)


def parse_fractions(text: str) -> dict[str, float]:
    """`train=0.8,validation=0.2` -> {"train": 0.8, "validation": 0.2}."""
    out: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, eq, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            eq = ""
        if not eq or not name.strip():
            raise InvalidArgument(
                f"--fractions item {item!r} is not NAME=NUMBER; e.g. train=0.8,validation=0.2"
            )
    return out


@app.command()
def split(
    ref: Annotated[str, typer.Argument(help="A table: REPO@REV:PATH")],
    into: Annotated[str, typer.Option("--into", help="REPO[@BRANCH] for the parts")],
    fractions: Annotated[str, typer.Option(help="e.g. train=0.8,validation=0.1,test=0.1")],
    by: Annotated[str | None, typer.Option("--by", help="Hash these key columns (stable).")] = None,
    stratify: Annotated[str | None, typer.Option(help="Exact proportions per label.")] = None,
    time: Annotated[str | None, typer.Option("--time", help="Split by this time column.")] = None,
    cutoffs: Annotated[str | None, typer.Option(help="With --time: ISO dates, comma-separated.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the assignment.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Split a table into parts (train/validation/test), committed with their profiles."""
    from threadline.prep.steps import make_spec
    from threadline.prep.steps import split as run

    spec = make_spec(
        parse_fractions(fractions),
        by=[c.strip() for c in by.split(",")] if by else (),
        stratify=stratify,
        time_column=time,
        cutoffs=[c.strip() for c in (cutoffs or "").split(",") if c.strip()],
        seed=seed,
    )
    with rows_progress(f"splitting {escape(ref)}") as advance:
        result = run(repos(), ref, into, spec, progress=advance)
    if as_json:
        emit_json({"commit": result.commit.id, "created": result.created, **result.report})
        return
    rows = ", ".join(f"{part}={n:,}" for part, n in result.report["rows"].items())
    err_console.print(f"split {escape(ref)} ({spec.method}): {rows}")
    sys.stdout.write(result.commit.id + "\n")


@app.command()
def ingest(
    sources: Annotated[list[str] | None, typer.Argument(help="Files, folders or globs")] = None,
    into: Annotated[str, typer.Option("--into", help="REPO[@BRANCH] of the table")] = "",
    url: Annotated[str | None, typer.Option(help="Database URL for --query")] = None,
    query: Annotated[str | None, typer.Option(help="SQL query to ingest")] = None,
    replace: Annotated[bool, typer.Option(help="Replace the table instead of appending")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Ingest CSV/TSV/JSON Lines/Parquet files or a SQL query into a repo as Parquet parts."""
    from threadline.prep.steps import ingest as run

    if not into:
        raise InvalidArgument("name the target with --into REPO[@BRANCH]")
    with rows_progress(f"ingesting into {escape(into)}") as advance:
        result = run(repos(), into, sources=sources or (), url=url, query=query, replace=replace,
                     progress=advance)
    if as_json:
        emit_json({"commit": result.commit.id, "created": result.created, **result.report})
        return
    if result.created:
        err_console.print(f"ingested {result.report['total_rows']:,} rows in "
                          f"{len(result.report['parts'])} parts; the table has "
                          f"{result.report['table_rows']:,} rows")
    else:
        err_console.print(f"nothing new: {escape(into)} already holds these sources")
    sys.stdout.write(result.commit.id + "\n")


@app.command()
def dedupe(
    ref: Annotated[str, typer.Argument(help="A table: REPO@REV:PATH")],
    into: Annotated[str, typer.Option("--into", help="REPO[@BRANCH] for the result")],
    keys: Annotated[str | None, typer.Option(help="Key columns (default: whole rows)")] = None,
    keep: Annotated[str, typer.Option(help="first, last or latest:COLUMN")] = "first",
    near: Annotated[str | None, typer.Option(help="Text column for near-duplicates")] = None,
    threshold: Annotated[float, typer.Option(help="Jaccard similarity for --near")] = 0.8,
    keep_removed: Annotated[bool, typer.Option(help="Keep removed rows for audit")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Remove exact, key or near duplicate rows; the report counts what each rule removed."""
    from threadline.prep.dedupe import DedupeSpec
    from threadline.prep.steps import dedupe as run

    spec = DedupeSpec(keys=tuple(c.strip() for c in keys.split(",")) if keys else (), keep=keep,
                      near=near, threshold=threshold)
    with rows_progress(f"de-duplicating {escape(ref)}") as advance:
        result = run(repos(), ref, into, spec, keep_removed=keep_removed, progress=advance)
    if as_json:
        emit_json({"commit": result.commit.id, "created": result.created, **result.report})
        return
    removed = ", ".join(f"{rule} {n:,}" for rule, n in result.report["removed"].items()) or "none"
    err_console.print(f"kept {result.report['rows_kept']:,} of {result.report['rows_in']:,} rows; "
                      f"removed: {removed}")
    sys.stdout.write(result.commit.id + "\n")


@app.command()
def cleanse(
    ref: Annotated[str, typer.Argument(help="A table: REPO@REV:PATH")],
    spec: Annotated[Path, typer.Option("--spec", help="Cleansing spec (YAML)")],
    into: Annotated[str, typer.Option("--into", help="REPO[@BRANCH] for the result")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Apply a cleansing spec; the statistics it computes are recorded so it re-runs identically.

    A spec saved from an earlier output (`_threadline/cleanse.yaml`) re-uses its statistics.
    """
    from threadline.prep.cleanse import load_cleanse
    from threadline.prep.steps import cleanse as run

    with rows_progress(f"cleansing {escape(ref)}") as advance:
        result = run(repos(), ref, into, load_cleanse(_read_text(spec)), progress=advance)
    if as_json:
        emit_json({"commit": result.commit.id, "created": result.created, **result.report})
        return
    err_console.print(f"cleansed {result.report['rows_in']:,} rows into {result.report['rows_out']:,}")
    sys.stdout.write(result.commit.id + "\n")


@app.command()
def schema(
    ref: Annotated[str, typer.Argument(help="A table: REPO@REV:PATH")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the YAML here")] = None,
    max_categories: Annotated[int, typer.Option(help="Most values for an allowed list")] = 20,
) -> None:
    """Infer a schema with rules from a table, as YAML to edit and pass to `prep validate`."""
    from threadline.prep.steps import infer_schema

    text = infer_schema(repos(), ref, max_categories=max_categories).to_yaml()
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        err_console.print(f"wrote {escape(str(output))}; edit it, then `threadline prep validate`")


@app.command()
def validate(
    ref: Annotated[str, typer.Argument(help="A table: REPO@REV:PATH")],
    schema_file: Annotated[Path, typer.Option("--schema", help="Schema with rules (YAML)")],
    into: Annotated[str | None, typer.Option("--into", help="Commit the valid rows here")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check a table against a schema; with --into, commit the valid rows (and quarantine)."""
    from threadline.prep.steps import check
    from threadline.prep.steps import validate as run
    from threadline.prep.validate import TableSchema

    rules = TableSchema.from_yaml(_read_text(schema_file))
    if into is None:
        report = check(repos(), ref, rules).to_dict()
        if as_json:
            emit_json(report)
            return
        err_console.print(f"{report['rows_in']:,} rows: {report['rows_valid']:,} valid, "
                          f"{report['rows_dropped']:,} would be dropped, "
                          f"{report['rows_quarantined']:,} quarantined")
        return
    with rows_progress(f"validating {escape(ref)}") as advance:
        result = run(repos(), ref, into, rules, progress=advance)
    if as_json:
        emit_json({"commit": result.commit.id, "created": result.created, **result.report})
        return
    err_console.print(f"{result.report['rows_valid']:,} valid rows committed; "
                      f"{result.report['rows_dropped']:,} dropped, "
                      f"{result.report['rows_quarantined']:,} quarantined")
    sys.stdout.write(result.commit.id + "\n")


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror}") from exc


@app.command()
def profile(
    ref: Annotated[str, typer.Argument(help="A table: REPO@REV:PATH")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Per-column statistics of a committed table, in one streaming pass."""
    from threadline.prep.steps import profile as run

    with rows_progress(f"profiling {escape(ref)}") as advance:
        result = run(repos(), ref, progress=advance)
    if as_json:
        emit_json(result.to_dict())
        return
    table = Table("column", "kind", "count", "nulls", "distinct", "min", "max", "mean", "top")
    for name, col in result.columns.items():
        top = ", ".join(f"{v} ({n})" for v, n in (col.top or [])[:3])
        mean = f"{col.mean:.4g}" if isinstance(col.mean, float) else ""
        table.add_row(escape(name), col.kind, f"{col.count:,}", f"{col.nulls:,}",
                      f"{col.distinct:,}" if col.distinct is not None else "",
                      escape(str(col.min if col.min is not None else "")),
                      escape(str(col.max if col.max is not None else "")), mean, escape(top))
    console.print(f"{escape(ref)}: {result.rows:,} rows")
    console.print(table)
