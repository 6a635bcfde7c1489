#!/usr/bin/env python3
"""Benchmark: parallel speedup of Threadline's executors, local process pool and Ray.

Eight independent CPU-bound tasks (a pure-Python loop calibrated to about one second each,
which holds the GIL, so only separate processes run it in parallel) are run through
`Executor.map` with 1 worker and with 2 workers, on the local executor and on Ray (a local
Ray cluster started per executor with as many CPUs as workers). Each configuration is
warmed up first (worker processes started, the task function imported), then timed
`--repeat` times; the table shows medians, the speedup of 2 workers over 1, and the
overhead of 1 worker over running the same loop serially in this process.

The target is near-linear speedup (about 2x with 2 workers) on a machine with at least two
idle cores. Other work on the machine takes cores away from the workers: the 1-minute load
average before and after is printed with the results so the reader can judge them.

Usage:
    python benchmarks/compute_parallel.py                  # 8 tasks of ~1 s, 3 repeats
    python benchmarks/compute_parallel.py --quick          # 8 tasks of ~0.2 s, 1 repeat
    python benchmarks/compute_parallel.py --executors local --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from threadline.compute import Executor, LocalExecutor, RayExecutor, Task
from threadline.compute.conformance_tasks import burn

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


@dataclass
class Measurement:
    """One configuration's timings."""

    executor: str
    workers: int
    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def calibrate(target_s: float) -> int:
    """Loop iterations of `burn` that take about `target_s` seconds in this process."""
    iterations = 200_000
    while True:
        start = time.perf_counter()
        burn(iterations)
        took = time.perf_counter() - start
        if took > 0.2:
            return max(1, int(iterations * target_s / took))
        iterations *= 2


def time_serial(tasks: int, iterations: int, repeat: int) -> list[float]:
    """The same loops run one after another in this process: the no-executor baseline."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(tasks):
            burn(iterations)
        times.append(time.perf_counter() - start)
    return times


def time_executor(make: Callable[[int], Executor], workers: int, tasks: int, iterations: int,
                  repeat: int) -> list[float]:
    """Median-ready timings of `map` over `tasks` loops on a fresh executor with `workers` slots."""
    work = [Task(burn, (iterations + n,)) for n in range(tasks)]  # distinct args: no caching anywhere
    with make(workers) as executor:
        executor.map([Task(burn, (1000,)) for _ in range(workers * 2)])  # warm-up: start every worker
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            results = executor.map(work)
            times.append(time.perf_counter() - start)
            assert len(results) == tasks
    return times


EXECUTORS: dict[str, Callable[[int], Executor]] = {
    "local": lambda workers: LocalExecutor(workers),
    "ray": lambda workers: RayExecutor(workers=workers),
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=8, help="independent tasks per map (default 8)")
    parser.add_argument("--task-seconds", type=float, default=1.0, help="CPU seconds per task (default 1)")
    parser.add_argument("--repeat", type=int, default=3, help="timed repeats per configuration (default 3)")
    parser.add_argument("--executors", default="local,ray", help="comma-separated: local,ray")
    parser.add_argument("--quick", action="store_true", help="smoke run: 0.2 s tasks, 1 repeat")
    parser.add_argument("--json", type=argparse.FileType("w"), help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.task_seconds, args.repeat = 0.2, 1
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Calibrate, time every configuration, print the table."""
    args = parse_args(argv)
    # Ray's local clusters authenticate with a token; give them a private one so that the
    # benchmark neither reads nor creates the shared ~/.ray/auth_token
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    kinds = [k.strip() for k in args.executors.split(",") if k.strip()]
    load_before = os.getloadavg()[0]
    if load_before > 0.5 * (os.cpu_count() or 1):
        print(f"warning: the machine is busy (load {load_before:.2f}); timings will be noisy")
    iterations = calibrate(args.task_seconds)
    serial = time_serial(args.tasks, iterations, args.repeat)
    results = [Measurement("serial (in-process)", 1, serial)]
    for kind in kinds:
        for workers in (1, 2):
            print(f"timing {kind} with {workers} worker(s)...", flush=True)
            results.append(Measurement(kind, workers, time_executor(EXECUTORS[kind], workers, args.tasks,
                                                                    iterations, args.repeat)))
    load_after = os.getloadavg()[0]

    print()
    print(f"    machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"       load: 1-min load average {load_before:.2f} before, {load_after:.2f} after")
    print(f"       work: {args.tasks} tasks x {iterations:,} loop iterations "
          f"(~{args.task_seconds:g} s each), medians of {args.repeat}")
    print()
    print(f"{'executor':<20} {'workers':>7} {'median':>9} {'runs':>26} {'speedup':>8} {'vs serial':>10}")
    serial_median = results[0].median
    one_worker = {m.executor: m.median for m in results if m.workers == 1}
    rows = []
    for m in results:
        speedup = one_worker[m.executor] / m.median
        row = {"executor": m.executor, "workers": m.workers, "median_s": m.median, "runs_s": m.seconds,
               "speedup_vs_1_worker": speedup, "time_vs_serial": m.median / serial_median}
        rows.append(row)
        runs = ", ".join(f"{s:.2f}" for s in m.seconds)
        print(f"{m.executor:<20} {m.workers:>7} {m.median:>8.2f}s {runs:>26} {speedup:>7.2f}x "
              f"{m.median / serial_median:>9.2f}x")
    if args.json:
        json.dump({"command": " ".join([sys.argv[0], *(sys.argv[1:] if argv is None else argv)]),
                   "cpus": os.cpu_count(), "load_before": load_before, "load_after": load_after,
                   "iterations": iterations, "rows": rows, "raw": [asdict(m) for m in results]},
                  args.json, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
