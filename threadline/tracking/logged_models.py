"""MLflow 3 logged models: a model's record kept on the run that logged it, its files in the run's artifacts.

A logged model always belongs to a source run. Its record (name, status, params, tags, ...) is
one reserved run tag `threadline.model.<model id>` holding versioned JSON, so it lives and dies
with the run, needs no table of its own, and a search is one indexed scan of the tags of the
runs of the searched experiments. Its files are the run's artifacts under
`logged_models/<model id>/`, committed like any other artifact (de-duplicated, in lineage), so
the registry can pin them with `register_external` like files logged by a run.

The model id is `m-` + the source run's id + 8 random hex digits: the run, and so the record,
is found from the id alone with a primary-key lookup. Each change of a record is a
compare-and-swap on the tag's old value, retried, so concurrent updates never lose one another.
"""

from __future__ import annotations

import fnmatch
import json
import re
import secrets
from dataclasses import dataclass, field, replace
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from threadline.errors import Conflict, InvalidArgument, NotFound
from threadline.tracking.model import (
    ACTIVE,
    DELETED,
    MAX_PARAM_VALUE,
    MAX_TAG_VALUE,
    check_key,
    check_value,
    now_ms,
)
from threadline.tracking.search import RUNS, TAGS

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from threadline.tracking.store import TrackingStore

#: run tag holding the record of one logged model (reserved: users cannot set or delete it)
MODEL_TAG = "threadline.model."
#: where in its source run's artifacts a logged model's files are
ARTIFACT_DIR = "logged_models"
#: the format id of the JSON record; readers dispatch on it
FORMAT = 1
PENDING, READY, FAILED = "PENDING", "READY", "FAILED"
STATUSES = (PENDING, READY, FAILED)
MAX_NAME = 250
_ID = re.compile(r"^m-(?P<run>[0-9a-f]{32})[0-9a-f]{8}$")
_RETRIES = 16
_CLAUSE = re.compile(
    r"""^\s*(?:(?P<kind>tags?|params?|metrics?)\.(?P<key>`[^`]+`|"[^"]+"|[\w.\-/: ]+?)
        |(?:attributes?\.)?(?P<attr>[a-z_]+))\s*
        (?P<op>=|!=|<=|>=|<|>|LIKE|ILIKE)\s*
        (?:'(?P<text>(?:[^']|'')*)'|"(?P<dtext>[^"]*)"|(?P<num>-?\d+))\s*$""",
    re.IGNORECASE | re.VERBOSE,
)
#: searchable attributes -> record field
_ATTRS = {"name": "name", "model_id": "id", "source_run_id": "source_run_id", "status": "status",
          "model_type": "model_type", "creation_timestamp": "created_at",
          "creation_time": "created_at", "last_updated_timestamp": "updated_at"}


@dataclass(frozen=True)
class LoggedModel:
    """One logged model (times in milliseconds; `outputs` maps run id -> step it was logged at)."""

    id: str
    experiment_id: int
    name: str
    source_run_id: str
    status: str = PENDING
    status_message: str = ""
    model_type: str = ""
    created_at: int = 0
    updated_at: int = 0
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, int] = field(default_factory=dict)
    lifecycle_stage: str = ACTIVE

    @property
    def artifact_path(self) -> str:
        """Where the files are in the source run's artifacts."""
        return f"{ARTIFACT_DIR}/{self.id}"

    def to_json(self) -> str:
        """The stored form (with its format id)."""
        body = {"format": FORMAT, **{k: getattr(self, k) for k in self.__dataclass_fields__}}
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> LoggedModel:
        """Read a stored record, whatever format it was written in."""
        body = json.loads(text)
        if body.pop("format", None) != FORMAT:
            raise InvalidArgument(f"logged model record of unknown format: {text[:80]!r}")
        return cls(**body)


