#!/usr/bin/env python3
"""Benchmark: `threadline serve` against `mlflow models serve` and a bare uvicorn endpoint.

Three kinds of server run on this machine at once, all on 127.0.0.1, and one load generator
(`wrk`, keep-alive HTTP/1.1) drives each of them with the same requests in the same run:

- **bare**: a Starlette app whose one POST route reads the body and returns a constant JSON
  answer, under uvicorn with the settings `threadline serve` uses (uvloop, httptools, no
  access log, no server or date header): the ceiling of any Python ASGI model server here;
- **mlflow**: `mlflow models serve -m PATH --env-manager local --workers 1` (the mlflow
  installed in this interpreter's environment), the same model saved by `mlflow.sklearn`;
- **threadline**: `threadline serve NAME --no-log` (one worker, and two for the scaling
  scenario), the same model registered with `ModelRegistry.register`; requests go to the MLflow
  protocol (`/invocations`, the same bodies MLflow gets) and to Threadline's `/predict`
  (records).

The model is a scikit-learn logistic regression on 20 float features (columns f0..f19), trained
here on generated data; nothing is downloaded. Scenarios:

    1row      one-row requests, 1,000 distinct rows cycled, concurrency 1 and 32
    cache     one row sent again and again to a deployment with the result cache on
    100rows   100-row requests, 100 distinct bodies cycled, concurrency 1 and 32
    workers2  one-row requests to `threadline serve --workers 2` (and bare uvicorn with
              2 workers, what the machine allows), concurrency 32 (and 64)

Each measurement is `wrk -t1 -cC -dD --latency -s post.lua URL` after a short warm-up at the
same concurrency. Within a repeat, the servers compared at one concurrency run back to back
(order rotated per repeat), so that on a shared machine they meet the same conditions; a
ratio is the median over repeats of each repeat's ratio. The table shows medians of
requests/s and p50/p99 latency, and the cores used during the run by the server's process
tree, by wrk, and by everything else on the machine (from /proc and getrusage), so results on
a small shared machine can be read with the load generator's and other users' shares in mind.
Every answer must be 2xx and every socket error counts: any error fails the run (exit
status 1). Missed targets are reported, not failed.

After the load runs, the hot path is timed in process: the model's own predict on one NumPy
row, the ONNX Runtime call the server uses, decoding and encoding; then the bare app and
Threadline's app driven directly as ASGI callables (no HTTP), and a cProfile of the latter.

Usage:
    nice -n -10 .venv/bin/python benchmarks/serving_vs_mlflow.py            # ~13 minutes
    .venv/bin/python benchmarks/serving_vs_mlflow.py --quick                # smoke run
    .venv/bin/python benchmarks/serving_vs_mlflow.py --json out.json --markdown out.md
    .venv/bin/python benchmarks/serving_vs_mlflow.py --inprocess-only     # seconds, no wrk

Needs `wrk` on PATH (Debian/Ubuntu: `apt-get install -y wrk`; macOS: `brew install wrk`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from proctree import descendants  # benchmarks/ is on the path: the script's own folder

if TYPE_CHECKING:
    from collections.abc import Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FEATURES = [f"f{i}" for i in range(20)]
SEED = 20261127
STARTUP_TIMEOUT = 180
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SCENARIOS = ("1row", "cache", "100rows", "workers2")

BARE_APP = '''\
"""A constant answer: the ceiling of a Python ASGI model server on this machine."""
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

BODY = b'{"predictions":[0]}'


async def answer(request):
    await request.body()
    return Response(BODY, 200, media_type="application/json")


async def ping(request):
    return Response(b"{}", 200, media_type="application/json")


app = Starlette(routes=[Route("/ping", ping, methods=["GET"]),
                        Route("/{path:path}", answer, methods=["POST"])])
'''

# Requests are formatted once per body in init; `done` prints wrk's own summary as JSON
# (latencies in microseconds, exact, rather than the rounded text report).
POST_LUA = '''\
local reqs = {}
local n = 0
local i = 0
function init(args)
  local f = assert(io.open(args[1], "r"))
  for line in f:lines() do
    n = n + 1
    reqs[n] = wrk.format("POST", nil, {["Content-Type"] = "application/json"}, line)
  end
  f:close()
end
function request()
  i = i % n + 1
  return reqs[i]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'TLWRK {"requests": %d, "duration_us": %d, "bytes": %d, "status": %d, "connect": %d, ' ..
    '"read": %d, "write": %d, "timeout": %d, "p50": %d, "p90": %d, "p99": %d, "p999": %d, ' ..
    '"mean": %.2f, "max": %d}\\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max))
end
'''


# ----------------------------------------------------------------------------- servers
@dataclass
class Server:
    """One server process (group) on 127.0.0.1."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def cpu_seconds(self) -> dict[int, float]:
        """User + system CPU of each process of the server's tree so far, by pid."""
        return _tree_cpu(self.process.pid)


