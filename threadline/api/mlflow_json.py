"""Threadline records in MLflow's REST JSON, and MLflow's request values in Threadline's terms.

MLflow's wire format is the proto3 JSON of `service.proto` and `model_registry.proto` with the
original (snake_case) field names. Ids: an experiment id is the decimal string of our integer
id, and MLflow's default experiment "0" stands for our `Default` experiment; run ids are our
32-hex ids. Times are milliseconds on both sides. A run's artifacts live at
`mlflow-artifacts:/<experiment>/<run>/artifacts`, which the MLflow client resolves to this
server's artifact proxy (`mlflow_artifacts.py`).

Dataset inputs (`runs/log-inputs`) have no Threadline equivalent (Threadline inputs are data
commits), so each dataset is kept as a run tag `mlflow.dataset.<hash>` holding its JSON and is
given back as a dataset input, not as a tag. Likewise the records of a run's logged models
(reserved tags `threadline.model.<id>`, see `tracking/logged_models.py`) are not tags to MLflow:
they come back as the run's `outputs`.
"""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING, Any

import orjson

from threadline.api.http import int_param
from threadline.errors import InvalidArgument
from threadline.tracking.logged_models import MODEL_TAG, of_run
from threadline.tracking.model import DEFAULT_EXPERIMENT, Metric, now_ms

if TYPE_CHECKING:
    from threadline.registry.records import ModelVersion, RegisteredModel
    from threadline.tracking.model import Experiment, Run, RunInfo
    from threadline.tracking.store import TrackingStore

DATASET_TAG = "mlflow.dataset."
RUN_NAME_TAG = "mlflow.runName"
PARENT_TAG = "mlflow.parentRunId"
#: the id MLflow clients use for the default experiment
MLFLOW_DEFAULT_ID = "0"
VIEW_TYPES = {"ACTIVE_ONLY": "active", "DELETED_ONLY": "deleted", "ALL": "all",
              "1": "active", "2": "deleted", "3": "all"}
_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def experiment_id(store: TrackingStore, value: Any) -> int:
    """Our experiment id for an MLflow experiment id ("0" is the `Default` experiment)."""
    text = str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else ""
    if text == MLFLOW_DEFAULT_ID:
        return store.experiment(DEFAULT_EXPERIMENT).id
    if not text.isdigit():
        raise InvalidArgument(f"experiment_id must be a decimal id such as '1', not {value!r}")
    return int(text)


def view(value: Any) -> str:
    """Our view name for an MLflow `ViewType` (name or number); missing means active only."""
    if value is None or value == "":
        return "active"
    found = VIEW_TYPES.get(str(value).upper())
    if found is None:
        raise InvalidArgument(f"view type must be ACTIVE_ONLY, DELETED_ONLY or ALL, not {value!r}")
    return found


def artifact_root(info: RunInfo) -> str:
    """The MLflow artifact URI of a run (served by this server's artifact proxy)."""
    return f"mlflow-artifacts:/{info.experiment_id}/{info.id}/artifacts"


def _pairs(items: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in items.items()]


def number(value: float) -> float | str:
    """A double as proto3 JSON writes it: NaN and infinities as strings."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def metric_json(metric: Metric, run_id: str | None = None) -> dict[str, Any]:
    """One metric point."""
    out: dict[str, Any] = {"key": metric.key, "value": number(metric.value),
                           "timestamp": metric.timestamp, "step": metric.step}
    if run_id is not None:
        out["run_id"] = run_id
    return out


def experiment_json(exp: Experiment) -> dict[str, Any]:
    """An experiment."""
    return {
        "experiment_id": str(exp.id), "name": exp.name,
        "artifact_location": f"mlflow-artifacts:/{exp.id}", "lifecycle_stage": exp.lifecycle_stage,
        "creation_time": exp.created_at, "last_update_time": exp.updated_at,
        "tags": _pairs(exp.tags),
    }


def run_info_json(info: RunInfo) -> dict[str, Any]:
    """A run's info."""
    out: dict[str, Any] = {
        "run_id": info.id, "run_uuid": info.id, "run_name": info.name,
        "experiment_id": str(info.experiment_id), "user_id": info.user, "status": info.status,
        "start_time": info.start_time, "artifact_uri": artifact_root(info),
        "lifecycle_stage": info.lifecycle_stage,
    }
    if info.end_time is not None:
        out["end_time"] = info.end_time
    return out


