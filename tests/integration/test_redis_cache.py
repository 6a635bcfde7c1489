"""The shared Redis result cache against a real `redis-server` on a loopback port.

Needs the `redis-server` binary and the `threadline[redis]` extra; without them the tests are
skipped, except in CI (the `CI` variable set), which installs both and must run them.
The server is ready when it logs so (no polling); a stopped server is waited for by its exit.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import needs
import pytest

from threadline.serving.cache import CacheSettings, RedisCache, open_cache

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Iterator

PASSWORD = "s3cret-pw"  # a throwaway server's password, checked absent from logs
STARTUP_SECONDS = 30



def _need_redis_package() -> None:
    try:
        import redis.asyncio  # noqa: F401
    except ImportError:
        needs.missing("the redis package", "pip install 'threadline[redis]'")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    """A running `redis-server`; `url` carries its password."""

    binary: str
    port: int
    process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{PASSWORD}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--requirepass", PASSWORD, "--loglevel", "notice"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.process.stdout is not None
        seen = []
        for line in self.process.stdout:  # blocks until redis logs; pytest-timeout bounds it
            seen.append(line)
            if "Ready to accept connections" in line:
                break
        else:
            raise RuntimeError(f"redis-server exited before it was ready:\n{''.join(seen)}")
        self.ping()

    def ping(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=STARTUP_SECONDS) as s:
            s.sendall(f"AUTH {PASSWORD}\r\nPING\r\n".encode())
            answer = b""
            while b"+PONG" not in answer:
                chunk = s.recv(64)
                assert chunk, f"redis closed the connection after {answer!r}"
                answer += chunk

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=STARTUP_SECONDS)
            assert self.process.stdout is not None
            self.process.stdout.close()
            self.process = None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        needs.missing("redis-server", "apt-get install redis-server")
    _need_redis_package()
    server = RedisServer(binary, _free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run `coro` in a fresh loop and fail if it leaves a task behind."""

    async def main() -> Any:
        result = await coro
        leaked = asyncio.all_tasks() - {asyncio.current_task()}
        assert not leaked, f"tasks left running: {leaked}"
        return result

    return asyncio.run(main())


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def counting(value: bytes, calls: list[bytes]) -> Callable[[], Awaitable[bytes]]:
    async def compute() -> bytes:
        calls.append(value)
        return value

    return compute


async def raw(server: RedisServer, *command: Any) -> Any:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(server.url)
    try:
        return await client.execute_command(*command)  # type: ignore[no-untyped-call]
    finally:
        await client.aclose()


def test_one_worker_computes_and_another_hits(redis_server: RedisServer) -> None:
    calls: list[bytes] = []

    async def go() -> list[tuple[bytes, bool]]:
        worker_a, worker_b = RedisCache(redis_server.url, 60.0), RedisCache(redis_server.url, 60.0)
        try:
            return [await worker_a.get_or_compute("churn/3", b"rows", counting(b"[0.9]", calls)),
                    await worker_b.get_or_compute("churn/3", b"rows", counting(b"[0.9]", calls)),
                    await worker_a.get_or_compute("churn/3", b"rows", counting(b"[0.9]", calls))]
        finally:
            await worker_a.aclose()
            await worker_b.aclose()

    assert run(go()) == [(b"[0.9]", False), (b"[0.9]", True), (b"[0.9]", True)]
    assert calls == [b"[0.9]"]


def test_versions_never_share_answers(redis_server: RedisServer) -> None:
    async def go() -> list[tuple[bytes, bool]]:
        cache = RedisCache(redis_server.url, 60.0)
        calls: list[bytes] = []
        try:
            return [await cache.get_or_compute("churn/3", b"rows", counting(b"v3", calls)),
                    await cache.get_or_compute("churn/4", b"rows", counting(b"v4", calls)),
                    await cache.get_or_compute("churn/3", b"rows", counting(b"x", calls)),
                    await cache.get_or_compute("churn/4", b"rows", counting(b"x", calls))]
        finally:
            await cache.aclose()

    assert run(go()) == [(b"v3", False), (b"v4", False), (b"v3", True), (b"v4", True)]