def run_of(model_id: str) -> str:
    """The source run id inside a model id; NotFound for an id this store never made."""
    match = _ID.match(model_id) if isinstance(model_id, str) else None
    if match is None:
        raise NotFound(f"logged model {model_id!r} does not exist (ids look like m-<40 hex digits>)")
    return match["run"]


def _checked(items: Mapping[str, Any], limit: int, what: str) -> dict[str, str]:
    return {check_key(k, f"{what} key"): check_value(k, "" if v is None else v, limit, what)
            for k, v in items.items()}


def create(store: TrackingStore, experiment_id: int, source_run_id: str, *, name: str = "",
           model_type: str = "", params: Mapping[str, Any] | None = None,
           tags: Mapping[str, Any] | None = None) -> LoggedModel:
    """Record a new logged model (status PENDING) of an active run of `experiment_id`.

    Raises:
        NotFound: the run does not exist.
        InvalidArgument: the run is deleted or in another experiment; a bad name, key or value.
    """
    info = store.get_run(source_run_id).info
    if info.lifecycle_stage != ACTIVE:
        raise InvalidArgument(f"run {source_run_id} is deleted; restore it before logging models")
    if info.experiment_id != experiment_id:
        raise InvalidArgument(f"run {source_run_id} is in experiment {info.experiment_id}, not "
                              f"{experiment_id}; log the model to the run's experiment")
    name = name or f"model-{secrets.token_hex(3)}"
    if not isinstance(name, str) or len(name) > MAX_NAME or "/" in name or "\n" in name:
        raise InvalidArgument(f"invalid logged model name {name!r}: use at most {MAX_NAME} "
                              "characters, without '/' or line breaks")
    now = now_ms()
    model = LoggedModel(f"m-{source_run_id}{secrets.token_hex(4)}", experiment_id, name,
                        source_run_id, PENDING, "", str(model_type or ""), now, now,
                        _checked(params or {}, MAX_PARAM_VALUE, "param"),
                        _checked(tags or {}, MAX_TAG_VALUE, "tag"))
    with store.db.session() as session, session.begin():
        session.execute(TAGS.insert().values(run_id=source_run_id, key=MODEL_TAG + model.id,
                                             value=model.to_json()))
    return model


def get(store: TrackingStore, model_id: str, *, allow_deleted: bool = False) -> LoggedModel:
    """One logged model by id; NotFound if unknown (or deleted, unless `allow_deleted`)."""
    run_id = run_of(model_id)
    with store.db.session() as session:
        text = session.scalar(select(TAGS.c.value).where(TAGS.c.run_id == run_id,
                                                         TAGS.c.key == MODEL_TAG + model_id))
    if text is None:
        raise NotFound(f"logged model {model_id!r} does not exist")
    model = LoggedModel.from_json(text)
    if model.lifecycle_stage != ACTIVE and not allow_deleted:
        raise NotFound(f"logged model {model_id!r} was deleted")
    return model


def _change(store: TrackingStore, model_id: str, edit: Callable[[LoggedModel], LoggedModel],
            *, allow_deleted: bool = False) -> LoggedModel:
    """Apply `edit` to a record by compare-and-swap on its stored text, retried on a race.

    The read and the conditional write are separate transactions: a write transaction that
    began as a read could not be upgraded on SQLite once another writer committed.
    """
    run_id, key = run_of(model_id), MODEL_TAG + model_id
    where = (TAGS.c.run_id == run_id, TAGS.c.key == key)
    for _attempt in range(_RETRIES):
        with store.db.session() as session:
            old = session.scalar(select(TAGS.c.value).where(*where))
        if old is None:
            raise NotFound(f"logged model {model_id!r} does not exist")
        model = LoggedModel.from_json(old)
        if model.lifecycle_stage != ACTIVE and not allow_deleted:
            raise NotFound(f"logged model {model_id!r} was deleted")
        new = replace(edit(model), updated_at=max(now_ms(), model.updated_at))
        with store.db.session() as session, session.begin():
            done = session.execute(update(TAGS).where(*where, TAGS.c.value == old)
                                   .values(value=new.to_json()))
        if done.rowcount:  # type: ignore[attr-defined]
            return new
    raise Conflict(f"logged model {model_id} kept changing under {_RETRIES} tries; retry the call")


