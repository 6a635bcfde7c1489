"""The Ray executor against a real Ray cluster: the executor conformance suite, and the same
results as the local executor.

The module starts its own single-node cluster (`ray start --head --block` on loopback, free
ports, a private temp folder) and every test connects to it by address, the way a user
connects to a shared cluster; the cluster is stopped at teardown by signalling the blocking
`ray start`, which takes its processes down with it. Where Ray is not installed the tests are
skipped, except in CI, which installs the extra and must run them.

The cluster uses Ray's token authentication with a token made for this module and passed in
the environment (RAY_AUTH_MODE, RAY_AUTH_TOKEN) to the cluster and to this process. Without
that, Ray would read and write the shared `~/.ray/auth_token`: a local `ray.init()` creates
it, `ray start` then turns authentication on, and a driver connecting by explicit address
does not send the token and retries for minutes.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import needs
import pytest

from threadline.compute import LocalExecutor, RayExecutor, Resources, Task, open_executor
from threadline.compute import conformance_tasks as tasks
from threadline.compute.conformance import ExecutorConformance

if TYPE_CHECKING:
    from collections.abc import Iterator

STARTUP_SECONDS = 90


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _reload_ray_auth() -> None:
    """Make Ray re-read RAY_AUTH_MODE and RAY_AUTH_TOKEN: it caches both on first use."""
    import ray._raylet

    ray._raylet.Config.initialize("")
    ray._raylet.AuthenticationTokenLoader.instance().reset_cache()


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """Start a 2-CPU Ray head node for this module and yield its address."""
    if importlib.util.find_spec("ray") is None:
        needs.missing("Ray", "pip install 'threadline[ray]'")
    ray_cli = Path(sys.executable).with_name("ray")
    # a short folder: Ray's unix socket paths under it must stay under 108 bytes
    temp = Path(tempfile.mkdtemp(prefix="tlray-", dir="/tmp"))
    port = _free_port()
    log = temp / "ray-start.log"
    command = [str(ray_cli), "start", "--head", "--block", "--num-cpus=2", "--num-gpus=0",
               "--node-ip-address=127.0.0.1", f"--port={port}", f"--temp-dir={temp}",
               f"--ray-client-server-port={_free_port()}", f"--dashboard-port={_free_port()}",
               f"--dashboard-agent-listen-port={_free_port()}", "--include-dashboard=false",
               "--disable-usage-stats"]
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **auth}
    env.pop("RAY_ADDRESS", None)
    patch = pytest.MonkeyPatch()
    for name, value in auth.items():
        patch.setenv(name, value)
    _reload_ray_auth()
    with log.open("wb") as out:
        head = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while b"Ray runtime started" not in log.read_bytes():
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start failed:\n{log.read_text(errors='replace')[-4000:]}")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        patch.undo()
        _reload_ray_auth()
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def executor(ray_address: str) -> Iterator[RayExecutor]:
    with RayExecutor(address=ray_address, workers=2) as pool:
        yield pool


class TestRayExecutor(ExecutorConformance):
    pass


def test_open_executor_connects_by_address_and_leaves_the_cluster_running(ray_address: str) -> None:
    import ray

    pool = open_executor("ray", address=ray_address)
    assert isinstance(pool, RayExecutor)
    assert pool.workers == 2  # every CPU of the cluster
    assert pool.map([Task(tasks.add, (1, 2))]) == [3]
    pool.shutdown()
    assert not ray.is_initialized()
    with RayExecutor(address=ray_address, workers=1) as again:  # the cluster is still up
        assert again.map([Task(tasks.square, (4,))]) == [16]


def test_local_and_ray_give_identical_results(ray_address: str, tmp_path: Path) -> None:
    blob = tasks.make_bytes(1_000_000, seed=3)
    work = [Task(tasks.burn, (10_000 + n,)) for n in range(6)]
    work += [Task(tasks.echo, ({"n": n, "xs": list(range(n))},)) for n in range(4)]
    work += [Task(tasks.digest, (blob,)), Task(tasks.add, (2,), {"b": 3}, resources=Resources(cpus=2)),
             Task(tasks.fail_until, (str(tmp_path / "counter"), 1), retries=1)]
    with LocalExecutor(workers=2) as local:
        expected = local.map(work)
    (tmp_path / "counter").unlink()
    with RayExecutor(address=ray_address, workers=2) as remote:
        assert remote.map(work) == expected


def test_starts_its_own_cluster_without_an_address_and_stops_it(ray_address: str) -> None:
    import ray

    with RayExecutor(workers=1) as pool:  # a second, private cluster with one CPU
        assert ray.cluster_resources().get("CPU") == 1
        assert pool.workers == 1
        assert pool.map([Task(tasks.square, (n,)) for n in range(3)]) == [0, 1, 4]
        node = ray._private.worker.global_worker.node
        started = [p.process for group in node.all_processes.values() for p in group]
        assert started
    assert not ray.is_initialized()
    for process in started:
        process.wait(timeout=30)  # stopped with the executor, not left running
