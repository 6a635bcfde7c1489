"""Benchmark: the pipeline engine's own overhead, and datum-level incremental runs.

Targets (issue 4):
- a 10-step no-op pipeline (a chain: each step reads the previous one's output) runs cold in
  under 2 s, process-pool start included;
- the same pipeline fully cached re-runs in under 0.3 s;
- with 1,000 datums (files), adding 10 re-processes exactly 10, in under 5% of the full run
  (`--datum-ms N` gives each datum N ms of CPU work; by default datums are no-ops, so the
  ratio compares the engine's fixed cost per run with its cost per datum);
- 8 independent CPU-bound steps (about 1 s each) finish ~2x faster with 2 workers than with 1,
  on the local executor and on Ray (`--parallel`; a local Ray cluster is started).

Times are measured in the driver process around `run_pipeline` (imports done, the home
open), on the local process-pool executor, median of `--repeat` runs, each cold run on a
fresh home so nothing is cached. The warm-executor increment is the median of `WATCH_RUNS`
consecutive runs on one kept executor (each after a new commit of 10 files), as `pipeline
watch` makes them; the first of them is printed too. A CLI invocation adds the interpreter's start and imports
(about a second) on top; the script prints that too, for one cached run.

    .venv/bin/python benchmarks/pipeline_overhead.py --repeat 3
    .venv/bin/python benchmarks/pipeline_overhead.py --history 150   # a long watch
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

STEPS = textwrap.dedent('''
    import time

    from threadline.pipelines import Input, Output, Pipeline, step

    @step
    def s0(raw=Input("raw@main"), out=Output()):
        pass
    {chain}

    @step
    def per_file(raw=Input("many@main", datums="file"), out=Output()):
        _busy_for({datum_ms} / 1000)
        for f in raw.rglob("*"):
            if f.is_file():
                (out / "size").write_text(str(len(f.read_bytes())))

    def _busy_for(seconds):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    def _spin(n):
        total = 0
        for i in range(n):
            total += i * i % 7
        return total

    {busy}

    chain = Pipeline("chain", steps=[{names}])
    datums = Pipeline("datums", steps=[per_file])
    busy = Pipeline("busy", steps=[{busy_names}])
''')
LINK = textwrap.dedent('''
    @step
    def s{i}(x=Input("step:s{prev}"), out=Output()):
        pass
''')


BUSY = textwrap.dedent('''
    @step
    def busy{i}(raw=Input("raw@main"), out=Output(), n={n}):
        (out / "total").write_text(str(_spin(n)))
''')
#: loop iterations of about a second of CPU here
SPIN = 24_000_000
#: incremental runs on one kept executor, as `pipeline watch` makes on each new commit
WATCH_RUNS = 6


def _project(root: Path, datum_ms: float = 0.0) -> None:
    chain = "".join(LINK.format(i=i, prev=i - 1) for i in range(1, 10))
    names = ", ".join(f"s{i}" for i in range(10))
    busy = "".join(BUSY.format(i=i, n=SPIN) for i in range(8))
    busy_names = ", ".join(f"busy{i}" for i in range(8))
    (root / "bench_steps.py").write_text(STEPS.format(chain=chain, names=names, busy=busy,
                                                      busy_names=busy_names, datum_ms=datum_ms))


def _home(root: Path, files: int) -> tuple[object, object]:
    from threadline.config import init_home
    from threadline.data.connect import connect

    settings = init_home(root)
    repos = connect(settings)
    for name, count in (("raw", 1), ("many", files)):
        repos.create(name)
        src = root / f"src-{name}"
        src.mkdir()
        for i in range(count):
            (src / f"f{i:05d}.txt").write_bytes(b"x" * (i % 13 + 1))
        repos.commit(f"{name}@main", [src], "data")
    return settings, repos


def _add(root: Path, repos: object, start: int, count: int) -> None:
    src = root / "src-many"
    for i in range(start, start + count):
        (src / f"f{i:05d}.txt").write_bytes(b"new" * (i % 5 + 1))
    repos.commit("many@main", [src], "more")  # type: ignore[attr-defined]


def _task() -> object:
    from threadline.compute import Task

    return Task(len, args=([1],))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--datums", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--datum-ms", type=float, default=0.0,
                        help="CPU milliseconds each datum's step spends (default 0: no-op datums)")
    parser.add_argument("--parallel", action="store_true",
                        help="also time 8 CPU-bound steps with 1 and 2 workers, local and Ray")
    parser.add_argument("--history", type=int, default=0, metavar="RUNS",
                        help="only time a long watch: RUNS incremental runs on one kept executor, "
                             "each after a commit that changes 10 of the files")
    args = parser.parse_args()
    if args.history:
        _history(args.history, args.datums, args.workers)
        return

    from threadline.pipelines.engine import run_pipeline

    work = Path(tempfile.mkdtemp(prefix="tl-bench-pipe-"))
    sys.path.insert(0, str(work))
    _project(work, args.datum_ms)
    import bench_steps  # type: ignore[import-not-found]

    from threadline.compute import open_executor
    from threadline.pipelines import WORKER_MODULES

    cold, cached, full, incremental, warm_full, warm_incremental = [], [], [], [], [], []
    first_warm: list[float] = []
    processed = []
    try:
        for r in range(args.repeat):
            root = work / f"home{r}"
            root.mkdir()
            settings, repos = _home(root, args.datums)
            t = time.perf_counter()
            result = run_pipeline(bench_steps.chain.spec(), settings, repos, workers=args.workers)
            cold.append(time.perf_counter() - t)
            assert result.status == "succeeded"
            for _ in range(3):
                t = time.perf_counter()
                again = run_pipeline(bench_steps.chain.spec(), settings, repos, workers=args.workers)
                cached.append(time.perf_counter() - t)
                assert {o.status for o in again.steps.values()} == {"cached"}
            t = time.perf_counter()
            first = run_pipeline(bench_steps.datums.spec(), settings, repos, workers=args.workers)
            full.append(time.perf_counter() - t)
            assert first.steps["per_file"].processed == args.datums
            _add(root, repos, args.datums, 10)
            t = time.perf_counter()
            more = run_pipeline(bench_steps.datums.spec(), settings, repos, workers=args.workers)
            incremental.append(time.perf_counter() - t)
            processed.append(more.steps["per_file"].processed)
            # the same with the executor kept open across runs, opened as `pipeline watch` does
            warm = open_executor("local", workers=args.workers, preload=WORKER_MODULES)
            try:
                warm.submit(_task()).result()  # start the workers
                spec = bench_steps.datums.spec()
                renamed = type(spec)("datums2", spec.steps, spec.source)
                t = time.perf_counter()
                first = run_pipeline(renamed, settings, repos, executor=warm)
                warm_full.append(time.perf_counter() - t)
                # a watch runs on every new commit: the median of several runs, the first included
                runs = []
                for n in range(WATCH_RUNS):
                    _add(root, repos, args.datums + 10 * (n + 1), 10)
                    t = time.perf_counter()
                    more = run_pipeline(renamed, settings, repos, executor=warm)
                    runs.append(time.perf_counter() - t)
                    processed.append(more.steps["per_file"].processed)
                first_warm.append(runs[0])
                warm_incremental.append(statistics.median(runs))
            finally:
                warm.shutdown()
        env = {**os.environ, "THREADLINE_HOME": str(work / "home0" / ".threadline"),
               "PYTHONPATH": str(work)}
        t = time.perf_counter()
        subprocess.run([str(Path(sys.executable).with_name("threadline")), "pipeline", "run",
                        "--module", "bench_steps", "chain", "--json"],
                       cwd=work, env=env, check=True, capture_output=True)
        cli_cached = time.perf_counter() - t
        speedups = _parallel(work, bench_steps, args.repeat) if args.parallel else {}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = statistics.median
    ratio = med(incremental) / med(full)
    warm_ratio = med(warm_incremental) / med(warm_full)
    rows = [
        ("10-step no-op, cold", med(cold), "< 2 s", med(cold) < 2.0),
        ("10-step no-op, fully cached", med(cached), "< 0.3 s", med(cached) < 0.3),
        (f"{args.datums} datums, full run", med(full), "-", True),
        (f"+10 datums (processed {sorted(set(processed))})", med(incremental),
         f"< 5% of full ({ratio:.1%})", ratio < 0.05 and set(processed) == {10}),
        (f"{args.datums} datums, full run, warm executor", med(warm_full), "-", True),
        (f"+10 datums, warm executor (as in watch; median of {WATCH_RUNS})", med(warm_incremental),
         f"< 5% of full ({warm_ratio:.1%})", warm_ratio < 0.05 and set(processed) == {10}),
        ("  of which the first run after the full one", med(first_warm), "-", True),
        ("CLI cached run (interpreter start included)", cli_cached, "-", True),
    ]
    print(f"pipeline overhead, median of {args.repeat} (local process pool, {args.workers} workers, "
          f"{args.datum_ms:g} ms of CPU per datum)")
    for name, seconds, target, met in rows:
        verdict = "" if target == "-" else ("met" if met else "MISSED")
        print(f"  {name:56s} {seconds:8.3f} s   target {target:22s} {verdict}")
    for kind, (one, two) in speedups.items():
        ratio = one / two
        print(f"  8 CPU-bound steps, {kind:5s}: 1 worker {one:6.2f} s, 2 workers {two:6.2f} s, "
              f"{ratio:.2f}x   target ~2x {'met' if ratio >= 1.8 else 'MISSED'}")


def _history(runs: int, datums: int, workers: int) -> None:
    """Whether a watch slows down as its home's history grows: the same change (10 of the
    files rewritten) every run, so only the history differs between the first runs and the last."""
    from threadline.compute import open_executor
    from threadline.pipelines import WORKER_MODULES
    from threadline.pipelines.engine import run_pipeline

    work = Path(tempfile.mkdtemp(prefix="tl-bench-history-"))
    sys.path.insert(0, str(work))
    _project(work)
    import bench_steps  # type: ignore[import-not-found]

    times = []
    try:
        root = work / "home"
        root.mkdir()
        settings, repos = _home(root, datums)
        executor = open_executor("local", workers=workers, preload=WORKER_MODULES)  # as a watch
        try:
            run_pipeline(bench_steps.datums.spec(), settings, repos, executor=executor)
            src = root / "src-many"
            for n in range(runs):
                for i in range(10):
                    (src / f"f{(10 * n + i) % datums:05d}.txt").write_bytes(b"run %d" % n)
                repos.commit("many@main", [src], "ten files changed")  # type: ignore[attr-defined]
                t = time.perf_counter()
                result = run_pipeline(bench_steps.datums.spec(), settings, repos, executor=executor)
                times.append(time.perf_counter() - t)
                assert result.steps["per_file"].processed == 10
        finally:
            executor.shutdown()
        packs = sum(1 for _ in (root / ".threadline").rglob("*.pack"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = statistics.median
    print(f"a watch over {runs} runs ({datums} datums, 10 changed per run, {workers} workers)")
    print(f"  runs 4-13: {med(times[3:13]) * 1000:.1f} ms   last 10: {med(times[-10:]) * 1000:.1f} ms"
          f"   ({med(times[-10:]) / med(times[3:13]):.2f}x)   packs in the store: {packs}")


def _parallel(work: Path, steps: object, repeat: int) -> dict[str, tuple[float, float]]:
    """Median times of the 8-step CPU-bound pipeline with 1 and 2 workers, per executor kind."""
    import secrets

    from threadline.compute import open_executor
    from threadline.pipelines.engine import run_pipeline

    # Ray's local cluster gets a private token, so the shared ~/.ray/auth_token is never written
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    out: dict[str, tuple[float, float]] = {}
    for kind in ("local", "ray"):
        times: dict[int, list[float]] = {1: [], 2: []}
        for workers in (1, 2):
            executor = open_executor(kind, workers=workers)
            try:
                executor.submit(_task()).result()  # workers started: time the steps, not the start
                for r in range(repeat):
                    root = work / f"busy-{kind}-{workers}-{r}"
                    root.mkdir()
                    settings, repos = _home(root, 1)
                    t = time.perf_counter()
                    result = run_pipeline(steps.busy.spec(), settings, repos,  # type: ignore[attr-defined]
                                          executor=executor)
                    times[workers].append(time.perf_counter() - t)
                    assert result.status == "succeeded"
            finally:
                executor.shutdown()
        out[kind] = (statistics.median(times[1]), statistics.median(times[2]))
    return out


if __name__ == "__main__":
    main()
