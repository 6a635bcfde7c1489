"""A worker process keeps its data layer open between jobs, and notices a home made anew."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Any

import pytest

from threadline.config import init_home, load_settings
from threadline.pipelines import worker

if TYPE_CHECKING:
    from threadline.data.repos import DataRepos


def _job() -> dict[str, Any]:
    settings = load_settings()
    return {"home": str(settings.home), "database_url": settings.database_url,
            "store_url": settings.store_url, "step": {"name": "t"}}


def test_a_worker_reuses_its_connection_and_reopens_a_recreated_home(home: DataRepos) -> None:
    home.create("kept", description="in the first home")
    job = _job()
    with worker._workspace(job, "test") as (first, _scratch):
        assert [r.name for r in first.repos.list()] == ["kept"]
    with worker._workspace(job, "test") as (again, _scratch):
        assert again is first  # kept open for the next job

    home.close()
    shutil.rmtree(load_settings().home)
    fresh = init_home()  # same path, another database
    with worker._workspace(job, "test") as (reopened, _scratch):
        assert reopened is not first
        assert reopened.repos.list() == []
    assert fresh.home == load_settings().home


def test_a_failed_job_drops_the_connection(home: DataRepos) -> None:
    job = _job()
    with worker._workspace(job, "test") as (first, _scratch):
        pass
    seen = []

    def failing_step() -> None:
        with worker._workspace(job, "test") as (same, _scratch):
            seen.append(same)
            raise RuntimeError("the step failed")

    with pytest.raises(RuntimeError, match="the step failed"):
        failing_step()
    assert seen == [first]
    with worker._workspace(job, "test") as (after, _scratch):
        assert after is not first
