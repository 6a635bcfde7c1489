#!/usr/bin/env python3
"""Benchmark: `threadline server` against `mlflow server` 3.17, driven by the same MLflow client.

One client workload, through `MlflowClient` over HTTP on 127.0.0.1, against each server in the
same run, in fresh folders on every repeat:

    R runs (default 50), each: create_run, 10 `log_param` calls, 10 `log_metric` calls,
    one `log_batch` of 100 metrics, `set_terminated`

after one untimed warm-up run per server start (first-request and import costs are not
per-run costs). Both servers run one worker process on SQLite (`mlflow server
--backend-store-uri sqlite:///... --workers 1` from the MLflow venv built from
benchmarks/requirements-mlflow.txt; `threadline server --workers 1` from this interpreter's
environment). The client is this interpreter's `mlflow-skinny` for both, in a child process,
so client-side costs are identical and cancel out of the difference, not of the ratio.

For each phase it prints the median over the repeats of the total time, for each server, the
ratio mlflow_time / threadline_time, and pass/fail against the target: Threadline at least
3x faster for run creation and for logging. The machine may be shared: timings are noisy,
which is why the medians and the raw repeats (--json) are reported.

Usage:
    python benchmarks/server_vs_mlflow.py               # 50 runs, 3 repeats (~1-2 minutes)
    python benchmarks/server_vs_mlflow.py --quick       # 10 runs, 1 repeat
    python benchmarks/server_vs_mlflow.py --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO_ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = Path(__file__).resolve().parent / "requirements-mlflow.txt"
DEFAULT_VENV = Path("/tmp/mlflowenv")
PHASES = ("create_run", "log_param", "log_metric", "log_batch", "set_terminated", "total")
#: target ratio mlflow / threadline per phase (None: reported, no target)
TARGETS: dict[str, float | None] = {"create_run": 3.0, "log_param": 3.0, "log_metric": 3.0,
                                    "log_batch": 3.0, "set_terminated": None, "total": 3.0}
STARTUP_TIMEOUT = 120


# --------------------------------------------------------------------------------------
# Client worker: runs in a child process, prints one JSON object on stdout
# --------------------------------------------------------------------------------------


def client_worker(uri: str, runs: int) -> dict[str, float]:
    """Run the workload against `uri`; seconds spent in each phase, summed over the runs."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment(f"bench-{time.time_ns()}")

    def one(times: dict[str, float]) -> None:
        t0 = time.perf_counter()
        run_id = client.create_run(exp_id).info.run_id
        t1 = time.perf_counter()
        for i in range(10):
            client.log_param(run_id, f"p{i}", i)
        t2 = time.perf_counter()
        for i in range(10):
            client.log_metric(run_id, f"m{i}", i * 0.1, step=0)
        t3 = time.perf_counter()
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(f"b{i % 10}", float(i), now, i // 10) for i in range(100)])
        t4 = time.perf_counter()
        client.set_terminated(run_id)
        t5 = time.perf_counter()
        for phase, seconds in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=False):
            times[phase] += seconds
        times["total"] += t5 - t0

    one(dict.fromkeys(PHASES, 0.0))  # warm-up, untimed
    times = dict.fromkeys(PHASES, 0.0)
    for _ in range(runs):
        one(times)
    return times