def _tree_cpu(pid: int) -> dict[int, float]:
    found: dict[int, float] = {}
    for current in descendants(pid):
        try:
            fields_ = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[current] = (int(fields_[11]) + int(fields_[12])) / CLOCK_TICKS  # utime, stime
    return found


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / CLOCK_TICKS, sum(values[:8]) / CLOCK_TICKS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def post(url: str, body: bytes) -> tuple[int, Any]:
    """One JSON POST; (status, decoded answer)."""
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def start(name: str, argv: Sequence[str], ready: str, workdir: Path, port: int,
          env: dict[str, str]) -> Server:
    """Start a server in its own process group and wait until `ready` answers 200."""
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, env=env,
                                   cwd=workdir, start_new_session=True)
    server = Server(name, port, process, log)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode} before it was ready:\n"
                               f"{log.read_text()[-3000:]}")
        if _get(server.url(ready)) == 200:
            return server
        time.sleep(0.2)
    stop(server)
    raise RuntimeError(f"{name} was not ready within {STARTUP_TIMEOUT} s:\n{log.read_text()[-3000:]}")


def stop(server: Server) -> None:
    """SIGTERM the server's process group (it was started in its own session), then SIGKILL."""
    if server.process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGTERM)
    try:
        server.process.wait(timeout=40)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()


# ------------------------------------------------------------------------ the model
def make_data(rows: int = 5000) -> tuple[Any, Any]:
    import pandas as pd

    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(rows, len(FEATURES))).round(6)
    weights = rng.normal(size=len(FEATURES))
    y = (x @ weights + rng.normal(scale=0.5, size=rows) > 0).astype(np.int64)
    return pd.DataFrame(x, columns=FEATURES), y


def bodies(x: Any, rows: int, count: int, *, same: bool = False) -> dict[str, list[bytes]]:
    """Request bodies of `rows` rows each: MLflow's `dataframe_split` and Threadline records."""
    rng = np.random.default_rng(SEED + rows + count)
    values = x.to_numpy()
    split: list[bytes] = []
    records: list[bytes] = []
    for _ in range(count):
        picked = values[:rows] if same else values[rng.integers(0, len(values), rows)]
        data = picked.tolist()
        split.append(json.dumps({"dataframe_split": {"columns": FEATURES, "data": data}},
                                separators=(",", ":")).encode())
        records.append(json.dumps([dict(zip(FEATURES, row, strict=True)) for row in data],
                                  separators=(",", ":")).encode())
    return {"split": split, "records": records}


# ---------------------------------------------------------------------- measurement
@dataclass
class Run:
    """One wrk run against one (server, path) at one concurrency."""

    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    server_cores: float
    wrk_cores: float
    machine_cores: float
    #: cores each busy process of the server used (workers of a multi-worker server)
    process_cores: list[float] = field(default_factory=list)

    @property
    def other_cores(self) -> float:
        """Cores used by everything else on the machine (other users, idle servers)."""
        return max(0.0, self.machine_cores - self.server_cores - self.wrk_cores)


