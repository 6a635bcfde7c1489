"""Deleting run tags and experiment tags: what goes, what stays, and every refusal."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from threadline.errors import InvalidArgument, NotFound
from threadline.tracking.store import TrackingStore

if TYPE_CHECKING:
    from threadline.data.repos import DataRepos


@pytest.fixture
def store(home: DataRepos) -> TrackingStore:
    return TrackingStore(home)


def test_delete_tag_removes_one_tag_of_a_run(store: TrackingStore) -> None:
    run_id = store.create_run(store.experiment().id, tags={"team": "ml", "stage": "dev"}).id
    store.delete_tag(run_id, "team")
    assert store.get_run(run_id).tags == {"stage": "dev"}
    with pytest.raises(NotFound, match=f"run {run_id} has no tag 'team'"):
        store.delete_tag(run_id, "team")
    other = store.create_run(store.experiment().id, tags={"team": "ml"}).id
    assert store.get_run(other).tags == {"team": "ml"}  # only the named run loses the tag


def test_delete_tag_refuses_threadline_tags_and_bad_keys(store: TrackingStore) -> None:
    run_id = store.create_run(store.experiment().id).id
    with pytest.raises(InvalidArgument, match=r"'threadline\.inputs' is reserved for Threadline"):
        store.delete_tag(run_id, "threadline.inputs")
    with pytest.raises(InvalidArgument, match="tag key"):
        store.delete_tag(run_id, "bad\nkey")


def test_delete_tag_of_a_missing_or_deleted_run_is_refused(store: TrackingStore) -> None:
    with pytest.raises(NotFound, match=r"run 'f+' does not exist"):
        store.delete_tag("f" * 32, "team")
    run_id = store.create_run(store.experiment().id, tags={"team": "ml"}).id
    store.delete_run(run_id)
    with pytest.raises(InvalidArgument, match="is deleted; restore it before changing its tags"):
        store.delete_tag(run_id, "team")
    store.restore_run(run_id)
    store.delete_tag(run_id, "team")
    assert store.get_run(run_id).tags == {}


def test_delete_experiment_tag(store: TrackingStore) -> None:
    exp = store.experiment("churn")
    store.set_experiment_tag(exp.id, "team", "ml")
    store.set_experiment_tag(exp.id, "owner", "ann")
    before = store.get_experiment(exp.id).updated_at
    store.delete_experiment_tag(exp.id, "team")
    after = store.get_experiment(exp.id)
    assert after.tags == {"owner": "ann"}
    assert after.updated_at >= before
    with pytest.raises(NotFound, match=r"experiment \d+ \('churn'\) has no tag 'team'; its tags are: owner"):
        store.delete_experiment_tag(exp.id, "team")
    with pytest.raises(NotFound, match="experiment 999 does not exist"):
        store.delete_experiment_tag(999, "team")
    with pytest.raises(InvalidArgument, match="tag key"):
        store.delete_experiment_tag(exp.id, "")