# --------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Poll `url` until it answers 200 (the server's own readiness probe)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:  # loopback only
                return
        time.sleep(0.2)
    raise RuntimeError(f"server at {url} not ready after {STARTUP_TIMEOUT} s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def running(tool: str, work: Path, mlflow_venv: Path) -> Iterator[str]:
    """Start a fresh server of `tool` in `work`; yield its URL; stop it afterwards."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("THREADLINE_", "MLFLOW_"))}
    env.update(THREADLINE_AUTHOR="bench", PYTHONWARNINGS="ignore")
    if tool == "threadline":
        subprocess.run([str(Path(sys.executable).with_name("threadline")), "init", str(work)],
                       check=True, env=env, capture_output=True)
        env["THREADLINE_HOME"] = str(work / ".threadline")
        exe = str(Path(sys.executable).with_name("threadline"))
        cmd = [exe, "server", "--port", str(port), "--workers", "1"]
        health = f"http://127.0.0.1:{port}/api/v1/health"
    else:
        cmd = [str(mlflow_venv / "bin" / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1", "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}",
               "--artifacts-destination", str(work / "artifacts")]
        health = f"http://127.0.0.1:{port}/health"
    log = work / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_ready(health, proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(tool: str, runs: int, scratch: Path, mlflow_venv: Path) -> dict[str, float]:
    """One repeat: a fresh server of `tool`, the client workload in a child process."""
    work = Path(tempfile.mkdtemp(prefix=f"{tool}-", dir=scratch))
    try:
        with running(tool, work, mlflow_venv) as url:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("THREADLINE_", "MLFLOW_"))}
            env.update(PYTHONWARNINGS="ignore", MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
                       GIT_PYTHON_REFRESH="quiet")
            done = subprocess.run(
                [sys.executable, __file__, "--worker", "--uri", url, "--runs", str(runs)],
                capture_output=True, text=True, env=env, cwd=work, check=False, timeout=1800)
            if done.returncode != 0:
                raise RuntimeError(f"client against {tool} failed:\n{done.stderr[-3000:]}")
            return dict(json.loads(done.stdout.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ensure_mlflow_venv(venv: Path) -> Path:
    """The MLflow venv (with the full `mlflow` server), created from requirements-mlflow.txt."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import mlflow, sys; sys.exit(not mlflow.__version__.startswith('3.17'))"]
    if (python.exists() and (venv / "bin" / "mlflow").exists()
            and subprocess.run(check, capture_output=True, check=False).returncode == 0):
        return venv
    print(f"creating {venv} with {REQUIREMENTS.name} (one time, a minute or two)...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True)
    return venv


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="10 runs, one repeat (a smoke run)")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--mlflow-venv", type=Path, default=DEFAULT_VENV)
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--uri", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.repeats = 10, 1
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the workload against both servers and print medians, ratios and targets."""
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(client_worker(args.uri, args.runs)))
        return 0
    venv = ensure_mlflow_venv(args.mlflow_venv)
    print(f"# threadline server vs mlflow server 3.17, MLflow client over HTTP on 127.0.0.1 "
          f"({platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()})")
    print(f"# {args.runs} runs x (create, 10 log_param, 10 log_metric, log_batch of 100, "
          f"set_terminated); median of {args.repeats}")
    samples: dict[str, list[dict[str, float]]] = {"threadline": [], "mlflow": []}
    with tempfile.TemporaryDirectory(prefix="tlbench-server-") as tmp:
        for i in range(args.repeats):
            # alternate who goes first, so neither always meets a warmer machine
            for tool in (["threadline", "mlflow"] if i % 2 == 0 else ["mlflow", "threadline"]):
                samples[tool].append(measure(tool, args.runs, Path(tmp), venv))
    failed = False
    results: dict[str, Any] = {}
    print(f"\n{'phase':<15} {'threadline ms':>14} {'mlflow ms':>12} {'ratio':>8}  target")
    for phase in PHASES:
        tl_s = statistics.median(s[phase] for s in samples["threadline"])
        ml_s = statistics.median(s[phase] for s in samples["mlflow"])
        ratio = ml_s / tl_s if tl_s else float("inf")
        target = TARGETS[phase]
        ok = target is None or ratio >= target
        failed |= not ok
        verdict = "-" if target is None else f">= {target:.0f}x {'PASS' if ok else 'FAIL'}"
        print(f"{phase:<15} {tl_s * 1000:14.1f} {ml_s * 1000:12.1f} {ratio:7.1f}x  {verdict}")
        results[phase] = {"threadline_s": tl_s, "mlflow_s": ml_s, "ratio": ratio, "target": target,
                          "pass": ok}
    per_run = statistics.median(s["total"] for s in samples["threadline"]) / args.runs
    print(f"\nthreadline: {per_run * 1000:.1f} ms per run of 23 client calls")
    if args.json:
        args.json.write_text(json.dumps({"phases": results, "samples": samples, "runs": args.runs},
                                        indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