@dataclass
class Case:
    """A (scenario, target, concurrency) and its runs over the repeats."""

    scenario: str
    target: str
    concurrency: int
    runs: list[Run] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return float(statistics.median(getattr(r, attr) for r in self.runs))


def wrk(url: str, body_file: Path, lua: Path, concurrency: int, seconds: float,
        server: Server) -> Run:
    """One wrk run; raises on any non-2xx answer or socket error."""
    argv = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "10s",
            "-s", str(lua), url, "--", str(body_file)]
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu0, (busy0, _) = server.cpu_seconds(), _machine_busy()
    wall0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - wall0
    cpu1, (busy1, _) = server.cpu_seconds(), _machine_busy()
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("TLWRK ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}) on {url}:\n{done.stdout}\n{done.stderr}")
    s = json.loads(line[len("TLWRK "):])
    errors = {k: s[k] for k in ("status", "connect", "read", "write", "timeout") if s[k]}
    if errors or s["requests"] == 0:
        raise RuntimeError(f"errors from {server.name} at {url} (concurrency {concurrency}): "
                           f"{errors or 'no requests answered'}; see {server.log}\n{done.stdout}")
    wrk_cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    duration = s["duration_us"] / 1e6
    per_process = sorted(((cpu1[p] - cpu0.get(p, 0.0)) / wall for p in cpu1), reverse=True)
    return Run(rps=s["requests"] / duration, p50_ms=s["p50"] / 1000, p90_ms=s["p90"] / 1000,
               p99_ms=s["p99"] / 1000, requests=s["requests"], server_cores=sum(per_process),
               wrk_cores=wrk_cpu / wall, machine_cores=(busy1 - busy0) / wall,
               process_cores=[round(c, 2) for c in per_process if c >= 0.02])


# ----------------------------------------------------------------------- hot path
def hot_path(registry: Any, version: Any, x: Any, body_split: bytes, body_records: bytes,
             repeat: int = 3000) -> dict[str, Any]:
    """Median microseconds of each step of Threadline's answer, in process, for one row."""
    from threadline.serving import protocols
    from threadline.serving.inputs import Inputs
    from threadline.serving.predictor import Predictor, quiet_feature_name_warning

    quiet_feature_name_warning()
    model = registry.load_version(version)
    predictor = Predictor(version, model, example=registry.load_example(version))
    signature = version.signature or {}
    row = x.to_numpy()[:1].copy()

    def median_us(call: Any) -> float:
        for _ in range(200):
            call()
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1e6

    inputs = protocols.validate(signature, protocols.decode_predict(body_records, "application/json",
                                                                    signature))
    out = predictor.predict(inputs)
    steps = {
        "sklearn predict, one NumPy row": median_us(lambda: model.predict(row)),
        f"Predictor.predict ({predictor.engine}), one row": median_us(lambda: predictor.predict(inputs)),
        "decode + validate /invocations (dataframe_split)": median_us(lambda: protocols.validate(
            signature, protocols.decode_invocations(body_split, "application/json", signature))),
        "decode + validate /predict (records)": median_us(lambda: protocols.validate(
            signature, protocols.decode_predict(body_records, "application/json", signature))),
        "encode /predict answer": median_us(lambda: protocols.encode_predict(
            out, model="bench", version=1, request_id="0" * 32)),
        "cache key of the inputs": median_us(lambda: inputs.cache_key()),
        "Inputs.concat of 32 one-row inputs": median_us(lambda: Inputs.concat([inputs] * 32)),
    }
    return {"engine": predictor.engine, "steps_us": steps}


async def _drive(app: Any, path: str, body: bytes, count: int) -> float:
    """Seconds per request of `count` sequential requests through the ASGI app (no HTTP); the
    best of three rounds (a background refresh or another process only ever adds time)."""
    return min([await _drive_concurrent(app, path, body, count, 1) for _ in range(3)])


