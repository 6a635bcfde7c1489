"""The end-to-end demo on embedded defaults: the versioned data repository walkthrough.

Runs in a fresh temporary folder (or the folder given as the first argument): creates a
Threadline home, commits a generated training table, edits it, compares versions, checks one
out, rolls the branch back and forward, verifies the store, shows storage accounting, then
ingests a dirty export with duplicate rows, cleanses, de-duplicates, profiles and splits it
into train / validation / test, with lineage from the raw data to the splits.
Later capabilities (preparation, pipelines, training, serving, monitoring) extend this script.
"""

from __future__ import annotations

import csv
import random
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.markup import escape

import threadline as tl
from threadline.data.maintenance import du
from threadline.data.verify import verify
from threadline.lineage import LineageGraph, Node

console = Console()


def write_customers(folder: Path, rows: int, seed: int) -> None:
    """A small churn table plus a notes file, deterministic for a seed."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "customers.csv", "w", newline="") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(["customer_id", "tenure_months", "monthly_spend", "region", "churned"])
        for i in range(rows):
            tenure = rng.randint(1, 72)
            spend = round(rng.gauss(60, 20), 2)
            churned = int(rng.random() < (0.4 if tenure < 12 else 0.1))
            out.writerow([f"C{i:06d}", tenure, spend, rng.choice("NSEW"), churned])
    (folder / "README.txt").write_text("Customer churn training data, exported nightly.\n")


def step(title: str) -> None:
    """A visible heading for each part of the walkthrough."""
    console.rule(f"[bold cyan]{title}")


def main(workdir: Path) -> None:
    """Run the walkthrough inside `workdir`."""
    import os

    os.chdir(workdir)
    step("1. init a Threadline home and create a data repo")
    console.print(f"home: {tl.init()}")
    repo = tl.data.repo("churn", create=True)

    step("2. commit the raw training data")
    raw = workdir / "raw"
    write_customers(raw, 50_000, seed=1)
    first = repo.commit(raw, message="nightly export 2026-11-26")
    console.print(f"commit {first.short_id}: {first.file_count} files, {first.total_bytes:,} bytes")

    step("3. the data changes: 1% of rows edited, 500 rows appended")
    lines = (raw / "customers.csv").read_text().splitlines()
    for i in range(20_000, 20_500):
        cells = lines[i].split(",")
        cells[2] = f"{float(cells[2]) * 1.1:.2f}"
        lines[i] = ",".join(cells)
    lines += [f"C{50_000 + i:06d},3,99.00,N,1" for i in range(500)]
    (raw / "customers.csv").write_text("\n".join(lines) + "\n")
    second = repo.commit(raw, message="nightly export 2026-11-27")
    for change in repo.diff("main~1", "main").changes:
        console.print(f"  {change.status}: {change.path}  rows {change.old.rows if change.old else '-'}"
                      f" -> {change.new.rows if change.new else '-'}")
    repo.tag("v1", first.id[:12])

    step("4. read a version back: as a table and as files")
    table = tl.data.read_table("churn@v1:customers.csv")
    console.print(f"churn@v1:customers.csv -> {table.num_rows} rows, columns {table.column_names}")
    out = repo.checkout(workdir / "checkout-v1", "v1")
    console.print(f"checked out v1 into {out}: {sorted(p.name for p in out.iterdir())}")

    step("5. roll the training data back, then undo the rollback")
    repo.rollback("v1")
    console.print(f"main -> {repo.log()[0].short_id} (v1)")
    repo.repos.undo("churn@main")
    console.print(f"undo: main -> {repo.log()[0].short_id} (second commit {second.short_id})")
    for entry in repo.repos.history("churn@main")[:3]:
        console.print(f"  history: {entry.action:8} {str(entry.old_commit)[:12]} -> "
                      f"{str(entry.new_commit)[:12]}")

    step("6. lineage, integrity and storage")
    edges = LineageGraph(repo.repos.db).edges(Node("data_commit", second.id), "up")
    for e in edges:
        console.print(escape(f"  {e.source.kind}:{e.source.id[:12]} -[{e.relation}]-> {e.target.id[:12]}"))
    report = verify(repo.repos)
    console.print(f"verify: {report.objects} objects re-hashed, ok={report.ok}")
    usage = du(repo.repos, "churn")
    console.print(f"du: logical {usage.logical_bytes:,} B across {usage.commits} commits, "
                  f"stored {usage.stored_bytes:,} B (dedup x{usage.dedup_ratio:.2f}, "
                  f"compression x{usage.compression_ratio:.2f})")
    if not report.ok:
        sys.exit(1)

    step("7. prepare: ingest a dirty export, cleanse, de-duplicate, profile, split")
    export = workdir / "export"
    export.mkdir()
    rows = (raw / "customers.csv").read_text().splitlines()
    dirty = [r.replace(",N,", ", n ,") if i % 50 == 0 else r for i, r in enumerate(rows[1:])]
    dirty = [",".join(c if j != 2 or i % 97 else "" for j, c in enumerate(r.split(",")))
             for i, r in enumerate(dirty)]  # some monthly_spend values missing
    (export / "customers-2026-11-27.csv").write_text(
        "\n".join([rows[0], *dirty, *dirty[:300]]) + "\n")  # and 300 duplicated rows
    for name in ("churn-raw", "churn-clean", "churn-dedup", "churn-splits"):
        tl.data.repo(name, create=True)
    ingested = tl.prep.ingest("churn-raw", str(export))
    part = ingested.report["parts"][0]["part"]
    console.print(f"ingest: {ingested.report['total_rows']:,} rows -> churn-raw:{part}")
    rules = tl.prep.infer_schema(f"churn-raw:{part}")
    console.print(f"inferred rules for {len(rules.columns)} columns "
                  f"(`threadline prep schema` writes them as YAML to edit)")
    cleansed = tl.prep.cleanse(f"churn-raw:{part}", into="churn-clean", spec="""
