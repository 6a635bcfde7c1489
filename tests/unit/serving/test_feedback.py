"""Ground truth: labels validated and committed beside the prediction log, joined to it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from threadline.errors import InvalidArgument, NotFound
from threadline.serving.feedback import (
    join_feedback,
    read_feedback,
    record_feedback,
    time_ordered_id,
)
from threadline.serving.inputs import Inputs
from threadline.serving.predlog import LogEntry, PredictionLog, log_repo

if TYPE_CHECKING:
    from threadline.data.repos import DataRepos

T0 = 1_780_000_000_000


def served(home: DataRepos, requests: dict[str, list[int]]) -> None:
    """Log one request per id, with the given predictions (one row each)."""
    log = PredictionLog(home, "churn", background=False)
    for n, (request_id, predictions) in enumerate(requests.items()):
        log.record(LogEntry(request_id, T0 + n, "churn", "main", "churn", 1, "primary", 1.0, 200,
                            Inputs.table({"x": list(range(len(predictions)))}), predictions))
    log.close()


def test_labels_are_stored_one_file_per_call(home: DataRepos) -> None:
    assert record_feedback(home, "churn", [{"request_id": "r1", "label": 1},
                                           {"request_id": "r2", "label": [0, 1], "ts": T0}]) == 3
    assert record_feedback(home, "churn", [{"request_id": "r3", "label": "yes", "row": 2}]) == 1
    table = read_feedback(home, "churn")
    rows = sorted(zip(table["request_id"].to_pylist(), table["row"].to_pylist(),
                      table["label"].to_pylist(), strict=True))
    assert rows == [("r1", 0, "1"), ("r2", 0, "0"), ("r2", 1, "1"), ("r3", 2, "yes")]
    head = home.resolve(f"{log_repo('churn')}@main").require_commit()
    paths = [e.path for e in home.manifest(head)]
    assert len(paths) == 2
    assert all(p.startswith("feedback/") for p in paths)
    assert "1 labels for 1 requests of churn" in head.message


def test_an_empty_call_stores_nothing(home: DataRepos) -> None:
    assert record_feedback(home, "churn", []) == 0
    with pytest.raises(NotFound):
        read_feedback(home, "churn")


@pytest.mark.parametrize(("item", "match"), [
    ("r1", r"item 1: expected an object"),
    ({"label": 1}, r"item 1: field 'request_id'"),
    ({"request_id": "", "label": 1}, r"item 1: field 'request_id'"),
    ({"request_id": "r"}, r"item 1: field 'label' is missing"),
    ({"request_id": "r", "label": {"a": 1}}, r"item 1: field 'label' must be"),
    ({"request_id": "r", "label": None}, r"item 1: field 'label' must be"),
    ({"request_id": "r", "label": float("nan")}, r"item 1: field 'label' must be"),
    ({"request_id": "r", "label": []}, r"item 1: field 'label' must be a non-empty list"),
    ({"request_id": "r", "label": [1, [2]]}, r"item 1: field 'label' must be a non-empty list"),
    ({"request_id": "r", "label": [1, 2], "row": 0}, r"item 1: field 'label' is a list"),
    ({"request_id": "r", "label": 1, "row": -1}, r"item 1: field 'row'"),
    ({"request_id": "r", "label": 1, "row": True}, r"item 1: field 'row'"),
    ({"request_id": "r", "label": 1, "ts": "now"}, r"item 1: field 'ts'"),
    ({"request_id": "r", "lable": 1}, r"item 1: unknown field\(s\) 'lable'"),
])
def test_a_bad_item_is_named_and_nothing_is_stored(home: DataRepos, item: Any, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        record_feedback(home, "churn", [{"request_id": "ok", "label": 1}, item])
    with pytest.raises(NotFound):
        read_feedback(home, "churn")


def test_items_must_be_a_list(home: DataRepos) -> None:
    with pytest.raises(InvalidArgument, match="must be a list"):
        record_feedback(home, "churn", {"request_id": "r", "label": 1})  # type: ignore[arg-type]


def test_join_pairs_each_prediction_with_its_latest_label(home: DataRepos) -> None:
    served(home, {"r1": [1], "r2": [0, 1], "r3": [1]})
    record_feedback(home, "churn", [{"request_id": "r1", "label": 0, "ts": T0 + 100},
                                    {"request_id": "r2", "label": [0, 0]}])
    # r1 sent again, later: it wins; the r2 row 1 correction too; "ghost" was never served
    record_feedback(home, "churn", [{"request_id": "r1", "label": 1, "ts": T0 + 200},
                                    {"request_id": "r2", "row": 1, "label": 1},
                                    {"request_id": "ghost", "label": 1}])
    # an older label arriving late does not override a newer one
    record_feedback(home, "churn", [{"request_id": "r1", "label": 0, "ts": T0 + 150}])
    joined = join_feedback(home, "churn")
    assert joined["request_id"].to_pylist() == ["r1", "r2", "r2", "r3"]  # log order, log rows only
    assert joined["row"].to_pylist() == [0, 0, 1, 0]
    assert joined["prediction"].to_pylist() == [1, 0, 1, 1]
    assert joined["label"].to_pylist() == [1, 0, 1, None]
    assert joined["label_ts"].to_pylist()[0] == T0 + 200


def test_among_equal_stamps_the_later_call_wins(home: DataRepos) -> None:
    served(home, {"r": [1]})
    record_feedback(home, "churn", [{"request_id": "r", "label": 0, "ts": T0}])
    record_feedback(home, "churn", [{"request_id": "r", "label": 1, "ts": T0}])
    assert join_feedback(home, "churn")["label"].to_pylist() == [1]


def test_join_without_any_feedback_gives_null_labels(home: DataRepos) -> None:
    served(home, {"r": [1]})
    record_feedback(home, "other", [{"request_id": "r", "label": 1}])
    joined = join_feedback(home, "churn")
    assert joined["label"].to_pylist() == [None]


def test_time_ordered_ids_sort_by_creation() -> None:
    ids = [str(time_ordered_id()) for _ in range(200)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 200