def run_json(run: Run) -> dict[str, Any]:
    """A run with its data, dataset inputs and the logged models it output."""
    tags = {k: v for k, v in run.tags.items()
            if not k.startswith(DATASET_TAG) and not k.startswith(MODEL_TAG)}
    datasets = [orjson.loads(v) for k, v in run.tags.items() if k.startswith(DATASET_TAG)]
    outputs = [{"model_id": m.id, "step": m.outputs[run.info.id]} for m in of_run(run.tags)
               if run.info.id in m.outputs and m.lifecycle_stage == "active"]
    return {
        "info": run_info_json(run.info),
        "data": {"metrics": [metric_json(m) for m in run.metrics.values()],
                 "params": _pairs(run.params), "tags": _pairs(tags)},
        "inputs": {"dataset_inputs": datasets},
        "outputs": {"model_outputs": outputs},
    }


def parse_metric(item: Any) -> Metric:
    """A metric point from MLflow's JSON (`value` may be "NaN" or "Infinity")."""
    if not isinstance(item, dict):
        raise InvalidArgument(f"a metric must be an object with key, value, timestamp, step; got {item!r}")
    key = item.get("key")
    value = item.get("value")
    if isinstance(value, str) and value in _SPECIAL:
        value = _SPECIAL[value]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgument(f"metric {key!r} must have a numeric value, not {value!r}")
    timestamp = int_param(item.get("timestamp"), "timestamp")
    step = int_param(item.get("step"), "step", 0)
    return Metric(str(key) if key is not None else "", float(value),
                  now_ms() if timestamp is None else timestamp, step or 0)


def parse_pairs(items: Any, what: str) -> dict[str, str]:
    """`[{"key": k, "value": v}, ...]` as a dict (params, tags)."""
    if items is None:
        return {}
    if not isinstance(items, list):
        raise InvalidArgument(f"{what} must be a list of {{key, value}} objects")
    out: dict[str, str] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise InvalidArgument(f"each of {what} must be an object with a string key, not {item!r}")
        value = item.get("value", "")
        out[item["key"]] = "" if value is None else str(value)
    return out


def dataset_tags(datasets: Any) -> dict[str, str]:
    """Run tags recording MLflow dataset inputs (one tag per name and digest)."""
    if not isinstance(datasets, list):
        raise InvalidArgument("datasets must be a list of dataset inputs")
    out: dict[str, str] = {}
    for item in datasets:
        dataset = item.get("dataset") if isinstance(item, dict) else None
        if not isinstance(dataset, dict) or not dataset.get("name"):
            raise InvalidArgument(f"a dataset input needs a dataset with a name, not {item!r}")
        name, digest = str(dataset.get("name")), str(dataset.get("digest", ""))
        key = hashlib.blake2b(f"{name}\0{digest}".encode(), digest_size=8).hexdigest()
        kept = {"dataset": dataset, "tags": item.get("tags") or []}
        text = orjson.dumps(kept).decode()
        if len(text) > 8000:  # a large schema or profile does not fit a tag: keep the identity
            small = {k: dataset[k] for k in ("name", "digest", "source_type", "source") if k in dataset}
            text = orjson.dumps({"dataset": small, "tags": kept["tags"]}).decode()[:8000]
        out[DATASET_TAG + key] = text
    return out


def version_json(version: ModelVersion, source: str) -> dict[str, Any]:
    """A registry version as an MLflow model version; `source` is where its files are."""
    return {
        "name": version.name, "version": str(version.version),
        "creation_timestamp": version.created_at, "last_updated_timestamp": version.created_at,
        "user_id": version.created_by, "current_stage": "None", "description": version.description,
        "source": source, "run_id": version.run_id or "", "status": "READY", "tags": [],
        "aliases": list(version.aliases), "run_link": "",
    }


def model_json(model: RegisteredModel, latest: dict[str, Any] | None) -> dict[str, Any]:
    """A registered model with its aliases and latest version."""
    return {
        "name": model.name, "creation_timestamp": model.created_at,
        "last_updated_timestamp": model.updated_at, "description": model.description,
        "tags": _pairs(model.tags),
        "aliases": [{"alias": a, "version": str(v)} for a, v in sorted(model.aliases.items())],
        "latest_versions": [latest] if latest is not None else [],
    }
