"""Drift checks: Threadline against Evidently and NannyML on the same data, in the same run.

Data: `--rows` reference and `--rows` current rows x `--columns` columns (every fifth
categorical, the rest numeric), with 13 planted drifts of varied strength (mean shifts of
0.1 to 1 standard deviation, spread changes, a 5% tail, null-rate jumps, category share
changes, a new category); seeded. `--big` is 1,000,000 x 100.

Threadline runs in this process on one core (BLAS/OpenMP/Arrow threads set to 1): the
reference is built once (timed apart), then each window check is `summarise` +
`check_drift`, median of `--repeat`. Peak extra memory is tracemalloc's peak (numpy) plus
the Arrow pool's peak during a check, against the window's own size.

Peers run in a subprocess with `--peers-python` (a separate venv: `python3 -m venv /tmp/peers
&& /tmp/peers/bin/pip install 'evidently==0.7.*' 'nannyml==0.13.*' 'pandas<3'`), on the same
data written to Parquet; their time excludes reading the files. Evidently: `DataDriftPreset`
defaults. NannyML: `UnivariateDriftCalculator` with its default methods and chunking; a column
counts as drifted when any analysis chunk alerts. A missing peer is reported and skipped.

    .venv/bin/python benchmarks/drift_vs_evidently.py            # 100k x 50
    .venv/bin/python benchmarks/drift_vs_evidently.py --big      # 1M x 100
"""

# ruff: noqa: E402  (thread counts must be set before numpy and pyarrow are imported)
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import json
import statistics
import subprocess
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from threadline.monitor.drift import check_drift
from threadline.monitor.reference import Reference
from threadline.monitor.window import summarise

CATEGORIES = np.array([f"v{i}" for i in range(12)])
SHARES = np.array([0.2, 0.15, 0.12, 0.1, 0.09, 0.08, 0.07, 0.06, 0.05, 0.04, 0.02, 0.02])
#: planted drifts: column index -> (kind, strength); columns with j % 5 == 4 are categorical
PLANTED: dict[int, tuple[str, float]] = {
    0: ("mean", 0.1), 1: ("mean", 0.2), 2: ("mean", 0.5), 3: ("mean", 1.0),
    5: ("scale", 1.2), 6: ("scale", 0.7), 7: ("scale", 1.5), 8: ("nulls", 0.05), 10: ("tail", 0.05),
    4: ("shares", 0.05), 9: ("shares", 0.1), 14: ("new", 0.02), 19: ("nulls", 0.03),
}


def make_data(rows: int, columns: int, seed: int) -> tuple[pa.Table, pa.Table]:
    """Reference and current tables with the planted drifts; other columns are identical in law."""
    rng = np.random.default_rng(seed)
    ref: dict[str, Any] = {}
    cur: dict[str, Any] = {}
    for j in range(columns):
        name = f"f{j:03d}"
        kind, s = PLANTED.get(j, ("", 0.0))
        if j % 5 == 4:
            ref[name] = pa.array(rng.choice(CATEGORIES, rows, p=SHARES))
            cats, shares = CATEGORIES, SHARES.copy()
            if kind == "shares":
                shares[0] -= s
                shares[5] += s
            elif kind == "new":
                cats, shares = np.append(CATEGORIES, "new"), np.append(SHARES * (1 - s), s)
            mask = rng.random(rows) < s if kind == "nulls" else None
            cur[name] = pa.array(rng.choice(cats, rows, p=shares), mask=mask)
        else:
            loc, scale = rng.uniform(-5, 5), rng.uniform(0.5, 20)
            ref[name] = rng.normal(loc, scale, rows)
            x = rng.normal(0.0, 1.0, rows)
            if kind == "mean":
                x += s
            elif kind == "scale":
                x *= s
            elif kind == "tail":
                x[rng.random(rows) < s] += 3.0
            x = loc + scale * x
            if kind == "nulls":
                x[rng.random(rows) < s] = np.nan
            cur[name] = pa.array(x, from_pandas=True)
    return pa.table(ref), pa.table(cur)


def run_threadline(ref: pa.Table, cur: pa.Table, repeat: int) -> dict[str, Any]:
    """Reference build time, check time (median), peak extra memory and findings."""
    pa.set_cpu_count(1)
    t0 = time.perf_counter()
    reference = Reference.from_table(ref)
    build = time.perf_counter() - t0
    times = []
    report = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        report = check_drift(reference, summarise(reference, cur))
        times.append(time.perf_counter() - t0)
    assert report is not None
    pool = pa.default_memory_pool()
    proxy = pa.proxy_memory_pool(pool)
    pa.set_memory_pool(proxy)
    tracemalloc.start()
    check_drift(reference, summarise(reference, cur))
    _, numpy_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    pa.set_memory_pool(pool)
    arrow_peak = proxy.max_memory()
    size = len(reference.to_json())
    return {"build_s": build, "check_s": statistics.median(times), "times": times,
            "peak_extra_bytes": numpy_peak + arrow_peak, "window_bytes": cur.nbytes,
            "reference_bytes": size, "bytes_per_column": size / len(reference.columns),
            "drifted": report.drifted}


