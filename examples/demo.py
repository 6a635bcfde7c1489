"""The end-to-end demo on embedded defaults: the versioned data repository walkthrough.

Runs in a fresh temporary folder (or the folder given as the first argument): creates a
Threadline home, commits a generated training table, edits it, compares versions, checks one
out, rolls the branch back and forward, verifies the store, shows storage accounting, then
ingests a dirty export with duplicate rows, cleanses, de-duplicates, profiles and splits it
into train / validation / test, with lineage from the raw data to the splits.
Then it trains a churn model as a tracked run, registers and evaluates it, promotes it through
gates that compare versions on the same rows, retrains on new data, sees a broken model refused,
and rolls the model and its training data back together. Finally the preparation becomes a
pipeline over daily exports: a new export commit triggers a run that cleans only that day, and
a forest is trained on two workers beside the single-process fit, and the production model is
served over HTTP while a canary of the next version takes 10% of traffic and is promoted
(examples/serving_demo.py). Monitoring extends this script later.
"""

from __future__ import annotations

import csv
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

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
    model_lifecycle(workdir, result.commit.id)
    preparation_pipeline(workdir)
    parallel_training()
    from monitoring_demo import closed_loop
    from serving_demo import serving

    serving("churn-splits@main:test.parquet", FEATURES)
    closed_loop("churn-splits@main:test.parquet", "churn-splits@main:train.parquet", FEATURES)
    console.print("[bold green]demo complete[/bold green]")


def parallel_training() -> None:
    """A forest trained on 2 workers (shard-and-combine) beside the single-process fit."""
    import time

    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import roc_auc_score

    step("14. train in parallel: a forest on 2 workers beside the single-process fit")
    valid = tl.data.read_table("churn-splits@main:validation.parquet", pandas=True)
    # the trainer fits on arrays of the feature columns in this order
    x_valid, y_valid = valid[FEATURES].astype(float).to_numpy(), valid["churned"].to_numpy()
    forest = RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0)
    started = time.perf_counter()
    combined = tl.train.fit(forest, data="churn-splits@main:train.parquet", target="churned",
                            features=FEATURES, strategy="combine", workers=2, seed=0)
    parallel_s = time.perf_counter() - started
    started = time.perf_counter()
    single = tl.train.fit(forest, data="churn-splits@main:train.parquet", target="churned",
                          features=FEATURES, strategy="single", seed=0)
    single_s = time.perf_counter() - started
    for label, result, seconds in (("2 workers, combined", combined, parallel_s),
                                   ("single process", single, single_s)):
        scores = result.model.predict_proba(x_valid)[:, 1]
        console.print(f"  {label:20} {len(result.model.estimators_)} trees, validation AUC "
                      f"{roc_auc_score(y_valid, scores):.3f}, accuracy "
                      f"{result.model.score(x_valid, y_valid):.3f}, {seconds:.1f} s, run {result.run_id[:8]}")


def preparation_pipeline(workdir: Path) -> None:
    """The preparation as a pipeline: a new export triggers a run that cleans only that day."""
    from churn_pipeline import prep  # a module of its own: worker processes import the steps

    from threadline.config import load_settings
    from threadline.pipelines.engine import run_pipeline
    from threadline.pipelines.triggers import watch

    def report(result: Any) -> None:
        for name, outcome in result.steps.items():
            datums = (f", datums: {outcome.processed} processed, {outcome.skipped} reused"
                      if outcome.processed + outcome.skipped > 1 else "")
            console.print(f"  {name:9} {outcome.status:9}{datums}  "
                          f"-> {outcome.repo}@{(outcome.commit or '')[:12]}")

    step("12. the preparation as a pipeline: daily exports are datums")
    exports = tl.data.repo("churn-exports", create=True)
    days = workdir / "exports"
    for day in range(1, 6):
        write_customers(days / f"d{day}", 2_000, seed=100 + day)
        (days / f"d{day}" / "customers.csv").rename(days / f"2026-11-{day:02d}.csv")
    exports.commit(*sorted(days.glob("*.csv")), message="five daily exports")
    settings, repos = load_settings(), exports.repos
    first = run_pipeline(prep.spec(), settings, repos, workers=2)
    console.print(f"run {first.run_id[:8]}: {first.status} in {first.duration_s:.1f} s")
    report(first)

    step("13. a new export lands: the watcher runs the pipeline on just that day")
    write_customers(days / "d6", 2_000, seed=106)
    (days / "d6" / "customers.csv").rename(days / "2026-11-06.csv")
    exports.commit(days / "2026-11-06.csv", message="export of 2026-11-06", update=True)

    def on_run(_pipeline: Any, trigger: str, result: Any) -> None:
        console.print(f"{trigger}: run {result.run_id[:8]} {result.status} in {result.duration_s:.1f} s")
        report(result)

    watch([prep.spec()], settings, repos, once=True, workers=2, on_run=on_run)
    again = run_pipeline(prep.spec(), settings, repos, workers=2)
    console.print(f"and once more by hand: every step {sorted({o.status for o in again.steps.values()})}"
                  f" in {again.duration_s:.2f} s")


FEATURES = ["tenure_months", "monthly_spend", "long_tenure"]


