"""Ground truth for served predictions: store labels as they arrive, join them to the log.

Labels go into the deployment's prediction-log repo (`predictions-<deployment>`, branch
`main`) as one Parquet file per call, `feedback/<YYYY-MM-DD>/<uuid>.parquet`, with columns
`request_id`, `row`, `label`, `ts` (epoch ms). A label sent as a list is one label per row of
its request. `join_feedback` pairs each logged prediction row with the latest label sent for
it (by `ts`, then by arrival), which is what monitoring measures live accuracy on.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from threadline.errors import AlreadyExists, InvalidArgument
from threadline.serving.logtable import arrow_column, commit_parquet, concat, read_parquet_files
from threadline.serving.predlog import log_repo, read_log

if TYPE_CHECKING:
    from collections.abc import Sequence

    from threadline.data.repos import DataRepos

__all__ = ["join_feedback", "read_feedback", "record_feedback"]

FORMAT = "threadline.feedback/1"
FEEDBACK_DIR = "feedback"
FIELDS = frozenset({"request_id", "label", "row", "ts"})
MAX_ID = 200


def _is_scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | int | bool)


def _check(index: int, item: Any, now_ms: int) -> list[tuple[str, int, Any, int]]:
    """One item as (request_id, row, label, ts) rows; InvalidArgument names the bad field."""
    where = f"feedback item {index}"
    if not isinstance(item, dict):
        raise InvalidArgument(f"{where}: expected an object with request_id and label, "
                              f"not {type(item).__name__}")
    unknown = sorted(set(item) - FIELDS)
    if unknown:
        raise InvalidArgument(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}; "
                              f"the fields are {', '.join(sorted(FIELDS))}")
    request_id = item.get("request_id")
    if not isinstance(request_id, str) or not request_id or len(request_id) > MAX_ID:
        raise InvalidArgument(f"{where}: field 'request_id' must be the served request's id "
                              f"(a string of 1-{MAX_ID} characters), not {request_id!r}")
    if "label" not in item:
        raise InvalidArgument(f"{where}: field 'label' is missing; give the actual value")
    label, row = item["label"], item.get("row")
    if row is not None and (isinstance(row, bool) or not isinstance(row, int) or row < 0):
        raise InvalidArgument(f"{where}: field 'row' must be an integer >= 0 (the row within "
                              f"the request), not {row!r}")
    ts = item.get("ts", now_ms)
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts) or ts < 0:
        raise InvalidArgument(f"{where}: field 'ts' must be epoch milliseconds, not {ts!r}")
    if isinstance(label, list):
        if row is not None:
            raise InvalidArgument(f"{where}: field 'label' is a list (one label per row), so "
                                  "field 'row' must be left out")
        if not label or not all(_is_scalar(v) for v in label):
            raise InvalidArgument(f"{where}: field 'label' must be a non-empty list of strings, "
                                  "numbers or booleans (one per row of the request)")
        return [(request_id, i, v, int(ts)) for i, v in enumerate(label)]
    if not _is_scalar(label):
        raise InvalidArgument(f"{where}: field 'label' must be a string, number or boolean, or a "
                              f"list of them (one per row), not {label!r}")
    return [(request_id, row or 0, label, int(ts))]


def record_feedback(repos: DataRepos, deployment: str, items: Sequence[Any]) -> int:
    """Validate and commit labels for served requests; returns how many labels were stored.

    Args:
        repos: the data layer.
        deployment: the deployment that served the requests.
        items: `{"request_id": str, "label": value or [value per row], "row": int (optional,
            default 0), "ts": epoch ms (optional, default now)}` each.

    Raises:
        InvalidArgument: an item is malformed (the message names its index and field);
            nothing is stored then.
    """
    import pyarrow as pa

    if not isinstance(items, list | tuple):
        raise InvalidArgument(f"feedback must be a list of items, not {type(items).__name__}")
    repo = log_repo(deployment)
    now = int(time.time() * 1000)
    rows = [r for index, item in enumerate(items) for r in _check(index, item, now)]
    if not rows:
        return 0
    ids, numbers, labels, stamps = (list(c) for c in zip(*rows, strict=True))
    table = pa.table({"request_id": pa.array(ids, pa.string()), "row": pa.array(numbers, pa.int32()),
                      "label": arrow_column(labels), "ts": pa.array(stamps, pa.int64())})
    table = table.replace_schema_metadata({"threadline.format": FORMAT})
    with contextlib.suppress(AlreadyExists):  # the log's first flush may have created it
        repos.create(repo, f"prediction log and feedback of deployment {deployment}")
    day = datetime.fromtimestamp(now / 1000, UTC).strftime("%Y-%m-%d")
    commit_parquet(repos, repo, f"{FEEDBACK_DIR}/{day}", f"{time_ordered_id()}.parquet", table,
                   f"{len(rows)} labels for {len(set(ids))} requests of {deployment}",
                   {"format": FORMAT, "deployment": deployment, "labels": len(rows),
                    "requests": len(set(ids))})
    return len(rows)


def _empty() -> Any:
    import pyarrow as pa

    return pa.schema([("request_id", pa.string()), ("row", pa.int32()), ("label", pa.null()),
                      ("ts", pa.int64())]).empty_table()


def read_feedback(repos: DataRepos, deployment: str) -> Any:
    """Every label stored for the deployment, in arrival order, as a pyarrow Table.

    Raises:
        NotFound: nothing was ever logged or sent for the deployment.
    """
    # path order is arrival order: files are named by time-ordered ids (see `time_ordered_id`)
    tables, _ = read_parquet_files(repos, log_repo(deployment), FEEDBACK_DIR)
    return concat(tables, _empty())


_clock_lock = threading.Lock()
_last_ns = 0


def time_ordered_id() -> uuid.UUID:
    """A UUID (version 7 layout) whose text sorts by creation time to the nanosecond, so that
    listing feedback files by name lists them in arrival order (strictly increasing within a
    process; across processes as far as their clocks agree)."""
    global _last_ns  # one clock per process, as uuid7 generators keep
    with _clock_lock:
        ns = _last_ns = max(time.time_ns(), _last_ns + 1)
    ms, sub = divmod(ns, 1_000_000)  # sub < 2**20: 12 bits after the version, 8 after the variant
    value = ((ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (sub >> 8) << 64 | 0b10 << 62
             | (sub & 0xFF) << 54 | int.from_bytes(os.urandom(7), "big") >> 2)
    return uuid.UUID(int=value)


def latest_labels(feedback: Any) -> Any:
    """One label per (request_id, row): the one with the latest `ts` (the last one read among
    equal stamps)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if feedback.num_rows == 0:
        return feedback
    # Arrow's sort is stable: among equal stamps the later arrival stays later
    ordered = feedback.take(pc.sort_indices(feedback, sort_keys=[("ts", "ascending")]))
    ordered = ordered.append_column("_order", pa.array(range(ordered.num_rows), pa.int64()))
    last = ordered.group_by(["request_id", "row"]).aggregate([("_order", "max")])
    return ordered.take(last["_order_max"]).drop_columns("_order")


def join_feedback(repos: DataRepos, deployment: str) -> Any:
    """The prediction log with each row's latest label (`label`, `label_ts`; null if none yet),
    matched on (request_id, row); rows in log order."""
    import pyarrow as pa

    predictions = read_log(repos, deployment)
    labels = latest_labels(read_feedback(repos, deployment))
    keys = predictions.select(["request_id", "row"]).append_column(
        "_pos", pa.array(range(predictions.num_rows), pa.int64()))
    right = labels.select(["request_id", "row"]).append_column(
        "_label", pa.array(range(labels.num_rows), pa.int64()))
    right = right.set_column(1, "row", right["row"].cast(pa.int32()))
    keys = keys.set_column(1, "row", keys["row"].cast(pa.int32()))
    # joined on keys and positions only: Arrow's join refuses some types (null, lists) among
    # the fields it carries, and does not keep row order; the labels are taken by position
    joined = keys.join(right, ["request_id", "row"], join_type="left outer").sort_by("_pos")
    where = joined["_label"]
    return predictions.append_column("label", labels["label"].take(where)).append_column(
        "label_ts", labels["ts"].take(where))