def finalize(store: TrackingStore, model_id: str, status: str, message: str = "") -> LoggedModel:
    """Set the status of a logged model (READY once its files are uploaded, or FAILED)."""
    if status not in STATUSES:
        raise InvalidArgument(f"logged model status must be one of {', '.join(STATUSES)}, not {status!r}")
    return _change(store, model_id, lambda m: replace(m, status=status, status_message=message))


def set_tags(store: TrackingStore, model_id: str, tags: Mapping[str, Any]) -> LoggedModel:
    """Set (or replace) tags of a logged model."""
    values = _checked(tags, MAX_TAG_VALUE, "tag")
    return _change(store, model_id, lambda m: replace(m, tags={**m.tags, **values}))


def delete_tag(store: TrackingStore, model_id: str, key: str) -> LoggedModel:
    """Remove tag `key` of a logged model; NotFound if it has none."""
    def edit(model: LoggedModel) -> LoggedModel:
        if key not in model.tags:
            raise NotFound(f"logged model {model_id} has no tag {key!r}")
        return replace(model, tags={k: v for k, v in model.tags.items() if k != key})

    return _change(store, model_id, edit)


def log_params(store: TrackingStore, model_id: str, params: Mapping[str, Any]) -> LoggedModel:
    """Add params to a logged model; as for runs, a param never changes its value."""
    values = _checked(params, MAX_PARAM_VALUE, "param")

    def edit(model: LoggedModel) -> LoggedModel:
        for key, value in values.items():
            if model.params.get(key, value) != value:
                raise InvalidArgument(f"param {key!r} of logged model {model_id} is "
                                      f"{model.params[key]!r} already and cannot become {value!r}")
        return replace(model, params={**model.params, **values})

    return _change(store, model_id, edit)


def log_output(store: TrackingStore, run_id: str, model_id: str, step: int = 0) -> LoggedModel:
    """Record that run `run_id` output the model at `step` (MLflow's `runs/outputs`).

    Kept in the model's record, so the `outputs` of its source run list it; another run's do
    not (its record lives on the source run).
    """
    store.get_run(run_id)  # NotFound for an unknown run
    return _change(store, model_id, lambda m: replace(m, outputs={**m.outputs, run_id: int(step)}))


def delete(store: TrackingStore, model_id: str) -> None:
    """Hide a logged model (its record and files stay, as for deleted runs)."""
    _change(store, model_id, lambda m: replace(m, lifecycle_stage=DELETED), allow_deleted=True)


def of_run(tags: Mapping[str, str]) -> list[LoggedModel]:
    """The logged models recorded in a run's tags (what `get_run(...).tags` holds)."""
    return [LoggedModel.from_json(v) for k, v in tags.items() if k.startswith(MODEL_TAG)]


def parse_filter(text: str) -> list[tuple[str, str, str, str | int]]:
    """`name = 'm' AND tags.k != 'v' AND creation_timestamp > 5` -> [(kind, key, op, value)].

    kind is "attr", "tag" or "param"; only clauses joined by AND are accepted.
    """
    out: list[tuple[str, str, str, str | int]] = []
    for clause in re.split(r"\s+AND\s+", text.strip(), flags=re.IGNORECASE) if text.strip() else []:
        match = _CLAUSE.match(clause)
        kind = (match["kind"] or "attr").lower().rstrip("s") if match else ""
        key = (match["key"] or "").strip("`\"") if match else ""
        if kind == "attr" and match is not None:
            key = _ATTRS.get(match["attr"].lower(), "")
        if match is None or kind == "metric" or not key:
            raise InvalidArgument(
                f"unsupported logged model filter clause {clause!r}: use name, model_id, "
                "source_run_id, status, model_type, creation_timestamp, last_updated_timestamp, "
                "tags.<key> or params.<key> with =, !=, <, <=, >, >=, LIKE or ILIKE, joined by AND")
        value: str | int = int(match["num"]) if match["num"] else (
            match["dtext"] if match["dtext"] is not None else match["text"].replace("''", "'"))
        out.append((kind, key, match["op"].upper(), value))
    return out


