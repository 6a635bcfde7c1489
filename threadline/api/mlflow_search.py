"""Search of experiments and registered models: MLflow's small filter language over names and tags.

MLflow filters experiments and models with `name LIKE 'a%' AND tags.team = 'x'`. Threadline
keeps few of either, so matching runs in Python over the listed records; only comparisons of
the name and of tags joined by AND are accepted, anything else is refused naming the clause.
"""

from __future__ import annotations

import fnmatch
import re
from typing import TYPE_CHECKING, Any

from threadline.api import mlflow_json as mj
from threadline.api.http import JSONResponse, call, int_param, list_param, params, stores, str_param
from threadline.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Sequence

    from starlette.requests import Request
    from starlette.responses import Response

MAX_EXPERIMENTS = 50_000
_EXP_CLAUSE = re.compile(
    r"""^\s*(?:(?:attributes?\.)?(?P<attr>name)|tags?\.(?P<tag>`[^`]+`|"[^"]+"|[\w.\-/: ]+?))\s*
        (?P<op>=|!=|LIKE|ILIKE)\s*'(?P<value>(?:[^']|'')*)'\s*$""",
    re.IGNORECASE | re.VERBOSE,
)


def _like(pattern: str, text: str, case: bool) -> bool:
    glob = "".join({"%": "*", "_": "?", "*": "[*]", "?": "[?]", "[": "[[]"}.get(c, c) for c in pattern)
    return fnmatch.fnmatchcase(text, glob) if case else fnmatch.fnmatchcase(text.lower(), glob.lower())


def experiment_filter(text: str) -> list[tuple[str | None, str, str]]:
    """`name LIKE 'a%' AND tags.team = 'x'` -> [(None | tag key, op, value)].

    Only what experiment searches use in practice: comparisons of the name and of tags, joined
    by AND; anything else is refused with the clause named.
    """
    out: list[tuple[str | None, str, str]] = []
    if not text.strip():
        return out
    for clause in re.split(r"\s+AND\s+", text.strip(), flags=re.IGNORECASE):
        match = _EXP_CLAUSE.match(clause)
        if match is None:
            raise InvalidArgument(
                f"unsupported experiment filter clause {clause!r}: use name or tags.<key> with "
                "=, !=, LIKE or ILIKE and a quoted string, joined by AND")
        tag = match["tag"].strip("`\"") if match["tag"] else None
        out.append((tag, match["op"].upper(), match["value"].replace("''", "'")))
    return out


def matches(name: str, tags: dict[str, str], clauses: Sequence[tuple[str | None, str, str]]) -> bool:
    """Whether a named, tagged entity passes every clause of `experiment_filter`."""
    for tag, op, value in clauses:
        actual = name if tag is None else tags.get(tag)
        if actual is None:  # a missing tag equals nothing, so it passes only `!=`
            if op != "!=":
                return False
            continue
        ok = {"=": actual == value, "!=": actual != value}.get(op)
        if ok is None:
            ok = _like(value, actual, case=op == "LIKE")
        if not ok:
            return False
    return True


async def search_experiments(request: Request) -> Response:
    """experiments/search (POST and GET): filter by name and tags, newest first by default."""
    body = await params(request)
    clauses = experiment_filter(str_param(body, "filter", required=False))
    max_results = int_param(body.get("max_results"), "max_results", 1000) or 1000
    if not 0 < max_results <= MAX_EXPERIMENTS:
        raise InvalidArgument(f"max_results must be between 1 and {MAX_EXPERIMENTS}")
    offset = int_param(body.get("page_token"), "page_token", 0) or 0
    order = [str(o) for o in list_param(body.get("order_by"))]
    found = await call(stores(request).tracking.list_experiments, mj.view(body.get("view_type")))
    found = [e for e in found if matches(e.name, e.tags, clauses)]
    found.sort(key=lambda e: e.id, reverse=True)  # MLflow's default: newest first
    for clause in reversed(order):
        parts = clause.split()
        field = parts[0].removeprefix("attributes.").removeprefix("attribute.") if parts else ""
        keys = {"name": lambda e: e.name, "experiment_id": lambda e: e.id,
                "creation_time": lambda e: e.created_at, "last_update_time": lambda e: e.updated_at}
        if field not in keys or len(parts) > 2 or (len(parts) == 2 and parts[1].upper() not in
                                                   ("ASC", "DESC")):
            raise InvalidArgument(f"invalid experiment order_by {clause!r}: use name, experiment_id, "
                                  "creation_time or last_update_time, optionally ASC or DESC")
        found.sort(key=keys[field], reverse=len(parts) == 2 and parts[1].upper() == "DESC")
    page = found[offset : offset + max_results]
    out: dict[str, Any] = {"experiments": [mj.experiment_json(e) for e in page]}
    if offset + max_results < len(found):
        out["next_page_token"] = str(offset + max_results)
    return JSONResponse(out)
