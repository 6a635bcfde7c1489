"""Benchmark: Threadline's preparation steps against pandas doing the same work in memory.

Same run, same machine, same data: a CSV of `--rows` rows x 10 columns (10 million rows is
about 1 GiB) with 1% duplicated rows. Each step runs as its own process, timed from outside,
with its peak memory taken by GNU time (`%M`):

- ingest: CSV -> Parquet (Threadline: `threadline prep ingest`, a commit; pandas: read_csv +
  to_parquet);
- dedupe: exact duplicate rows removed (Threadline: `prep dedupe`; pandas: read_parquet +
  drop_duplicates + to_parquet);
- cleanse: 5 rules (strip and lower-case a text column, fill missing amounts with the mean,
  clip amounts to [0, 500], derive amount * quantity) (Threadline: `prep cleanse`; pandas:
  the same operations on the DataFrame);
- split: hash split by the id column 80/10/10 (Threadline: `prep split --by id`; pandas:
  read_parquet + hash_pandas_object + three to_parquet).

Threadline's times include its CLI start and the commit (objects, fsync, metadata); pandas
writes plain files. Ratios are pandas time / Threadline time (above 1: Threadline is faster)
and Threadline memory / pandas memory (target: at most 1/3).

    .venv/bin/python benchmarks/prep_vs_pandas.py --rows 10000000 --repeat 3 --markdown out.md
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

ROOT = Path(__file__).resolve().parent.parent
CLEANSE_SPEC = """format: threadline.cleanse/1
steps:
  - strip: [region]
  - lower: [comment]
  - missing: {amount: {strategy: mean}}
  - outliers: {amount: {method: clip, min: 0, max: 500}}
  - derive: {total: "amount * quantity"}
"""
PANDAS_STEPS = {
    "ingest": """
import pandas as pd, sys
pd.read_csv(sys.argv[1]).to_parquet(sys.argv[2] + "/raw.parquet", index=False)
""",
    "dedupe": """
import pandas as pd, sys
df = pd.read_parquet(sys.argv[2] + "/raw.parquet")
df.drop_duplicates().to_parquet(sys.argv[2] + "/clean.parquet", index=False)
""",
    "cleanse": """
import pandas as pd, sys
df = pd.read_parquet(sys.argv[2] + "/clean.parquet")
df["region"] = df["region"].str.strip()
df["comment"] = df["comment"].str.lower()
df["amount"] = df["amount"].fillna(df["amount"].mean())
df["amount"] = df["amount"].clip(0, 500)
df["total"] = df["amount"] * df["quantity"]
df.to_parquet(sys.argv[2] + "/cleansed.parquet", index=False)
""",
    "split": """
import numpy as np, pandas as pd, sys
df = pd.read_parquet(sys.argv[2] + "/cleansed.parquet")
bucket = pd.util.hash_pandas_object(df["id"], index=False).to_numpy() % np.uint64(100)
for name, lo, hi in (("train", 0, 80), ("validation", 80, 90), ("test", 90, 100)):
    df[(bucket >= lo) & (bucket < hi)].to_parquet(f"{sys.argv[2]}/{name}.parquet", index=False)
