"""Bulk import of finished runs in one transaction: migrations from other trackers, seeding.

Logging through `log_batch` costs one transaction per call; importing 100,000 runs from an
MLflow export that way would take minutes. Here every table is written with one executemany
per table, and `latest_metrics` is derived from the points given.
"""

from __future__ import annotations

import json
import math
import uuid
from typing import TYPE_CHECKING, Any

from threadline.errors import InvalidArgument
from threadline.tracking.model import (
    ACTIVE,
    MAX_PARAM_VALUE,
    MAX_TAG_VALUE,
    STATUSES,
    check_key,
    check_metric_value,
    check_value,
)
from threadline.tracking.search import LATEST, PARAMS, RUNS, TAGS

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy import Table

    from threadline.meta.db import Database
    from threadline.tracking.model import Run

_CHUNK = 20_000  # rows per executemany, to bound memory on very large imports


def _rows(experiment_id: int, run: Run, keys: set[str]) -> dict[str, list[dict[str, Any]]]:
    info = run.info
    if info.status not in STATUSES:
        raise InvalidArgument(f"run status must be one of {', '.join(STATUSES)}, not {info.status!r}")
    run_id = info.id or uuid.uuid4().hex
    out: dict[str, list[dict[str, Any]]] = {
        "runs": [{
            "id": run_id, "experiment_id": experiment_id, "parent_id": info.parent_id,
            "name": info.name, "status": info.status, "lifecycle_stage": ACTIVE, "user": info.user,
            "start_time": info.start_time, "end_time": info.end_time, "artifact_commit": None,
            "source": json.loads(json.dumps(info.source)),
        }],
        "params": [], "tags": [], "metrics": [], "latest": [],
    }
    for key, value in run.params.items():
        if key not in keys:
            keys.add(check_key(key, "param key"))
        out["params"].append({"run_id": run_id, "key": key,
                              "value": check_value(key, value, MAX_PARAM_VALUE, "param")})
    for key, value in run.tags.items():
        if key not in keys:
            keys.add(check_key(key, "tag key"))
        out["tags"].append({"run_id": run_id, "key": key,
                            "value": check_value(key, value, MAX_TAG_VALUE, "tag")})
    for key, metric in run.metrics.items():
        if key not in keys:
            keys.add(check_key(key, "metric key"))
        number = check_metric_value(key, metric.value)
        row = {"run_id": run_id, "key": key, "value": None if math.isnan(number) else number,
               "step": metric.step, "timestamp": metric.timestamp}
        out["metrics"].append(row)
        out["latest"].append(row)
    return out


def import_runs(db: Database, metrics_table: Table, experiment_id: int,
                runs: Sequence[Run]) -> list[str]:
    """Insert `runs` (with their params, tags and one point per metric) in one transaction.

    A run whose `info.id` is empty gets a new uuid4 hex id. Returns the ids in order.
    """
    keys: set[str] = set()
    tables: dict[str, list[dict[str, Any]]] = {
        "runs": [], "params": [], "tags": [], "metrics": [], "latest": []}
    for run in runs:
        for name, rows in _rows(experiment_id, run, keys).items():
            tables[name].extend(rows)
    targets = {"runs": RUNS, "params": PARAMS, "tags": TAGS, "metrics": metrics_table,
               "latest": LATEST}
    with db.session() as session, session.begin():
        for name, rows in tables.items():
            for i in range(0, len(rows), _CHUNK):
                session.execute(targets[name].insert(), rows[i : i + _CHUNK])
    return [row["id"] for row in tables["runs"]]

