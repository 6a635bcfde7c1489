"""The in-process result cache: keys, bounds, TTL, invalidation, single-flight, settings.

Async tests run through `run()`, which also fails a test that leaves a task behind or lets
asyncio report an unretrieved future. Concurrency is synchronised on events; `settle()` only
yields to the loop so tasks already scheduled reach their next await (no timed sleeps).
"""

from __future__ import annotations

import asyncio
import gc
import sys
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from threadline.errors import InvalidArgument
from threadline.serving.cache import (
    CacheSettings,
    ResultCache,
    cache_digest,
    open_cache,
    redact_url,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run `coro` in a fresh loop; fail on leaked tasks or asyncio-reported errors."""
    reported: list[dict[str, Any]] = []

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: reported.append(context))
        result = await coro
        gc.collect()  # an unretrieved future exception is reported when the future is collected
        await settle()
        leaked = asyncio.all_tasks() - {asyncio.current_task()}
        assert not leaked, f"tasks left running: {leaked}"
        return result

    result = asyncio.run(main())
    assert not reported, reported
    return result


async def settle() -> None:
    """Let every ready task run to its next await."""
    for _ in range(5):
        await asyncio.sleep(0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def const(value: bytes, calls: list[bytes] | None = None) -> Callable[[], Awaitable[bytes]]:
    async def compute() -> bytes:
        if calls is not None:
            calls.append(value)
        return value

    return compute


def make(max_entries: int = 100, max_bytes: int = 1 << 20, ttl_s: float | None = 60.0,
         clock: FakeClock | None = None) -> ResultCache:
    return ResultCache(max_entries, max_bytes, ttl_s, clock=clock or FakeClock())


def test_miss_then_hit_counts_and_computes_once() -> None:
    cache = make()
    calls: list[bytes] = []

    async def go() -> list[tuple[bytes, bool]]:
        return [await cache.get_or_compute("churn/3", b"row", const(b"[1]", calls)) for _ in range(3)]

    assert run(go()) == [(b"[1]", False), (b"[1]", True), (b"[1]", True)]
    assert calls == [b"[1]"]
    assert (cache.hits, cache.misses, cache.entries, cache.size_bytes) == (2, 1, 1, 3)


def test_get_or_compute_now_answers_without_waiting_or_hands_over() -> None:
    cache = make()
    calls: list[str] = []

    def now(value: bytes | None) -> Callable[[], bytes | None]:
        def compute() -> bytes | None:
            calls.append("now")
            return value
        return compute

    assert cache.get_or_compute_now("churn/3", b"row", now(None)) is None  # cannot answer now
    assert (cache.hits, cache.misses, cache.entries) == (0, 0, 0)
    assert cache.get_or_compute_now("churn/3", b"row", now(b"[1]")) == (b"[1]", False)
    assert cache.get_or_compute_now("churn/3", b"row", now(b"[2]")) == (b"[1]", True)
    assert cache.get_or_compute_now("churn/4", b"row", now(b"[4]")) == (b"[4]", False)  # per version
    assert calls == ["now", "now", "now"]
    assert (cache.hits, cache.misses, cache.entries) == (1, 2, 2)

    def broken() -> bytes | None:
        raise ValueError("model failed")

    with pytest.raises(ValueError, match="model failed"):
        cache.get_or_compute_now("churn/3", b"other", broken)
    assert (cache.misses, cache.entries) == (3, 2)  # counted as get_or_compute counts it

    async def go() -> tuple[bytes, bool] | None:
        started, release = asyncio.Event(), asyncio.Event()

        async def slow() -> bytes:
            started.set()
            await release.wait()
            return b"[9]"

        leader = asyncio.create_task(cache.get_or_compute("churn/3", b"busy", slow))
        await started.wait()
        during = cache.get_or_compute_now("churn/3", b"busy", now(b"[0]"))  # in flight: wait for it
        release.set()
        assert await leader == (b"[9]", False)
        return during

    assert run(go()) is None
    assert cache.get_or_compute_now("churn/3", b"busy", now(b"[0]")) == (b"[9]", True)


def test_alias_move_never_serves_the_previous_versions_answer() -> None:
    cache = make()
    alias = {"churn@prod": "churn/3"}

    async def predict(rows: bytes) -> tuple[bytes, bool]:
        version = alias["churn@prod"]
        return await cache.get_or_compute(version, rows, const(f"answer of {version}".encode()))

    async def go() -> list[tuple[bytes, bool]]:
        first = await predict(b"same rows")
        alias["churn@prod"] = "churn/4"
        moved = await predict(b"same rows")
        again = await predict(b"same rows")
        alias["churn@prod"] = "churn/3"
        back = await predict(b"same rows")
        return [first, moved, again, back]

    assert run(go()) == [(b"answer of churn/3", False), (b"answer of churn/4", False),
                         (b"answer of churn/4", True), (b"answer of churn/3", True)]


def test_keys_are_16_byte_digests_that_separate_version_from_input() -> None:
    assert len(cache_digest("churn/3", b"x" * 10_000)) == 16
    # moving bytes across the version/input boundary must not collide
    assert cache_digest("a/1", b"2x") != cache_digest("a/12", b"x")
    assert cache_digest("a/1", b"x") == cache_digest("a/1", b"x")
    cache = make()
    run(cache.get_or_compute("churn/3", b"secret raw input", const(b"v")))
    assert all(len(key) == 16 for key in cache._entries)  # no raw input kept


def test_lru_evicts_the_least_recently_used_and_a_hit_refreshes() -> None:
    cache = make(max_entries=2)
    calls: list[bytes] = []

    async def go() -> None:
        await cache.get_or_compute("m/1", b"a", const(b"A", calls))
        await cache.get_or_compute("m/1", b"b", const(b"B", calls))
        await cache.get_or_compute("m/1", b"a", const(b"A", calls))  # hit: a is newest now
        await cache.get_or_compute("m/1", b"c", const(b"C", calls))  # evicts b
        assert (await cache.get_or_compute("m/1", b"a", const(b"A", calls)))[1] is True
        assert (await cache.get_or_compute("m/1", b"b", const(b"B", calls)))[1] is False

    run(go())
    assert calls == [b"A", b"B", b"C", b"B"]
    assert cache.evictions == 2
    assert cache.entries == 2


def test_byte_bound_evicts_and_an_oversized_value_is_served_but_not_stored() -> None:
    cache = make(max_bytes=10)

    async def go() -> None:
        await cache.get_or_compute("m/1", b"a", const(b"x" * 4))
        await cache.get_or_compute("m/1", b"b", const(b"y" * 4))
        assert cache.size_bytes == 8
        await cache.get_or_compute("m/1", b"c", const(b"z" * 4))  # 12 > 10: evict a
        assert (cache.size_bytes, cache.entries, cache.evictions) == (8, 2, 1)
        assert await cache.get_or_compute("m/1", b"big", const(b"w" * 11)) == (b"w" * 11, False)
        assert (cache.size_bytes, cache.entries) == (8, 2)
        assert (await cache.get_or_compute("m/1", b"big", const(b"w" * 11)))[1] is False

    run(go())


def test_expired_entries_are_not_served() -> None:
    clock = FakeClock()
    cache = make(ttl_s=10.0, clock=clock)

    async def go() -> list[bool]:
        hits = [(await cache.get_or_compute("m/1", b"a", const(b"old")))[1]]
        clock.now += 9.999
        hits.append((await cache.get_or_compute("m/1", b"a", const(b"old")))[1])
        clock.now += 0.001
        value, hit = await cache.get_or_compute("m/1", b"a", const(b"new"))
        assert value == b"new"
        hits.append(hit)
        return hits

    assert run(go()) == [False, True, False]
    assert (cache.expirations, cache.entries, cache.size_bytes) == (1, 1, 3)


def test_without_ttl_entries_never_expire() -> None:
    clock = FakeClock()
    cache = make(ttl_s=None, clock=clock)
    run(cache.get_or_compute("m/1", b"a", const(b"v")))
    clock.now += 1e9
    assert run(cache.get_or_compute("m/1", b"a", const(b"other"))) == (b"v", True)


def test_invalidate_one_version_or_all() -> None:
    cache = make()

    async def fill() -> None:
        for version in ("m/1", "m/2"):
            for rows in (b"a", b"b"):
                await cache.get_or_compute(version, rows, const(version.encode()))

    run(fill())
    assert cache.invalidate("m/1") == 2
    assert (cache.entries, cache.size_bytes) == (2, 6)
    assert cache.invalidate("m/1") == 0
    assert run(cache.get_or_compute("m/2", b"a", const(b"x"))) == (b"m/2", True)
    assert run(cache.get_or_compute("m/1", b"a", const(b"x"))) == (b"x", False)
    assert cache.invalidate() == 3
    assert (cache.entries, cache.size_bytes) == (0, 0)


def test_a_computation_in_flight_when_its_version_is_invalidated_stores_nothing() -> None:
    cache = make()

    async def go() -> None:
        started, release = asyncio.Event(), asyncio.Event()

        async def slow() -> bytes:
            started.set()
            await release.wait()
            return b"stale"

        async def other() -> bytes:
            return b"kept"

        task = asyncio.create_task(cache.get_or_compute("m/1", b"a", slow))
        other_task = asyncio.create_task(cache.get_or_compute("m/2", b"a", other))
        await started.wait()
        cache.invalidate("m/1")
        release.set()
        assert await task == (b"stale", False)  # the caller still gets its answer
        assert await other_task == (b"kept", False)
        assert (await cache.get_or_compute("m/1", b"a", const(b"fresh")))[0] == b"fresh"
        assert (await cache.get_or_compute("m/2", b"a", const(b"x"))) == (b"kept", True)

    run(go())


async def _leader_and_followers(
    cache: ResultCache, compute: Callable[[], Awaitable[bytes]], started: asyncio.Event,
    followers: int,
) -> tuple[asyncio.Task[tuple[bytes, bool]], list[asyncio.Task[tuple[bytes, bool]]]]:
    leader = asyncio.create_task(cache.get_or_compute("m/1", b"same", compute))
    await started.wait()
    tasks = [asyncio.create_task(cache.get_or_compute("m/1", b"same", compute))
             for _ in range(followers)]
    await settle()  # every follower is now waiting on the leader's flight
    assert cache.in_flight == 1
    return leader, tasks


def test_concurrent_identical_misses_compute_once() -> None:
    cache = make()
    calls: list[int] = []

    async def go() -> list[tuple[bytes, bool]]:
        started, release = asyncio.Event(), asyncio.Event()

        async def compute() -> bytes:
            calls.append(1)
            started.set()
            await release.wait()
            return b"v"

        leader, followers = await _leader_and_followers(cache, compute, started, 4)
        release.set()
        return [await leader] + [await t for t in followers]

    assert run(go()) == [(b"v", False)] + [(b"v", True)] * 4
    assert calls == [1]
    assert (cache.misses, cache.hits, cache.in_flight) == (1, 4, 0)


def test_a_failing_leader_fails_its_followers_and_nothing_is_stored() -> None:
    cache = make()
    calls: list[int] = []

    async def go() -> None:
        started, release = asyncio.Event(), asyncio.Event()

        async def compute() -> bytes:
            calls.append(1)
            started.set()
            await release.wait()
            raise RuntimeError("model exploded")

        leader, followers = await _leader_and_followers(cache, compute, started, 3)
        release.set()
        for task in [leader, *followers]:
            with pytest.raises(RuntimeError, match="model exploded"):
                await task
        assert await cache.get_or_compute("m/1", b"same", const(b"ok")) == (b"ok", False)

    run(go())
    assert calls == [1]
    assert (cache.entries, cache.in_flight) == (1, 0)


def test_a_failure_nobody_waits_for_is_not_reported_as_unretrieved() -> None:
    cache = make()

    async def boom() -> bytes:
        raise ValueError("bad rows")

    async def go() -> None:
        with pytest.raises(ValueError, match="bad rows"):
            await cache.get_or_compute("m/1", b"a", boom)

    run(go())  # run() fails on "Future exception was never retrieved"


def test_a_cancelled_leader_hands_over_to_one_follower() -> None:
    cache = make()
    calls: list[str] = []

    async def go() -> list[tuple[bytes, bool]]:
        started, never = asyncio.Event(), asyncio.Event()
        retried = asyncio.Event()

        async def compute() -> bytes:
            if not calls:
                calls.append("leader")
                started.set()
                await never.wait()  # cancelled here
            calls.append("follower")
            retried.set()
            return b"v"

        leader, followers = await _leader_and_followers(cache, compute, started, 3)
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        await retried.wait()
        return [await t for t in followers]

    results = run(go())
    assert calls == ["leader", "follower"]
    assert sorted(results) == [(b"v", False), (b"v", True), (b"v", True)]
    assert (cache.in_flight, cache.entries) == (0, 1)


def test_a_cancelled_follower_does_not_cancel_the_leader() -> None:
    cache = make()

    async def go() -> None:
        started, release = asyncio.Event(), asyncio.Event()

        async def compute() -> bytes:
            started.set()
            await release.wait()
            return b"v"

        leader, (quitter, stayer) = await _leader_and_followers(cache, compute, started, 2)
        quitter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await quitter
        release.set()
        assert await leader == (b"v", False)
        assert await stayer == (b"v", True)

    run(go())
    assert cache.in_flight == 0


def test_a_deadline_on_the_leader_leaves_followers_served() -> None:
    cache = make()

    async def go() -> tuple[bytes, bool]:
        started, release = asyncio.Event(), asyncio.Event()

        async def compute() -> bytes:
            started.set()
            await release.wait()
            return b"v"

        async def with_deadline() -> tuple[bytes, bool]:
            async with asyncio.timeout(0):  # already expired: cancelled at its first await
                return await cache.get_or_compute("m/1", b"same", compute)

        leader = asyncio.create_task(with_deadline())
        follower = asyncio.create_task(cache.get_or_compute("m/1", b"same", compute))
        with pytest.raises(TimeoutError):
            await leader
        release.set()
        return await follower

    assert run(go()) == (b"v", False)
    assert cache.in_flight == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["m/1", "m/2"]), st.integers(0, 5),
                          st.integers(1, 6)), max_size=40))
def test_lru_matches_a_reference_model(ops: list[tuple[str, int, int]]) -> None:
    cache = make(max_entries=4, max_bytes=12)
    model: dict[tuple[str, int], bytes] = {}  # insertion order = recency

    async def go() -> None:
        for version, row, size in ops:
            value = bytes([row]) * size
            got, hit = await cache.get_or_compute(version, bytes([row]), const(value))
            key = (version, row)
            assert hit == (key in model)
            if hit:
                assert got == model[key]
                model[key] = model.pop(key)
            else:
                model[key] = value
                while len(model) > 4 or sum(map(len, model.values())) > 12:
                    del model[next(iter(model))]
            assert cache.entries == len(model)
            assert cache.size_bytes == sum(map(len, model.values()))

    run(go())


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"max_entries": 0, "max_bytes": 1, "ttl_s": None}, "'max_entries' must be a positive integer"),
    ({"max_entries": 1, "max_bytes": 1.5, "ttl_s": None}, "'max_bytes' must be a positive integer"),
    ({"max_entries": 1, "max_bytes": 1, "ttl_s": -1.0}, "'ttl_s' must be a positive number"),
])
def test_result_cache_rejects_bad_bounds(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        ResultCache(**kwargs)


def test_settings_defaults_and_parsing() -> None:
    assert CacheSettings.from_dict({}) == CacheSettings(True, 10_000, 64 * 1024 * 1024, 300.0, None)
    parsed = CacheSettings.from_dict({"enabled": False, "max_entries": 5, "ttl_s": 2, "redis_url": None})
    assert parsed == CacheSettings(enabled=False, max_entries=5, ttl_s=2.0)
    assert CacheSettings.from_dict({"ttl_s": None}).ttl_s is None


@pytest.mark.parametrize(("d", "match"), [
    ({"size": 1}, r"unknown cache setting 'size'; allowed: enabled, max_entries, max_bytes, ttl_s, "
                  r"redis_url"),
    ({"enabled": "yes"}, r"'enabled' must be true or false, not 'yes'"),
    ({"max_entries": True}, r"'max_entries' must be a positive integer, not True"),
    ({"max_bytes": -5}, r"'max_bytes' must be a positive integer, not -5"),
    ({"ttl_s": "5m"}, r"'ttl_s' must be a positive number of seconds, not '5m'"),
    ({"redis_url": "http://cache:6379"}, r"'redis_url' must be a redis://, rediss:// or unix://"),
    ({"redis_url": "http://u:hunter2@cache:6379"}, r"u:\*\*\*@cache:6379"),
])
def test_settings_errors_name_the_key_and_allowed_values(d: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match) as info:
        CacheSettings.from_dict(d)
    assert "hunter2" not in str(info.value)


def test_open_cache_picks_the_backend() -> None:
    assert open_cache(CacheSettings(enabled=False)) is None
    local = open_cache(CacheSettings(max_entries=7, max_bytes=99, ttl_s=None))
    assert isinstance(local, ResultCache)
    assert (local.max_entries, local.max_bytes, local.ttl_s) == (7, 99, None)


def test_open_cache_without_the_redis_extra_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(InvalidArgument, match=r"a Redis cache needs 'pip install threadline\[redis\]'"):
        open_cache(CacheSettings(redis_url="redis://127.0.0.1:6379/0"))


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert redact_url("rediss://user:pw@h/1") == "rediss://user:***@h/1"
    assert redact_url("redis://h:6379") == "redis://h:6379"