def test_values_are_set_with_the_ttl_under_hashed_keys(redis_server: RedisServer) -> None:
    async def go() -> tuple[list[bytes], int, bytes]:
        cache = open_cache(CacheSettings(ttl_s=30.0, redis_url=redis_server.url),
                           prefix="test:")
        assert isinstance(cache, RedisCache)
        try:
            await cache.get_or_compute("churn/3", b"raw secret input", counting(b"v", []))
        finally:
            await cache.aclose()
        keys = await raw(redis_server, "KEYS", "*")
        return keys, await raw(redis_server, "PTTL", keys[0]), await raw(redis_server, "GET", keys[0])

    keys, pttl, value = run(go())
    assert len(keys) == 1
    assert keys[0].startswith(b"test:")
    assert len(keys[0]) == len(b"test:") + 32  # a 16-byte digest in hex, no raw input
    assert 0 < pttl <= 30_000
    assert value == b"v"


def test_an_expired_entry_is_computed_again(redis_server: RedisServer) -> None:
    async def go() -> list[tuple[bytes, bool]]:
        cache = RedisCache(redis_server.url, 30.0)
        try:
            first = await cache.get_or_compute("m/1", b"rows", counting(b"old", []))
            (key,) = await raw(redis_server, "KEYS", "*")
            await raw(redis_server, "PEXPIREAT", key, 1)  # expire it now, without waiting
            second = await cache.get_or_compute("m/1", b"rows", counting(b"new", []))
            return [first, second]
        finally:
            await cache.aclose()

    assert run(go()) == [(b"old", False), (b"new", False)]


def test_identical_concurrent_misses_compute_once_per_process(redis_server: RedisServer) -> None:
    calls: list[int] = []

    async def go() -> list[tuple[bytes, bool]]:
        cache = RedisCache(redis_server.url, 60.0)
        started, release = asyncio.Event(), asyncio.Event()

        async def compute() -> bytes:
            calls.append(1)
            started.set()
            await release.wait()
            return b"v"

        try:
            tasks = [asyncio.create_task(cache.get_or_compute("m/1", b"rows", compute))
                     for _ in range(5)]
            await started.wait()  # the leader missed in Redis; the others wait on its flight
            release.set()
            return await asyncio.gather(*tasks)
        finally:
            await cache.aclose()

    assert sorted(run(go())) == [(b"v", False)] + [(b"v", True)] * 4
    assert calls == [1]


def test_predictions_survive_redis_stopping_and_use_it_again_after(
        redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="threadline.serving.cache")
    clock = FakeClock()
    calls: list[bytes] = []

    async def go() -> None:
        cache = RedisCache(redis_server.url, 60.0, retry_after_s=5.0, clock=clock)
        try:
            assert await cache.get_or_compute("m/1", b"a", counting(b"A", calls)) == (b"A", False)
            redis_server.stop()
            for _ in range(3):  # all computed, none fails
                assert await cache.get_or_compute("m/1", b"a", counting(b"A", calls)) == (b"A", False)
            assert cache.errors == 1  # later calls skip Redis until retry_after_s passed
            clock.now += 5.0
            assert await cache.get_or_compute("m/1", b"b", counting(b"B", calls)) == (b"B", False)
            assert cache.errors == 2
            redis_server.start()  # same port: Redis is back, empty
            clock.now += 5.0
            assert await cache.get_or_compute("m/1", b"a", counting(b"A", calls)) == (b"A", False)
            assert await cache.get_or_compute("m/1", b"a", counting(b"A", calls)) == (b"A", True)
        finally:
            await cache.aclose()

    run(go())
    assert calls == [b"A"] * 4 + [b"B", b"A"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, "one warning per outage"
    assert "computing results without it" in warnings[0].getMessage()
    assert any("answers again" in r.getMessage() for r in caplog.records)
    assert PASSWORD not in caplog.text
    assert ":***@127.0.0.1" in caplog.text


def test_an_unreachable_redis_never_fails_a_prediction(caplog: pytest.LogCaptureFixture) -> None:
    _need_redis_package()

    async def go() -> tuple[bytes, bool]:
        cache = RedisCache(f"redis://127.0.0.1:{_free_port()}/0", 60.0)  # nothing listens there
        try:
            return await cache.get_or_compute("m/1", b"a", counting(b"A", []))
        finally:
            await cache.aclose()

    assert run(go()) == (b"A", False)
    assert "Redis result cache" in caplog.text


def test_a_redis_that_never_answers_times_out_into_computing() -> None:
    _need_redis_package()
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]

        async def go() -> tuple[bytes, bool]:
            cache = RedisCache(f"redis://127.0.0.1:{port}/0", 60.0, timeout_s=0.2)
            try:
                return await cache.get_or_compute("m/1", b"a", counting(b"A", []))
            finally:
                await cache.aclose()

        assert run(go()) == (b"A", False)
