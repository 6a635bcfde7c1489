#!/usr/bin/env python3
"""Benchmark: Threadline experiment tracking against MLflow 3.17, both on SQLite, in the same run.

Workloads, each run for both tools in fresh folders, in separate processes (Threadline in this
interpreter's environment, MLflow in its own venv built from benchmarks/requirements-mlflow.txt):

A. one run, N single `log_metric` calls (default 10,000); Threadline's time includes the final
   flush and end of the run (everything committed), MLflow's the `end_run`;
B. R runs (default 100), each with 10 params and 10 metrics logged by single calls, through
   each tool's fluent API (`start_run` as a context manager), after one untimed warm-up run
   (per-process costs such as the git and package-set probes are not per-run costs);
C. `search_runs` with a metric filter and an ordering (`metrics.auc > 0.9`, `metrics.auc DESC`,
   100 results a page) over M runs (default 10,000), each with 2 params, 2 metrics and a tag,
   for both tools. The runs are seeded by each tool's fastest path, untimed: Threadline's
   `import_runs`; for MLflow one run made through its API is cloned row by row into its own
   tables with SQL (creating them through MLflow's API would take far longer).
D. the same search over S runs (default 100,000), Threadline only: MLflow needs about seven
   seconds a search at that size and minutes to seed, so it is compared at size M in C.

Each workload is repeated (--repeats, default 3; MLflow's workload A once at full size, it takes
about a minute) and the median reported with the ratio mlflow_time / threadline_time and the
pass/fail against Threadline's targets: A >= 50x, B >= 10x, C >= 10x, D < 200 ms.

Usage:
    python benchmarks/tracking_vs_mlflow.py               # full run (~3-5 minutes)
    python benchmarks/tracking_vs_mlflow.py --quick       # smoke run (1,000 calls, 20 runs, 10,000 runs)
    python benchmarks/tracking_vs_mlflow.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = Path(__file__).resolve().parent / "requirements-mlflow.txt"
DEFAULT_VENV = Path("/tmp/mlflowenv")
FILTER = "metrics.auc > 0.9"
ORDER = ["metrics.auc DESC"]
PAGE = 100
SEARCH_REPEATS = 5
TARGETS = {"A": ("ratio", 50.0), "B": ("ratio", 10.0), "C": ("ratio", 10.0), "D": ("seconds", 0.200)}


# --------------------------------------------------------------------------------------
# Workers: run inside the tool's own interpreter, print one JSON object on stdout
# --------------------------------------------------------------------------------------


def _tl_open(work: Path) -> Any:
    from threadline.config import init_home, settings_for
    from threadline.data.connect import connect
    from threadline.tracking import TrackingStore

    init_home(work)
    return TrackingStore(connect(settings_for(work / ".threadline", env={})))


def tl_worker(workload: str, size: int, work: Path) -> dict[str, float]:
    """Threadline side of one workload."""
    from threadline.tracking import start_run
    from threadline.tracking.model import Metric, Run, RunInfo

    store = _tl_open(work)
    if workload == "A":
        run = start_run("a", store=store)
        started = time.perf_counter()
        for i in range(size):
            run.log_metric("loss", i * 0.001, step=i)
        run.end()
        elapsed = time.perf_counter() - started
        assert len(store.metric_history(run.id, "loss")) == size
        return {"seconds": elapsed}
    if workload == "B":
        with start_run("warm-up", store=store):  # one-time costs (git, package scan) untimed
            pass
        started = time.perf_counter()
        for r in range(size):
            with start_run(f"r{r}", store=store) as run:
                for j in range(10):
                    run.log_param(f"p{j}", j)
                for j in range(10):
                    run.log_metric(f"m{j}", j * 0.5)
        return {"seconds": time.perf_counter() - started}
    rng = random.Random(7)  # workloads C and D: search
    exp = store.experiment("search")
    runs = [
        Run(RunInfo("", 0, None, f"r{i}", "FINISHED", "active", "bench", 1_700_000_000_000 + i,
                    1_700_000_000_500 + i, None, {}),
            {"C": rng.choice(["0.1", "1.0", "10"]), "model": rng.choice(["lr", "gbm"])},
            {"auc": Metric("auc", rng.random(), 1_700_000_000_500 + i, 0),
             "loss": Metric("loss", rng.random(), 1_700_000_000_500 + i, 0)},
            {"team": "ml"})
        for i in range(size)
    ]
    seeded = time.perf_counter()
    store.import_runs(exp.id, runs)
    seed_s = time.perf_counter() - seeded
    times = []
    found: list[Any] = []
    for _ in range(SEARCH_REPEATS + 1):  # the first is a warm-up
        started = time.perf_counter()
        found, _token = store.search_runs([exp.id], FILTER, ORDER, max_results=PAGE)
        times.append(time.perf_counter() - started)
    assert len(found) == min(PAGE, sum(1 for r in runs if r.metrics["auc"].value > 0.9))
    return {"seconds": statistics.median(times[1:]), "seed_seconds": seed_s}


def _mlflow_clone_runs(db: Path, template: str, size: int) -> None:
    """Copy the rows of run `template` into `size` new runs with fresh ids and values."""
    rng = random.Random(7)
    conn = sqlite3.connect(db)
    tables = ("runs", "params", "tags", "metrics", "latest_metrics")
    rows: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {}
    for table in tables:
        cur = conn.execute(f"SELECT * FROM {table} WHERE run_uuid = ?", (template,))
        rows[table] = ([d[0] for d in cur.description], cur.fetchall())
    out: dict[str, list[tuple[Any, ...]]] = {t: [] for t in tables}
    for i in range(size):
        run_id = uuid.uuid4().hex
        values = {"auc": rng.random(), "loss": rng.random(), "C": rng.choice(["0.1", "1.0", "10"]),
                  "model": rng.choice(["lr", "gbm"])}
        for table in tables:
            cols, template_rows = rows[table]
            for row in template_rows:
                new = dict(zip(cols, row))
                new["run_uuid"] = run_id
                if table == "runs":
                    new["name"] = f"r{i}"
                    new["start_time"] = 1_700_000_000_000 + i
                    new["artifact_uri"] = str(new["artifact_uri"]).replace(template, run_id)
                elif "key" in new and new["key"] in values and table != "tags":
                    new["value"] = values[new["key"]]
                out[table].append(tuple(new[c] for c in cols))
    for table in tables:
        cols = rows[table][0]
        marks = ",".join("?" * len(cols))
        conn.executemany(f"INSERT INTO {table} ({','.join(cols)}) VALUES ({marks})",
                         out[table])
    conn.commit()
    conn.execute("DELETE FROM runs WHERE run_uuid = ?", (template,))
    conn.commit()
    conn.close()


def mlflow_worker(workload: str, size: int, work: Path) -> dict[str, float]:
    """MLflow side of one workload (runs in MLflow's venv)."""
    import logging

    import mlflow
    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    os.chdir(work)  # its default artifact root (./mlruns) goes into the work folder
    db = work / "mlflow.db"
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    exp_id = mlflow.set_experiment("bench").experiment_id  # creates the schema: untimed
    if workload == "A":
        with mlflow.start_run():
            started = time.perf_counter()
            for i in range(size):
                mlflow.log_metric("loss", i * 0.001, step=i)
        return {"seconds": time.perf_counter() - started}
    if workload == "B":
        with mlflow.start_run(run_name="warm-up"):  # one-time costs untimed, as for Threadline
            pass
        started = time.perf_counter()
        for r in range(size):
            with mlflow.start_run(run_name=f"r{r}"):
                for j in range(10):
                    mlflow.log_param(f"p{j}", j)
                for j in range(10):
                    mlflow.log_metric(f"m{j}", j * 0.5)
        return {"seconds": time.perf_counter() - started}
    with mlflow.start_run(run_name="template") as run:
        mlflow.log_params({"C": "1.0", "model": "lr"})
        mlflow.log_metrics({"auc": 0.5, "loss": 0.5})
        mlflow.set_tag("team", "ml")
    seeded = time.perf_counter()
    _mlflow_clone_runs(db, run.info.run_id, size)
    seed_s = time.perf_counter() - seeded
    client = MlflowClient()
    times = []
    for _ in range(SEARCH_REPEATS + 1):
        started = time.perf_counter()
        found = client.search_runs([exp_id], FILTER, order_by=ORDER, max_results=PAGE)
        times.append(time.perf_counter() - started)
    assert len(found) == PAGE or size < 2000
    return {"seconds": statistics.median(times[1:]), "seed_seconds": seed_s}


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------


def ensure_mlflow_venv(venv: Path) -> Path:
    """The MLflow venv's python, created from requirements-mlflow.txt on first use."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import mlflow, sys; sys.exit(not mlflow.__version__.startswith('3.17'))"]
    if python.exists() and subprocess.run(check, capture_output=True, check=False).returncode == 0:
        return python
    print(f"creating {venv} with {REQUIREMENTS.name} (one time, a minute or two)...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True)
    return python


def run_worker(python: Path, tool: str, workload: str, size: int, scratch: Path) -> dict[str, float]:
    """Run one workload in a fresh folder in a child process; return its JSON result."""
    work = Path(tempfile.mkdtemp(prefix=f"{tool}-{workload}-", dir=scratch))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("THREADLINE_", "MLFLOW_"))}
    env.update(THREADLINE_AUTHOR="bench", PYTHONWARNINGS="ignore")
    try:
        done = subprocess.run(
            [str(python), __file__, "--worker", tool, "--workload", workload, "--size", str(size),
             "--dir", str(work)],
            capture_output=True, text=True, env=env, cwd=work, check=False, timeout=1800,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tool} workload {workload} failed:\n{done.stderr[-3000:]}")
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, one repeat (a smoke run)")
    p.add_argument("--metric-calls", type=int, default=10_000, help="workload A size")
    p.add_argument("--runs", type=int, default=100, help="workload B size")
    p.add_argument("--mlflow-search-runs", type=int, default=10_000, help="workload C size")
    p.add_argument("--search-runs", type=int, default=100_000, help="workload D size")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--mlflow-venv", type=Path, default=DEFAULT_VENV)
    p.add_argument("--only", choices=["A", "B", "C", "D"], action="append", help="run only these")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--worker", choices=["threadline", "mlflow"], help=argparse.SUPPRESS)
    p.add_argument("--workload", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.metric_calls, args.runs, args.repeats = 1_000, 20, 1
        args.mlflow_search_runs, args.search_runs = 10_000, 20_000
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the workloads for both tools and print medians, ratios and targets."""
    args = parse_args(argv)
    if args.worker:
        worker = tl_worker if args.worker == "threadline" else mlflow_worker
        print(json.dumps(worker(args.workload, args.size, args.dir)))
        return 0
    mlflow_python = ensure_mlflow_venv(args.mlflow_venv)
    tl_python = Path(sys.executable)
    sizes = {"A": args.metric_calls, "B": args.runs, "C": args.mlflow_search_runs,
             "D": args.search_runs}
    search = f"search_runs '{FILTER}' order by {ORDER[0]}, page of {PAGE}"
    labels = {
        "A": f"{sizes['A']:,} log_metric calls in one run",
        "B": f"{sizes['B']:,} runs x (10 params + 10 metrics), single calls",
        "C": f"{search}, over {sizes['C']:,} runs",
        "D": f"{search}, over {sizes['D']:,} runs (Threadline only)",
    }
    print(f"# Threadline vs MLflow 3.17 tracking on SQLite ({platform.node()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()})")
    results: dict[str, Any] = {}
    failed = False
    with tempfile.TemporaryDirectory(prefix="tlbench-tracking-") as tmp:
        scratch = Path(tmp)
        for workload in args.only or ["A", "B", "C", "D"]:
            size = sizes[workload]
            runs: dict[str, list[dict[str, float]]] = {"threadline": [], "mlflow": []}
            ml_repeats = 1 if workload == "A" and size >= 5_000 else args.repeats
            ml_repeats = 0 if workload == "D" else ml_repeats
            for i in range(args.repeats):
                # alternate who goes first, so neither always meets a warmer page cache
                order = ["threadline", "mlflow"] if i % 2 == 0 else ["mlflow", "threadline"]
                for tool in order:
                    if tool == "mlflow" and i >= ml_repeats:
                        continue
                    python = tl_python if tool == "threadline" else mlflow_python
                    runs[tool].append(run_worker(python, tool, workload, size, scratch))
            tl_s = statistics.median(r["seconds"] for r in runs["threadline"])
            ml_s = statistics.median(r["seconds"] for r in runs["mlflow"]) if runs["mlflow"] else None
            ratio = ml_s / tl_s if ml_s is not None and tl_s else None
            kind, target = TARGETS[workload]
            ok = (ratio or 0) >= target if kind == "ratio" else tl_s < target
            failed |= not ok
            goal = f">= {target:.0f}x" if kind == "ratio" else f"< {target * 1000:.0f} ms"
            print(f"\n{workload}. {labels[workload]}")
            print(f"   threadline {tl_s * 1000:10.1f} ms  (median of {len(runs['threadline'])})")
            if ml_s is not None:
                print(f"   mlflow     {ml_s * 1000:10.1f} ms  (median of {len(runs['mlflow'])})")
                print(f"   ratio      {ratio:10.1f}x")
            print(f"   target     {goal}: {'PASS' if ok else 'FAIL'}")
            if workload in ("C", "D"):
                seeds = {t: statistics.median(r["seed_seconds"] for r in rs) for t, rs in runs.items() if rs}
                print("   seeding (untimed above): " + ", ".join(f"{t} {v:.1f} s" for t, v in seeds.items()))
            results[workload] = {"label": labels[workload], "size": size, "threadline_s": tl_s,
                                 "mlflow_s": ml_s, "ratio": ratio, "target": goal, "pass": ok,
                                 "runs": runs}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
