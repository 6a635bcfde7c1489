"""Run search: a parsed filter and order compiled to one SQL query, and runs loaded in bulk.

Metric filters and orderings read `latest_metrics`, whose `(key, value)` index turns
`metrics.auc > 0.9` into an index range scan instead of a pass over every run; each metric or
param named joins its table once. Values are always bound parameters: a filter is never
spliced into SQL text.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import and_, case, literal, not_, select

from threadline.errors import InvalidArgument
from threadline.meta.models import LatestMetricRow, ParamRow, RunRow, TagRow
from threadline.tracking.filters import (
    NUMERIC_ATTRIBUTES,
    STRING_ATTRIBUTES,
    Comparison,
    OrderKey,
    parse_filter,
    parse_order_by,
)
from threadline.tracking.model import INPUTS_TAG, VIEWS, Metric, Run, RunInfo

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy import ColumnElement, Select, Table
    from sqlalchemy.orm import Session
    from sqlalchemy.sql.expression import FromClause

RUNS = cast("Table", RunRow.__table__)
LATEST = cast("Table", LatestMetricRow.__table__)
PARAMS = cast("Table", ParamRow.__table__)
TAGS = cast("Table", TagRow.__table__)
MAX_RESULTS = 50_000
_IN_CHUNK = 900  # stay under every engine's limit on bound parameters


def encode_token(offset: int) -> str:
    """An opaque page token for `offset`."""
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def decode_token(token: str | None) -> int:
    """The offset a page token stands for; a token not made by `encode_token` is refused."""
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise InvalidArgument(f"invalid page token {token!r}; pass the token a search returned") from exc
    if not isinstance(offset, int) or offset < 0:
        raise InvalidArgument(f"invalid page token {token!r}; pass the token a search returned")
    return offset


def _glob_pattern(like: str) -> str:
    # SQLite's LIKE ignores ASCII case; GLOB does not, so a case-sensitive LIKE becomes a GLOB
    # with its own metacharacters escaped in brackets.
    out = []
    for ch in like:
        out.append({"%": "*", "_": "?", "*": "[*]", "?": "[?]", "[": "[[]"}.get(ch, ch))
    return "".join(out)


def _string_op(
    column: Any, op: str, value: float | str | tuple[str, ...], dialect: str
) -> ColumnElement[bool]:
    if op in ("IN", "NOT IN"):
        assert isinstance(value, tuple)
        return column.in_(value) if op == "IN" else not_(column.in_(value))  # type: ignore[no-any-return]
    if op == "LIKE":
        if dialect == "sqlite":
            return column.op("GLOB")(_glob_pattern(str(value)))  # type: ignore[no-any-return]
        return column.like(value)  # type: ignore[no-any-return]
    if op == "ILIKE":
        return column.ilike(value)  # type: ignore[no-any-return]
    return (column == value) if op == "=" else (column != value)  # type: ignore[no-any-return]


def _numeric_op(column: Any, op: str, value: float) -> ColumnElement[bool]:
    ops = {
        "=": column == value, "!=": column != value, "<": column < value,
        "<=": column <= value, ">": column > value, ">=": column >= value,
    }
    return ops[op]  # type: ignore[no-any-return]


def build_query(
    experiment_ids: Sequence[int], filters: list[Comparison], order: list[OrderKey], view: str,
    dialect: str,
) -> Select[Any]:
    """The SELECT of matching run ids in order (no limit yet)."""
    if view not in VIEWS:
        raise InvalidArgument(f"view must be one of {', '.join(VIEWS)}, not {view!r}")
    source: FromClause = RUNS
    conditions: list[ColumnElement[bool]] = [
        RUNS.c.experiment_id.in_(list(experiment_ids)),
        RUNS.c.lifecycle_stage.in_(VIEWS[view]),
    ]
    metric_joins: dict[str, Any] = {}
    for i, cmp in enumerate(filters):
        if cmp.entity == "attribute":
            if cmp.key in NUMERIC_ATTRIBUTES:
                column = RUNS.c[NUMERIC_ATTRIBUTES[cmp.key]]
                conditions.append(_numeric_op(column, cmp.op, float(cmp.value)))  # type: ignore[arg-type]
            else:
                column = RUNS.c[STRING_ATTRIBUTES[cmp.key]]
                conditions.append(_string_op(column, cmp.op, cmp.value, dialect))
            continue
        table = {"metric": LATEST, "param": PARAMS, "tag": TAGS}[cmp.entity]
        alias: Any = table.alias(f"f{i}")
        if cmp.entity == "metric":
            test = _numeric_op(alias.c.value, cmp.op, float(cmp.value))  # type: ignore[arg-type]
            metric_joins.setdefault(cmp.key, alias)
        else:
            test = _string_op(alias.c.value, cmp.op, cmp.value, dialect)
        source = source.join(
            alias, and_(alias.c.run_id == RUNS.c.id, alias.c.key == cmp.key, test))
    order_cols: list[Any] = []
    for i, key in enumerate(order):
        if key.entity == "attribute":
            name = NUMERIC_ATTRIBUTES.get(key.key) or STRING_ATTRIBUTES[key.key]
            col: Any = RUNS.c[name]
        else:
            alias = metric_joins.get(key.key) if key.entity == "metric" else None
            if alias is None:
                table = {"metric": LATEST, "param": PARAMS, "tag": TAGS}[key.entity]
                alias = table.alias(f"o{i}")
                source = source.outerjoin(
                    alias, and_(alias.c.run_id == RUNS.c.id, alias.c.key == key.key))
            col = alias.c.value
        # runs without the value (or with NaN, stored as NULL) come last either way, as in MLflow
        order_cols.append(case((col.is_(None), literal(1)), else_=literal(0)))
        order_cols.append(col.asc() if key.ascending else col.desc())
    order_cols += [RUNS.c.start_time.desc(), RUNS.c.id.asc()]
    return select(RUNS.c.id).select_from(source).where(*conditions).order_by(*order_cols)


def search_ids(
    session: Session, experiment_ids: Sequence[int], filter_string: str, order_by: Sequence[str],
    max_results: int, page_token: str | None, view: str,
) -> tuple[list[str], str | None]:
    """One page of matching run ids, and the token of the next page (None on the last)."""
    if not 0 < max_results <= MAX_RESULTS:
        raise InvalidArgument(f"max_results must be between 1 and {MAX_RESULTS}, not {max_results}")
    offset = decode_token(page_token)
    if not experiment_ids:
        return [], None
    dialect = session.get_bind().dialect.name
    query = build_query(experiment_ids, parse_filter(filter_string), parse_order_by(list(order_by)),
                        view, dialect)
    ids = list(session.scalars(query.limit(max_results + 1).offset(offset)))
    if len(ids) > max_results:
        return ids[:max_results], encode_token(offset + max_results)
    return ids, None


def _chunks(ids: Sequence[str]) -> list[list[str]]:
    return [list(ids[i : i + _IN_CHUNK]) for i in range(0, len(ids), _IN_CHUNK)]


def run_info(row: Any) -> RunInfo:
    """A RunInfo from a `runs` row (ORM object or core row)."""
    return RunInfo(
        row.id, row.experiment_id, row.parent_id, row.name, row.status, row.lifecycle_stage,
        row.user, row.start_time, row.end_time, row.artifact_commit, dict(row.source or {}),
    )


def load_runs(session: Session, ids: Sequence[str]) -> list[Run]:
    """Full runs for `ids`, in the order given (ids that do not exist are skipped)."""
    infos: dict[str, RunInfo] = {}
    params: dict[str, dict[str, str]] = {i: {} for i in ids}
    tags: dict[str, dict[str, str]] = {i: {} for i in ids}
    metrics: dict[str, dict[str, Metric]] = {i: {} for i in ids}
    for chunk in _chunks(ids):
        for row in session.execute(select(RUNS).where(RUNS.c.id.in_(chunk))):
            infos[row.id] = run_info(row)
        for run_id, key, value in session.execute(
                select(PARAMS.c.run_id, PARAMS.c.key, PARAMS.c.value).where(PARAMS.c.run_id.in_(chunk))):
            params[run_id][key] = value
        for run_id, key, value in session.execute(
                select(TAGS.c.run_id, TAGS.c.key, TAGS.c.value).where(TAGS.c.run_id.in_(chunk))):
            tags[run_id][key] = value
        for run_id, key, value, step, ts in session.execute(
                select(LATEST.c.run_id, LATEST.c.key, LATEST.c.value, LATEST.c.step,
                       LATEST.c.timestamp).where(LATEST.c.run_id.in_(chunk))):
            metrics[run_id][key] = Metric(key, math.nan if value is None else value, ts, step)
    out = []
    for run_id in ids:
        if run_id not in infos:
            continue
        run_tags = tags[run_id]
        inputs = json.loads(run_tags.pop(INPUTS_TAG, "[]"))
        out.append(Run(infos[run_id], dict(sorted(params[run_id].items())),
                       dict(sorted(metrics[run_id].items())), dict(sorted(run_tags.items())), inputs))
    return out