format: threadline.cleanse/1
steps:
  - strip: [region]
  - lower: [region]
  - missing: {monthly_spend: {strategy: median}}
  - outliers: {monthly_spend: {method: clip, quantiles: [0.01, 0.99]}}
  - derive: {long_tenure: "tenure_months >= 24"}
""")
    console.print(f"cleanse: {cleansed.report['rows_out']:,} rows (statistics recorded with the commit)")
    cleaned = f"churn-clean:{part.split('.')[0]}.parquet"
    dedup = tl.prep.dedupe(cleaned, into="churn-dedup", keep_removed=True)
    console.print(f"dedupe: kept {dedup.report['rows_kept']:,}, removed {dedup.report['removed']}")
    deduped = f"churn-dedup:{part.split('.')[0]}.parquet"
    profile = tl.prep.profile(deduped)
    spend = profile.columns["monthly_spend"]
    console.print(f"profile: {profile.rows:,} rows; monthly_spend mean {spend.mean:.2f}, "
                  f"std {spend.std:.2f}; region top {profile.columns['region'].top[:2]}")
    result = tl.prep.split(deduped, into="churn-splits",
                           fractions={"train": 0.8, "validation": 0.1, "test": 0.1},
                           by=["customer_id"])  # a customer keeps its split as data grows
    console.print(f"split: {result.report['rows']}")
    console.print("lineage of the splits, back to the raw export:")
    for e in LineageGraph(repo.repos.db).edges(Node("data_commit", result.commit.id), "up"):
        console.print(escape(f"  {e.source.kind}:{e.source.id[:12]} -[{e.relation}]-> "
                             f"{e.target.id[:12]}"))
    console.print("[bold green]demo complete[/bold green]")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        target = Path(sys.argv[1]).resolve()
        target.mkdir(parents=True, exist_ok=True)
        main(target)
    else:
        with tempfile.TemporaryDirectory(prefix="threadline-demo-") as tmp:
            main(Path(tmp))