async def _drive_concurrent(app: Any, path: str, body: bytes, count: int, clients: int) -> float:
    """Seconds per request of `clients` concurrent loops of `count` requests each."""
    import asyncio

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
             "query_string": b"", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())]}
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def client() -> None:
        for _ in range(count):
            await app(dict(scope), receive, send)

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - start
    if len(statuses) != count * clients or any(s != 200 for s in statuses):
        raise RuntimeError(f"in-process {path} answered {sorted(set(statuses))}")
    return elapsed / (count * clients)


@contextlib.asynccontextmanager
async def _lifespan(app: Any) -> Any:
    import asyncio

    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                                   inbox.get, outbox.put))
    message = await outbox.get()
    if message["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"app did not start: {message}")
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task


def in_process(workdir: Path, records: bytes, split: bytes, count: int = 3000) -> dict[str, Any]:
    """The app's own time per request, without HTTP: the bare app and Threadline's app driven
    directly as ASGI callables on uvloop, one request at a time; then a cProfile of Threadline's
    /predict (cumulative time of its biggest parts)."""
    import cProfile
    import importlib.util
    import pstats

    import uvloop

    from threadline.registry.registry import ModelRegistry
    from threadline.serving.app import create_app
    from threadline.serving.deployments import Deployments

    spec = importlib.util.spec_from_file_location("bare_app", workdir / "bare_app.py")
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {workdir / 'bare_app.py'}")
    bare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bare)
    registry = ModelRegistry.open()
    out: dict[str, Any] = {}

    async def measure() -> None:
        out["bare_us"] = await _drive(bare.app, "/", records, count) * 1e6
        for deployment in ("plain", "cached"):
            app = create_app(registry, Deployments(registry), [deployment], log_predictions=False)
            async with _lifespan(app):
                await _drive(app, "/predict", records, 500)
                out[f"{deployment}_predict_us"] = await _drive(app, "/predict", records, count) * 1e6
                out[f"{deployment}_invocations_us"] = await _drive(app, "/invocations", split,
                                                                   count) * 1e6
                out[f"{deployment}_predict_c32_us"] = min([await _drive_concurrent(
                    app, "/predict", records, count // 32, 32) for _ in range(3)]) * 1e6
                if deployment == "plain":
                    profiler = cProfile.Profile()
                    profiler.enable()
                    await _drive_concurrent(app, "/predict", records, count, 1)
                    profiler.disable()
                    stats = pstats.Stats(profiler)
                    rows = []
                    for (file, line, func), (_, calls, tottime, _cum, _) in stats.stats.items():  # type: ignore[attr-defined]
                        short = file.split("site-packages/")[-1].split("work/main/")[-1]
                        rows.append((tottime / count * 1e6, calls / count, f"{short}:{line} {func}"))
                    rows.sort(reverse=True)
                    out["profile_self_time"] = [{"self_us": round(us, 2), "calls_per_request": n,
                                                 "where": where} for us, n, where in rows[:20]]

    uvloop.run(measure())
    return out


def _setup_home(workdir: Path) -> tuple[Any, Any, Any, Any]:
    """A Threadline home in `workdir` with the benchmark model registered as `bench@production`
    and deployments `plain` (cache off) and `cached`; returns (x, model, registry, version)."""
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    from threadline.config import init_home
    from threadline.registry.registry import ModelRegistry
    from threadline.serving.deployments import Deployments

    x, y = make_data()
    model = LogisticRegression(max_iter=1000).fit(x, y)
    init_home()
    registry = ModelRegistry.open()
    version = registry.register("bench", model, example=x.head(5))
    registry.set_alias("bench", "production", version.version)
    deployments = Deployments(registry)
    route = [{"model": "bench@production"}]
    deployments.create("plain", route, {"cache": {"enabled": False}})
    deployments.create("cached", route, {"cache": {"enabled": True}})
    (workdir / "bare_app.py").write_text(BARE_APP)
    return x, model, registry, version


def inprocess_only(workdir: Path | None) -> int:
    """`--inprocess-only`: the hot-path steps and the app alone as an ASGI callable, printed."""
    work = workdir or Path(tempfile.mkdtemp(prefix="tl-serve-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["THREADLINE_HOME"] = str(work / "home")
    try:
        x, _, registry, version = _setup_home(work)
        pool = bodies(x, 1, 1000)
        profile = hot_path(registry, version, x, pool["split"][0], pool["records"][0])
        asgi = in_process(work, pool["records"][0], pool["split"][0])
    finally:
        if workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"Hot path in process (median µs, engine {profile['engine']}):")
    for step, us in profile["steps_us"].items():
        print(f"  {step}: {us:.1f}")
    print("The app alone as an ASGI callable (µs per request):")
    for key, value in asgi.items():
        if key.endswith("_us"):
            print(f"  {key.removesuffix('_us')}: {value:.1f}")
    print("cProfile of plain /predict (self µs per request):")
    for row in asgi["profile_self_time"][:20]:
        print(f"  {row['self_us']:6.2f} µs {row['calls_per_request']:5g} calls  {row['where']}")
    return 0


# ----------------------------------------------------------------------------- main
def fmt_rps(v: float) -> str:
    return f"{v:,.0f}"


def ratio_line(label: str, value: float, target: float, *, at_least: bool = True,
               unit: str = "x") -> dict[str, Any]:
    met = value >= target if at_least else value <= target
    return {"what": label, "value": value, "target": target, "at_least": at_least, "unit": unit,
            "met": met}


def report(cases: dict[tuple[str, str, int], Case], profile: dict[str, Any],
           meta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The results as Markdown text and as a JSON-able object."""
    steps_us = profile.get("steps_us", {})
    predict_ms = steps_us["sklearn predict, one NumPy row"] / 1000 if steps_us else None
    results: list[dict[str, Any]] = []

    def runs(scenario: str, label: str, c: int) -> list[Run]:
        case = cases.get((scenario, label, c))
        return case.runs if case else []

    def paired(label: str, num: tuple[str, str, int], den: tuple[str, str, int], target: float,
               value: Any = None) -> None:
        """The median over repeats of each repeat's ratio (its runs were back to back)."""
        a, b = runs(*num), runs(*den)
        if not a or not b:
            return
        each = [value(x, y) if value else x.rps / y.rps for x, y in zip(a, b, strict=True)]
        line = ratio_line(label, statistics.median(each), target)
        line["each"] = [round(v, 3) for v in each]
        results.append(line)

    for protocol in ("/invocations", "/predict"):
        tl = f"threadline {protocol}"
        paired(f"1 row, c=32: {tl} / mlflow", ("1row", tl, 32), ("1row", "mlflow /invocations", 32), 12.0)
        paired(f"1 row, c=32: {tl} / bare", ("1row", tl, 32), ("1row", "bare", 32), 0.5)
        a, b = runs("1row", tl, 1), runs("1row", "bare", 1)
        if a and b and predict_ms is not None:
            each = [x.p50_ms - y.p50_ms - predict_ms for x, y in zip(a, b, strict=True)]
            line = ratio_line(f"1 row, c=1: {tl} p50 - bare p50 - sklearn predict",
                              statistics.median(each), 0.5, at_least=False, unit=" ms")
            line["each"] = [round(v, 4) for v in each]
            results.append(line)
        paired(f"100 rows, c=32: {tl} / mlflow", ("100rows", tl, 32),
               ("100rows", "mlflow /invocations", 32), 8.0)
    for protocol in ("/predict", "/invocations"):
        paired(f"cache hits, c=32: threadline {protocol} / bare",
               ("cache", f"threadline {protocol}, cache on", 32), ("cache", "bare", 32), 0.8)
    for c in (32, 64):
        two = ("workers2", "threadline /predict, 2 workers", c)
        one = ("workers2", "threadline /predict, 1 worker", c)
        paired(f"c={c}: threadline 2 workers / 1 worker", two, one, 1.6)
        # throughput per core the server used: what two workers give when each has a core of
        # its own and the load is spread evenly, relative to one worker
        paired(f"c={c}: 2 workers / 1 worker, per server core used", two, one, 0.8,
               lambda x, y: (x.rps / x.server_cores) / (y.rps / y.server_cores))
        paired(f"c={c}: bare 2 workers / 1 worker (what this machine allows)",
               ("workers2", "bare, 2 workers", c), ("workers2", "bare, 1 worker", c), 0.0)

    out = {**meta, "cpus": os.cpu_count(), "python": platform.python_version(),
           "machine": platform.machine(),
           "cases": [{**{k: v for k, v in asdict(c).items() if k != "runs"},
                      "runs": [asdict(r) for r in c.runs],
                      **{f"median_{a}": c.median(a) for a in ("rps", "p50_ms", "p90_ms", "p99_ms",
                                                              "server_cores", "wrk_cores",
                                                              "machine_cores", "other_cores")}}
                     for c in cases.values()],
           "targets": results, "hot_path": profile}
    lines = [f"Threadline serving vs mlflow models serve vs bare uvicorn, {meta['date']}; "
             f"{meta['repeat']} repeats of {meta['duration']:g} s (medians); engine: "
             f"{meta['engine']}; load {meta['load_before']:.2f} before, {meta['load_after']:.2f} "
             f"after; {meta['elapsed_s']:.0f} s; git {meta['git']}",
             "",
             "| Scenario | Server | c | req/s | p50 ms | p99 ms | server cores | wrk cores | other cores |",
             "|---|---|---|---|---|---|---|---|---|"]
    for case in cases.values():
        lines.append(f"| {case.scenario} | {case.target} | {case.concurrency} | "
                     f"{fmt_rps(case.median('rps'))} | {case.median('p50_ms'):.3f} | "
                     f"{case.median('p99_ms'):.3f} | {case.median('server_cores'):.2f} | "
                     f"{case.median('wrk_cores'):.2f} | {case.median('other_cores'):.2f} |")
    lines += ["", "Ratios: the median over repeats of each repeat's ratio (the runs compared ran back "
              "to back); each repeat's value in brackets.", "",
              "| Target | Value | Wanted | |", "|---|---|---|---|"]
    for r in results:
        unit = r["unit"]
        value = f"{r['value']:.2f}{unit}" if unit == "x" else f"{r['value']:+.3f}{unit}"
        wanted = f"{'≥' if r['at_least'] else '≤'} {r['target']:g}{unit}" if r["target"] else "-"
        verdict = "-" if not r["target"] else "met" if r["met"] else "missed"
        values = ", ".join(f"{v:.2f}" if unit == "x" else f"{v:+.3f}" for v in r["each"])
        lines.append(f"| {r['what']} | {value} ({values}) | {wanted} | {verdict} |")
    if "error" in profile:
        lines += ["", f"The in-process timing failed: {profile['error']}"]
        return "\n".join(lines), out
    lines += ["", f"Hot path in process (median µs, engine {profile['engine']}):", ""]
    lines += [f"- {step}: {us:.1f} µs" for step, us in profile["steps_us"].items()]
    asgi = profile["asgi"]
    lines += ["", "The app alone, driven as an ASGI callable in process (no HTTP, one request at a "
              "time), µs per request:", ""]
    lines += [f"- {k.removesuffix('_us').replace('_', ' ')}: {v:.1f}" for k, v in asgi.items()
              if k.endswith("_us")]
    lines += ["", "cProfile of threadline /predict, one request at a time (self time, µs per request; "
              "the profiler inflates small functions):", ""]
    lines += [f"- {r['self_us']:.2f} µs, {r['calls_per_request']:g} calls: {r['where']}"
              for r in asgi["profile_self_time"][:12]]
    return "\n".join(lines), out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--duration", type=int, default=6, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per run")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--quick", action="store_true", help="1 repeat of 2 s runs")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp folder")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--inprocess-only", action="store_true",
                        help="only the in-process timing (seconds; no servers, no wrk)")
    args = parser.parse_args(argv)
    if args.inprocess_only:
        return inprocess_only(args.workdir)
    if args.quick:
        args.repeat, args.duration, args.warmup = 1, 2, 1
    scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    if shutil.which("wrk") is None:
        print("this benchmark needs wrk on PATH: `apt-get install -y wrk` (Debian/Ubuntu) or "
              "`brew install wrk` (macOS)", file=sys.stderr)
        return 2

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tl-serve-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    home = workdir / "home"
    env = {**os.environ, "THREADLINE_HOME": str(home), "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
           "MLFLOW_TRACKING_URI": (workdir / "mlruns").as_uri(), "PYTHONWARNINGS": "ignore"}
    os.environ["THREADLINE_HOME"] = str(home)
    servers: dict[str, Server] = {}
    try:
        # ------------------------------------------------------------ set-up
        import mlflow.sklearn

        x, model, registry, version = _setup_home(workdir)
        mlflow_model = workdir / "mlflow-model"
        mlflow.sklearn.save_model(model, str(mlflow_model), input_example=x.head(5))

        files: dict[tuple[str, str], Path] = {}
        pools = {"1row": bodies(x, 1, 1000), "cache": bodies(x, 1, 1, same=True),
                 "100rows": bodies(x, 100, 100)}
        pools["workers2"] = pools["1row"]
        for scenario, pool in pools.items():
            for kind, items in pool.items():
                path = workdir / f"{scenario}-{kind}.jsonl"
                path.write_bytes(b"\n".join(items) + b"\n")
                files[scenario, kind] = path
        lua = workdir / "post.lua"
        lua.write_text(POST_LUA)

        uvicorn_opts = ["--host", "127.0.0.1", "--no-access-log", "--log-level", "warning",
                        "--loop", "uvloop", "--http", "httptools", "--no-server-header",
                        "--no-date-header"]
        needed = {"bare", "mlflow", "tl1"}
        if "cache" in scenarios:
            needed.add("tlc")
        if "workers2" in scenarios:
            needed |= {"tl2", "bare2"}
        for name in sorted(needed):
            port = free_port()
            if name in ("bare", "bare2"):
                argv_ = [str(BIN / "uvicorn"), "bare_app:app", "--port", str(port), *uvicorn_opts,
                         "--workers", "2" if name == "bare2" else "1"]
                ready = "/ping"
            elif name == "mlflow":
                argv_ = [str(BIN / "mlflow"), "models", "serve", "-m", str(mlflow_model),
                         "--env-manager", "local", "--port", str(port), "--host", "127.0.0.1",
                         "--workers", "1"]
                ready = "/ping"
            else:
                deployment = "cached" if name == "tlc" else "plain"
                argv_ = [str(BIN / "threadline"), "serve", deployment, "--port", str(port), "--no-log",
                         "--workers", "2" if name == "tl2" else "1"]
                ready = "/v2/health/ready"
            servers[name] = start(name, argv_, ready, workdir, port, env)
            print(f"started {name} on port {port}", file=sys.stderr)

        # the answers must be the model's own, on every server and protocol
        first_split, first_records = pools["100rows"]["split"][0], pools["100rows"]["records"][0]
        expected = model.predict(x.__class__(json.loads(first_records), columns=FEATURES)).tolist()
        checks = [("mlflow", "/invocations", first_split)]
        for name in sorted(needed & {"tl1", "tlc", "tl2"}):
            checks += [(name, "/invocations", first_split), (name, "/predict", first_records)]
        for checked, path, body in checks:
            code, answer = post(servers[checked].url(path), body)
            if code != 200 or answer.get("predictions") != expected:
                raise RuntimeError(f"{checked} {path} answered {code}: {str(answer)[:300]}")
        status = json.loads(urllib.request.urlopen(servers["tl1"].url("/deployments/plain/status"),
                                                   timeout=10).read())
        engine = ", ".join(r["engine"] for r in status["routes"])

        # ------------------------------------------------------------ the cases
        # (scenario, label, server, path, body kind, concurrencies)
        plan: list[tuple[str, str, str, str, str, tuple[int, ...]]] = []
        if "1row" in scenarios:
            plan += [("1row", "bare", "bare", "/", "split", (1, 32)),
                     ("1row", "mlflow /invocations", "mlflow", "/invocations", "split", (1, 32)),
                     ("1row", "threadline /invocations", "tl1", "/invocations", "split", (1, 32)),
                     ("1row", "threadline /predict", "tl1", "/predict", "records", (1, 32))]
        if "cache" in scenarios:
            plan += [("cache", "bare", "bare", "/", "records", (1, 32)),
                     ("cache", "threadline /predict, cache on", "tlc", "/predict", "records", (1, 32)),
                     ("cache", "threadline /invocations, cache on", "tlc", "/invocations", "split",
                      (32,)),
                     ("cache", "threadline /predict, cache off", "tl1", "/predict", "records", (32,))]
        if "100rows" in scenarios:
            plan += [("100rows", "bare", "bare", "/", "split", (1, 32)),
                     ("100rows", "mlflow /invocations", "mlflow", "/invocations", "split", (1, 32)),
                     ("100rows", "threadline /invocations", "tl1", "/invocations", "split", (1, 32)),
                     ("100rows", "threadline /predict", "tl1", "/predict", "records", (1, 32))]
        if "workers2" in scenarios:
            plan += [("workers2", "threadline /predict, 1 worker", "tl1", "/predict", "records", (32, 64)),
                     ("workers2", "threadline /predict, 2 workers", "tl2", "/predict", "records", (32, 64)),
                     ("workers2", "bare, 1 worker", "bare", "/", "records", (32, 64)),
                     ("workers2", "bare, 2 workers", "bare2", "/", "records", (32, 64))]
        cases: dict[tuple[str, str, int], Case] = {}
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        for repeat in range(args.repeat):
            for scenario in scenarios:
                steps = [step for step in plan if step[0] == scenario]
                # the servers compared at one concurrency run back to back (so they meet the
                # same conditions on a shared machine), in an order rotated per repeat
                shift = repeat % len(steps)
                steps = steps[shift:] + steps[:shift]
                for c in sorted({c for step in steps for c in step[5]}):
                    for _, label, server_name, path, kind, concurrencies in steps:
                        if c not in concurrencies:
                            continue
                        server = servers[server_name]
                        body_file = files[scenario, kind]
                        wrk(server.url(path), body_file, lua, c, args.warmup, server)
                        run = wrk(server.url(path), body_file, lua, c, args.duration, server)
                        cases.setdefault((scenario, label, c), Case(scenario, label, c)).runs.append(run)
                        print(f"[{repeat + 1}/{args.repeat}] {scenario:8} {label:38} c={c:<3} "
                              f"{run.rps:9,.0f} req/s  p50 {run.p50_ms:7.3f} ms  p99 "
                              f"{run.p99_ms:7.3f} ms  server {run.server_cores:.2f} "
                              f"{run.process_cores} wrk {run.wrk_cores:.2f} others "
                              f"{run.other_cores:.2f} cores", file=sys.stderr)
        elapsed = time.perf_counter() - started
        load_after = os.getloadavg()[0]

        # the load results are reported even when the in-process timing fails
        try:
            profile = hot_path(registry, version, x, pools["1row"]["split"][0],
                               pools["1row"]["records"][0])
            profile["asgi"] = in_process(workdir, pools["1row"]["records"][0],
                                         pools["1row"]["split"][0])
        except Exception as exc:  # noqa: BLE001 - reported with the results, exit status 1
            profile = {"error": f"{type(exc).__name__}: {str(exc)[:500]}"}
    finally:
        for server in servers.values():
            stop(server)
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    commit = subprocess.run(["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"],
                            capture_output=True, text=True, check=False).stdout.strip()
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "elapsed_s": elapsed,
            "git": commit, "load_before": load_before, "load_after": load_after, "engine": engine,
            "repeat": args.repeat, "duration": args.duration,
            "args": {k: str(v) for k, v in vars(args).items()}}
    text, out = report(cases, profile, meta)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 1 if "error" in profile else 0


if __name__ == "__main__":
    sys.exit(main())
