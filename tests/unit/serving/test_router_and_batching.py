"""Routing shares and stickiness; micro-batching merges concurrent requests and withdraws late ones."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from threadline.serving.admission import Admission, Refused
from threadline.serving.batching import MicroBatcher
from threadline.serving.inputs import Inputs
from threadline.serving.router import RouteTable, Target
from threadline.serving.spec import Route


def _target(name: str, weight: float, mode: str = "primary") -> Target:
    fake: Any = SimpleNamespace(id=name)
    return Target(Route(name, f"m@{name}", weight, mode), fake, fake)


def test_weighted_shares_within_tolerance() -> None:
    table = RouteTable([_target("a", 90), _target("b", 10, "canary")], [], 1)
    picks = [table.choose().route.name for _ in range(20_000)]
    assert abs(picks.count("b") / len(picks) - 0.10) < 0.015


def test_sticky_keys_keep_their_route_and_split_by_weight() -> None:
    table = RouteTable([_target("a", 90), _target("b", 10, "canary")], [], 1)
    keys = [f"user-{i}" for i in range(5000)]
    first = {k: table.choose(k).route.name for k in keys}
    assert all(table.choose(k).route.name == first[k] for k in keys)
    assert abs(list(first.values()).count("b") / len(keys) - 0.10) < 0.02


def test_shadow_copies_by_percent() -> None:
    table = RouteTable([_target("a", 1)], [_target("s", 25, "shadow"), _target("t", 100, "shadow")], 1)
    copies = [[t.route.name for t in table.copies()] for _ in range(8000)]
    assert all("t" in c for c in copies)
    assert abs(sum("s" in c for c in copies) / len(copies) - 0.25) < 0.03


def _rows(n: int, start: float = 0) -> Inputs:
    return Inputs.table({"x": [start + i for i in range(n)]})


def test_lone_request_runs_at_once_and_concurrent_ones_share_calls() -> None:
    calls: list[int] = []
    release = threading.Event()

    def predict(inputs: Inputs) -> Any:
        calls.append(inputs.rows)
        if len(calls) == 1:
            release.wait(10)  # the first call blocks so the others queue behind it
        assert inputs.columns is not None
        return np.asarray(inputs.columns["x"]) * 2

    async def main() -> list[Any]:
        batcher = MicroBatcher(predict, max_rows=64, max_wait=0, seconds_per_call=lambda: 1.0)
        first = asyncio.create_task(batcher.submit(_rows(1, 100)))
        while not calls:
            await asyncio.sleep(0)
        rest = [asyncio.create_task(batcher.submit(_rows(2, 10 * i))) for i in range(5)]
        await asyncio.sleep(0)
        release.set()
        out = await asyncio.gather(first, *rest)
        batcher.close()
        return out

    results = asyncio.run(main())
    assert calls == [1, 10]  # one call alone, then the five queued requests in one call
    assert results[0].tolist() == [200]
    assert [r.tolist() for r in results[1:]] == [[20 * i, 20 * i + 2] for i in range(5)]


def test_batches_respect_max_rows() -> None:
    calls: list[int] = []
    gate = threading.Event()

    def predict(inputs: Inputs) -> Any:
        calls.append(inputs.rows)
        gate.wait(10)
        return np.zeros(inputs.rows)

    async def main() -> None:
        batcher = MicroBatcher(predict, max_rows=4, max_wait=0, seconds_per_call=lambda: 1.0)
        first = asyncio.create_task(batcher.submit(_rows(1)))
        while not calls:
            await asyncio.sleep(0)
        rest = [asyncio.create_task(batcher.submit(_rows(3))) for _ in range(3)]
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(first, *rest)
        batcher.close()

    asyncio.run(main())
    assert calls == [1, 3, 3, 3]


def test_a_withdrawn_request_never_reaches_the_model() -> None:
    seen: list[list[Any]] = []
    gate = threading.Event()

    def predict(inputs: Inputs) -> Any:
        assert inputs.columns is not None
        seen.append(list(inputs.columns["x"]))
        gate.wait(10)
        return np.zeros(inputs.rows)

    async def main() -> None:
        batcher = MicroBatcher(predict, max_rows=64, max_wait=0, seconds_per_call=lambda: 1.0)
        first = asyncio.create_task(batcher.submit(_rows(1, 1)))
        while not seen:
            await asyncio.sleep(0)
        late = asyncio.create_task(batcher.submit(_rows(1, 99)))
        kept = asyncio.create_task(batcher.submit(_rows(1, 5)))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(late, 0.01)  # its deadline passes while queued
        gate.set()
        await asyncio.gather(first, kept)
        batcher.close()

    asyncio.run(main())
    assert seen == [[1], [5]]


def test_model_errors_reach_every_caller_of_the_batch() -> None:
    def predict(inputs: Inputs) -> Any:
        raise ValueError("model exploded")

    async def main() -> None:
        batcher = MicroBatcher(predict, max_rows=8, max_wait=0)
        with pytest.raises(ValueError, match="model exploded"):
            await batcher.submit(_rows(1))
        batcher.close()
        with pytest.raises(RuntimeError, match="unloaded"):
            await batcher.submit(_rows(1))

    asyncio.run(main())


def test_admission_refuses_beyond_concurrency_and_queue() -> None:
    async def main() -> None:
        gate = Admission(max_concurrency=1, max_queue=1)
        await gate.enter()
        waiting = asyncio.create_task(gate.enter())
        await asyncio.sleep(0)
        with pytest.raises(Refused, match="overloaded"):
            await gate.enter()
        gate.leave()
        await waiting
        gate.leave()
        gate.draining = True
        with pytest.raises(Refused, match="draining"):
            await gate.enter()
        assert gate.admitted == 0
        assert gate.refused == 2

    asyncio.run(main())


def test_rate_limiter_gives_each_client_its_own_bucket() -> None:
    from threadline.serving.admission import RateLimiter

    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.retry_after("a") for _ in range(3)] == [None, None, None]
    wait = limiter.retry_after("a")
    assert wait == pytest.approx(0.5)
    assert limiter.retry_after("b") is None  # another client is not held back
    now[0] += 0.5
    assert limiter.retry_after("a") is None
    assert limiter.retry_after("a") == pytest.approx(0.5)