PEER_SCRIPT = r'''
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import pandas as pd
which, folder = sys.argv[1], sys.argv[2]
ref = pd.read_parquet(f"{folder}/ref.parquet")
cur = pd.read_parquet(f"{folder}/cur.parquet")
out = {}
if which == "evidently":
    from evidently import Report
    from evidently.presets import DataDriftPreset
    t0 = time.perf_counter()
    snap = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
    result = snap.dict()
    out["check_s"] = time.perf_counter() - t0
    drifted = []
    for m in result["metrics"]:
        cfg = m.get("config", {})
        if cfg.get("type", "").endswith("ValueDrift"):
            value, threshold = float(m["value"]), float(cfg["threshold"])
            p_value = "p_value" in cfg.get("method", "").lower().replace("-", "_")
            if (value < threshold) if p_value else (value >= threshold):
                drifted.append(cfg["column"])
    out["drifted"] = drifted
else:
    import nannyml as nml
    t0 = time.perf_counter()
    calc = nml.UnivariateDriftCalculator(column_names=list(ref.columns))
    calc.fit(ref)
    res = calc.calculate(cur).filter(period="analysis").to_df()
    out["check_s"] = time.perf_counter() - t0
    drifted = []
    for col in ref.columns:
        alerts = [c for c in res.columns if c[0] == col and c[2] == "alert"]
        if any(bool(res[c].any()) for c in alerts):
            drifted.append(col)
    out["drifted"] = drifted
print("RESULT " + json.dumps(out))
'''


def run_peer(which: str, python: str, folder: Path, timeout: float) -> dict[str, Any]:
    """One peer in a subprocess on the Parquet files; {"error": ...} when it cannot run."""
    if not Path(python).exists():
        return {"error": f"{python} not found (create the peers venv, see the module docstring)"}
    script = folder / "peer.py"
    script.write_text(PEER_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    try:
        done = subprocess.run([python, str(script), which, str(folder)], capture_output=True, text=True,
                              timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[7:])
            return result
    return {"error": (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]}


def missed(drifted: list[str]) -> str:
    """The planted drifts not found, as "kind strength" labels."""
    found = set(drifted)
    labels = [f"{k} {s:g}" for j, (k, s) in sorted(PLANTED.items()) if f"f{j:03d}" not in found]
    return f" (missed: {', '.join(labels)})" if labels else ""


def score(drifted: list[str], columns: int) -> tuple[int, int, int]:
    """(planted drifts found, false alarms, clean columns)."""
    planted = {f"f{j:03d}" for j in PLANTED}
    found = set(drifted)
    return len(found & planted), len(found - planted), columns - len(planted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--columns", type=int, default=50)
    parser.add_argument("--big", action="store_true", help="1,000,000 rows x 100 columns")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=1, help="extra seeds for the false-alarm count")
    parser.add_argument("--peers-python", default="/tmp/peers/bin/python")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--peer-timeout", type=float, default=1200)
    args = parser.parse_args()
    rows, columns = (1_000_000, 100) if args.big else (args.rows, args.columns)

    ref, cur = make_data(rows, columns, args.seed)
    tl = run_threadline(ref, cur, args.repeat)
    found, false_alarms, clean = score(tl["drifted"], columns)
    print(f"data: {rows:,} reference + {rows:,} current rows x {columns} columns, {len(PLANTED)} planted")
    print(f"threadline: reference built in {tl['build_s']:.3f} s ({tl['bytes_per_column']:.0f} B/column), "
          f"check {tl['check_s']:.3f} s (runs {', '.join(f'{t:.3f}' for t in tl['times'])})")
    print(f"threadline: peak extra memory {tl['peak_extra_bytes'] / 2**20:.1f} MiB for a "
          f"{tl['window_bytes'] / 2**20:.1f} MiB window ({tl['peak_extra_bytes'] / tl['window_bytes']:.2f}x)")
    print(f"threadline: found {found}/{len(PLANTED)}{missed(tl['drifted'])}, "
          f"false alarms {false_alarms}/{clean} clean columns")
    fa_total, clean_total = false_alarms, clean
    for seed in range(args.seed + 1, args.seed + args.seeds):
        r2, c2 = make_data(rows, columns, seed)
        extra = run_threadline(r2, c2, 1)
        f2, a2, k2 = score(extra["drifted"], columns)
        print(f"threadline seed {seed}: found {f2}/{len(PLANTED)}, false alarms {a2}/{k2}")
        fa_total, clean_total = fa_total + a2, clean_total + k2
    if args.seeds > 1:
        print(f"threadline: false alarms {fa_total}/{clean_total} clean column checks "
              f"over {args.seeds} seeds")
    if args.no_peers:
        return
    with tempfile.TemporaryDirectory(prefix="tl-drift-bench-") as tmp:
        folder = Path(tmp)
        pq.write_table(ref, folder / "ref.parquet")
        pq.write_table(cur, folder / "cur.parquet")
        for which in ("evidently", "nannyml"):
            peer = run_peer(which, args.peers_python, folder, args.peer_timeout)
            if "error" in peer:
                print(f"{which}: not run: {peer['error']}")
                continue
            pf, pa_, pc = score(peer["drifted"], columns)
            ratio = peer["check_s"] / tl["check_s"]
            print(f"{which}: check {peer['check_s']:.3f} s ({ratio:.0f}x threadline's), "
                  f"found {pf}/{len(PLANTED)}{missed(peer['drifted'])}, false alarms {pa_}/{pc}")


if __name__ == "__main__":
    main()