""",
}


def generate(path: Path, rows: int) -> None:
    """A CSV of `rows` rows x 10 mixed columns with 1% exact duplicate rows, written in blocks.

    Every value is derived from the row's id, so the last 1% of rows (which reuse earlier
    ids) are exact duplicates, and the data is the same on every machine.
    """
    regions = np.array(["north", "south", "east", "west", "central"])
    words = np.array(["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"])
    block = 1_000_000
    unique = rows - rows // 100
    with pacsv.CSVWriter(path, schema=_schema()) as writer:
        for start in range(0, rows, block):
            n = min(block, rows - start)
            ids = np.arange(start, start + n)
            ids = np.where(ids >= unique, ids - unique, ids)  # the last 1% repeat earlier rows
            base = ids.astype(np.int64)
            table = pa.table({
                "id": base,
                "ts": (1_700_000_000 + base * 7).astype("datetime64[s]"),
                "customer": base % 1_000_003,
                "region": regions[base % 5],
                "amount": np.round((base * 7919 % 100_000) / 100.0, 2),
                "quantity": (base % 50 + 1).astype(np.int32),
                "score": ((base * 2654435761) % 1_000_000) / 1_000_000.0,
                "flag": (base % 3 == 0),
                "comment": words[base % 10],
                "category": np.char.add("c", (base % 97).astype(str)),
            })
            writer.write_table(table)


def _schema() -> pa.Schema:
    return pa.schema([
        ("id", pa.int64()), ("ts", pa.timestamp("s")), ("customer", pa.int64()),
        ("region", pa.string()), ("amount", pa.float64()), ("quantity", pa.int32()),
        ("score", pa.float64()), ("flag", pa.bool_()), ("comment", pa.string()),
        ("category", pa.string()),
    ])


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int, str]:
    """Run a command; return (seconds, peak RSS in bytes, stdout)."""
    rss_file = cwd / ".rss"
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *cmd], cwd=cwd, env=env,
                          capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    return seconds, int(rss_file.read_text().split()[-1]) * 1024, done.stdout


def run_threadline(exe: str, csv: Path, work: Path) -> dict[str, tuple[float, int]]:
    """ingest, dedupe, split through the CLI in a fresh home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADLINE_")}
    subprocess.run([exe, "init"], cwd=work, env=env, check=True, capture_output=True)
    for repo in ("raw", "clean", "cleansed", "splits"):
        subprocess.run([exe, "data", "create", repo], cwd=work, env=env, check=True, capture_output=True)
    out: dict[str, tuple[float, int]] = {}
    seconds, rss, stdout = timed([exe, "prep", "ingest", str(csv), "--into", "raw", "--json"], work, env)
    part = json.loads(stdout)["parts"][0]["part"]
    out["ingest"] = (seconds, rss)
    seconds, rss, _ = timed([exe, "prep", "dedupe", f"raw:{part}", "--into", "clean", "--json"], work, env)
    out["dedupe"] = (seconds, rss)
    spec = work / "cleanse.yaml"
    spec.write_text(CLEANSE_SPEC)
    seconds, rss, _ = timed([exe, "prep", "cleanse", f"clean:{part}", "--spec", str(spec),
                             "--into", "cleansed", "--json"], work, env)
    out["cleanse"] = (seconds, rss)
    cleansed = part.split(".", 1)[0] + ".parquet"
    seconds, rss, _ = timed([exe, "prep", "split", f"cleansed:{cleansed}", "--into", "splits", "--fractions",
                             "train=0.8,validation=0.1,test=0.1", "--by", "id", "--json"], work, env)
    out["split"] = (seconds, rss)
    return out


def run_pandas(csv: Path, work: Path) -> dict[str, tuple[float, int]]:
    """The same steps as plain pandas scripts, each in its own process."""
    out: dict[str, tuple[float, int]] = {}
    for step, code in PANDAS_STEPS.items():
        seconds, rss, _ = timed([sys.executable, "-c", code, str(csv), str(work)], work, dict(os.environ))
        out[step] = (seconds, rss)
    return out


def main() -> None:
    """Generate the data once, run both tools `--repeat` times, print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threadline", default=str(ROOT / ".venv" / "bin" / "threadline"))
    parser.add_argument("--workdir", default="/tmp/tlbench-prep")
    parser.add_argument("--markdown", help="also write the table as markdown here")
    args = parser.parse_args()

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    csv = workdir / f"data-{args.rows}.csv"
    if not csv.exists():
        print(f"generating {args.rows:,} rows ...", flush=True)
        generate(csv, args.rows)
    print(f"data: {csv} ({csv.stat().st_size / 1e9:.2f} GB)", flush=True)
    results: dict[str, dict[str, list[tuple[float, int]]]] = {"threadline": {}, "pandas": {}}
    for i in range(args.repeat):
        for tool in (("threadline", "pandas") if i % 2 == 0 else ("pandas", "threadline")):
            work = Path(tempfile.mkdtemp(prefix=f"{tool}-", dir=workdir))
            try:
                if tool == "threadline":
                    got = run_threadline(args.threadline, csv, work)
                else:
                    got = run_pandas(csv, work)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            for step, value in got.items():
                results[tool].setdefault(step, []).append(value)
                print(f"  {tool:10} {step:7} {value[0]:7.2f} s {value[1] / 1e6:8.0f} MB", flush=True)
    lines = ["| Step | Threadline | pandas | pandas/TL time | TL memory | pandas memory | TL/pandas memory |",
             "|---|---|---|---|---|---|---|"]
    for step in PANDAS_STEPS:
        tl_t = statistics.median(v[0] for v in results["threadline"][step])
        pd_t = statistics.median(v[0] for v in results["pandas"][step])
        tl_m = statistics.median(v[1] for v in results["threadline"][step])
        pd_m = statistics.median(v[1] for v in results["pandas"][step])
        lines.append(f"| {step} | {tl_t:.2f} s | {pd_t:.2f} s | {pd_t / tl_t:.2f}x | {tl_m / 1e6:.0f} MB | "
                     f"{pd_m / 1e6:.0f} MB | {tl_m / pd_m:.2f} |")
    table = "\n".join(lines)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")


if __name__ == "__main__":
    main()