def train(ref: str, name: str, *, c: float, shuffle_labels: bool = False) -> tuple[str, float]:
    """Fit a churn classifier on the table at `ref` as a tracked run; (run id, validation AUC)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    def xy(split: str) -> tuple[Any, Any]:
        frame = tl.data.read_table(f"{ref}:{split}.parquet", pandas=True)
        return frame[FEATURES].astype(float), frame["churned"].to_numpy()

    x_train, y_train = xy("train")
    x_valid, y_valid = xy("validation")
    if shuffle_labels:  # the bug a bad training job has: labels out of line with the rows
        y_train = np.random.default_rng(0).permutation(y_train)
    with tl.start_run(name, experiment="churn", inputs=[f"{ref}:train.parquet"]) as run:
        model = LogisticRegression(C=c, max_iter=500).fit(x_train, y_train)
        auc = float(roc_auc_score(y_valid, model.predict_proba(x_valid)[:, 1]))
        run.log_params({"C": c, "features": ",".join(FEATURES)})
        run.log_metrics({"accuracy": float(model.score(x_valid, y_valid)), "auc": auc})
    registry = tl.registry.ModelRegistry.open()
    registry.register("churn", model, run_id=run.id, example=x_valid.head(50))
    return run.id, auc


def model_lifecycle(workdir: Path, splits_commit: str) -> None:
    """Track training runs, register versions, evaluate, promote through gates, roll back."""
    from threadline.evaluate import evaluate

    registry = tl.registry.ModelRegistry.open()
    test = "churn-splits@main:test.parquet"

    def show(result: Any) -> None:
        for metric in ("accuracy", "roc_auc", "log_loss"):
            ci = result.intervals[metric]
            console.print(f"  {metric:9} {result.metrics[metric]:.3f}  [{ci.low:.3f}, {ci.high:.3f}]")
        for c in result.comparison:
            if c.metric in ("accuracy", "roc_auc"):
                console.print(f"  {c.metric:9} v{result.model.version} - v{result.against.version} = "
                              f"{c.difference:+.4f} [{c.interval.low:+.4f}, {c.interval.high:+.4f}]: "
                              f"{c.verdict}")

    step("8. train and track a model on the splits; register, evaluate and promote it")
    run_id, auc = train("churn-splits@main", "baseline", c=1.0)
    console.print(f"run {run_id[:8]}: validation AUC {auc:.3f} -> churn v1 "
                  f"(inputs: churn-splits@{splits_commit[:12]}:train.parquet)")
    result = evaluate(registry, "churn@1", test, target="churned", slice_by=["region"])
    console.print(f"evaluated churn v1 on {test} ({result.rows:,} rows), run {result.run_id[:8]}:")
    show(result)
    registry.set_policy("churn", {"production": [
        {"metric": "roc_auc", "min": 0.6, "on": test},
        {"metric": "roc_auc", "min_improvement": -0.01, "on": test},
    ]})
    registry.promote("churn", 1, to="production", message="first model")
    console.print("promoted churn v1 to production (gates on the test split: AUC >= 0.6, "
                  "at most 0.01 below the holder on the same rows)")

    step("9. new data arrives: re-run the recorded preparation, retrain, compare, promote")
    export = workdir / "export-2"
    write_customers(export, 20_000, seed=7)
    fresh = tl.prep.ingest("churn-raw", str(export / "customers.csv"), replace=True)
    part = fresh.report["parts"][0]["part"]
    stem = part.split(".")[0]
    # the cleanse spec recorded with the first cleanse, fitted statistics included, re-runs as is
    with tl.data.open("churn-clean@main:_threadline/cleanse.yaml") as fh:
        spec = fh.read().decode()
    tl.prep.cleanse(f"churn-raw:{part}", into="churn-clean", spec=spec)
    tl.prep.dedupe(f"churn-clean:{stem}.parquet", into="churn-dedup")
    refreshed = tl.prep.split(f"churn-dedup:{stem}.parquet", into="churn-splits",
                              fractions={"train": 0.8, "validation": 0.1, "test": 0.1},
                              by=["customer_id"])
    run_id, auc = train("churn-splits@main", "retrain", c=0.5)
    result = evaluate(registry, "churn@2", test, target="churned", against="churn@production")
    console.print(f"churn v2 (run {run_id[:8]}, splits {refreshed.commit.short_id}) against "
                  f"production on the same {result.rows:,} rows:")
    show(result)
    registry.promote("churn", 2, to="production", message="retrained on the new export")
    console.print("promoted churn v2 to production")

    step("10. a broken training job: the gate refuses its model")
    train("churn-splits@main", "broken-labels", c=0.5, shuffle_labels=True)
    result = evaluate(registry, "churn@3", test, target="churned", against="churn@production")
    show(result)
    try:
        registry.promote("churn", 3, to="production")
    except tl.registry.GateFailed as refused:
        console.print("churn v3 refused; production stays on v2:")
        for gate in refused.failed:
            console.print(escape(f"  {gate}"))
    else:
        sys.exit("the gate let a model trained on shuffled labels into production")

    step("11. an incident with v2: roll back the model and its training data together")
    entry = registry.rollback("churn", "production", with_data=True, message="v2 misbehaves")
    head = tl.data.repo("churn-splits").log()[0]
    console.print(f"production: v{entry.old_version} -> v{entry.new_version}; "
                  f"churn-splits@main -> {head.short_id} (v1's training data: {splits_commit[:12]})")
    for moved in registry.alias_history("churn", "production"):
        old = f"v{moved.old_version}" if moved.old_version else "-"
        console.print(f"  {moved.action:9} {old} -> v{moved.new_version}  {moved.message}")
    console.print("lineage of production's model:")
    for e in LineageGraph(registry.db).edges(Node("model_version", "churn/1"), "up"):
        console.print(escape(f"  {e.source.kind}:{e.source.id[:12]} -[{e.relation}]-> "
                             f"{e.target.kind}:{e.target.id[:12]}"))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        target = Path(sys.argv[1]).resolve()
        target.mkdir(parents=True, exist_ok=True)
        main(target)
    else:
        with tempfile.TemporaryDirectory(prefix="threadline-demo-") as tmp:
            main(Path(tmp))