def _compare(actual: str | int | None, op: str, value: str | int) -> bool:
    if actual is None:  # a missing tag or param equals nothing, so it passes only `!=`
        return op == "!="
    if op in ("LIKE", "ILIKE"):
        glob = "".join({"%": "*", "_": "?", "*": "[*]", "?": "[?]", "[": "[[]"}.get(c, c)
                       for c in str(value))
        text = str(actual)
        return fnmatch.fnmatchcase(text, glob) if op == "LIKE" else (
            fnmatch.fnmatchcase(text.lower(), glob.lower()))
    left, right = (actual, value) if isinstance(actual, int) == isinstance(value, int) else (
        str(actual), str(value))
    ops: dict[str, Callable[[Any, Any], bool]] = {
        "=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
    return ops[op](left, right)


def matches(model: LoggedModel, clauses: Sequence[tuple[str, str, str, str | int]]) -> bool:
    """Whether a model passes every clause of `parse_filter`."""
    for kind, key, op, value in clauses:
        if kind == "attr":
            actual: str | int | None = getattr(model, key)
            if key == "status" and isinstance(value, str):
                value = value.upper().removeprefix("LOGGED_MODEL_").replace("UPLOAD_FAILED", FAILED)
        else:
            actual = (model.tags if kind == "tag" else model.params).get(key)
        if not _compare(actual, op, value):
            return False
    return True


def search(store: TrackingStore, experiment_ids: Sequence[int], filter_string: str = "",
           order_by: Sequence[tuple[str, bool]] = (), max_results: int = 100,
           page_token: str | None = None) -> tuple[list[LoggedModel], str | None]:
    """Active logged models of runs of the experiments, filtered, ordered and paged.

    `order_by` holds (attribute, ascending) pairs; after them, newest first, then by id.
    Returns the page and the token of the next one (None on the last page).
    """
    clauses = parse_filter(filter_string)
    if not experiment_ids:
        raise InvalidArgument("name at least one experiment to search logged models in")
    if not 0 < max_results <= 10_000:
        raise InvalidArgument(f"max_results must be between 1 and 10000, not {max_results}")
    offset = int(page_token) if page_token and page_token.isdigit() else 0
    if page_token and not page_token.isdigit():
        raise InvalidArgument(f"invalid page_token {page_token!r}: pass back the token a search gave")
    with store.db.session() as session:
        rows = session.scalars(select(TAGS.c.value).join(RUNS, RUNS.c.id == TAGS.c.run_id).where(
            RUNS.c.experiment_id.in_(list(experiment_ids)),
            TAGS.c.key >= MODEL_TAG, TAGS.c.key < MODEL_TAG[:-1] + "/"))  # key prefix, by index
        found = [m for m in map(LoggedModel.from_json, rows)
                 if m.lifecycle_stage == ACTIVE and matches(m, clauses)]
    found.sort(key=lambda m: m.id)
    found.sort(key=lambda m: m.created_at, reverse=True)
    for name, ascending in reversed(order_by):
        attr = _ATTRS.get(name.removeprefix("attributes.").removeprefix("attribute."))
        if attr is None:
            raise InvalidArgument(f"cannot order logged models by {name!r}: use name, model_id, "
                                  "creation_timestamp, last_updated_timestamp or status")
        found.sort(key=attrgetter(attr), reverse=not ascending)
    page = found[offset : offset + max_results]
    return page, str(offset + max_results) if offset + max_results < len(found) else None
