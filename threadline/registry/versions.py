"""Recording a model version: its training data, their profile, the version number, lineage.

Version numbers are `max + 1` inside the inserting transaction; the unique constraint on
(model, version) makes a concurrent registration fail, and it is retried with the next number.
"""

from __future__ import annotations

import json
import math
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from threadline.data.refs import parse_ref
from threadline.data.repos import commit_node
from threadline.data.tables import TABLE_SUFFIXES, open_file
from threadline.errors import Conflict, InvalidArgument, NotFound
from threadline.lineage.graph import Edge, Node, add_edges
from threadline.meta.models import ModelVersionRow, RegisteredModelRow

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from sqlalchemy.orm import Session

    from threadline.data.repos import DataRepos

VERSION_KIND = "model_version"
RUN_KIND = "run"
#: a table up to this size is profiled at registration when its commit carries no profile
PROFILE_LIMIT = 16 << 20
INSERT_TRIES = 20


def now_ms() -> int:
    """Milliseconds since the epoch (the registry tables' time unit)."""
    return int(time.time() * 1000)


def version_node(name: str, version: int) -> Node:
    """The lineage node of a model version."""
    return Node(VERSION_KIND, f"{name}/{version}")


def check_metrics(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """Metric values as plain floats (None for missing/NaN); anything else is refused."""
    out: dict[str, float | None] = {}
    for key, value in metrics.items():
        if value is None:
            out[str(key)] = None
            continue
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"metric {key!r} must be a number, not {value!r}") from exc
        out[str(key)] = None if math.isnan(number) else number
    return out


def resolve_data(repos: DataRepos, refs: Sequence[str]) -> list[dict[str, Any]]:
    """Training-data refs -> [{"repo", "branch", "commit", "path", "ref"}], resolved now."""
    out = []
    for ref in refs:
        target = repos.resolve(ref)
        commit = target.require_commit()
        out.append({"repo": target.repo.name, "branch": target.branch, "commit": commit.id,
                    "path": target.path, "ref": ref})
    return out


def data_from_inputs(repos: DataRepos, inputs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A run's recorded inputs -> training-data entries, keeping the commits the run read."""
    out = []
    for item in inputs:
        repo, commit, ref = str(item["repo"]), str(item["commit"]), str(item.get("ref") or item["repo"])
        spec = parse_ref(ref)
        branch = None
        try:  # the branch the ref named, if it still is a branch (a tag or commit has none)
            branch = repos.resolve(f"{repo}@{spec.rev}" if spec.rev else repo).branch
        except NotFound:
            branch = None
        out.append({"repo": repo, "branch": branch, "commit": commit, "path": spec.path or "",
                    "ref": ref})
    return out


def _stored_profile(repos: DataRepos, entry: Mapping[str, Any]) -> dict[str, Any] | None:
    """The profile a preparation step stored in the commit (`_threadline/profile*.json`)."""
    # `threadline.prep` imports pyarrow with its package: only here, when a version is registered
    from threadline.prep.ops import META_DIR

    commit = repos.resolve(f"{entry['repo']}@{entry['commit']}").require_commit()
    manifest = repos.manifest(commit)
    path = str(entry.get("path") or "")
    stem = path.rpartition("/")[2].rpartition(".")[0]
    # a split stores one profile per part (`profile.train.json`), other steps one for the table
    for name in ([f"profile.{stem}.json"] if stem else []) + ["profile.json"]:
        if manifest.get(f"{META_DIR}/{name}") is not None:
            with open_file(repos, f"{entry['repo']}@{commit.id}:{META_DIR}/{name}") as fh:
                loaded: dict[str, Any] = json.load(fh)
                return loaded
    entry_file = manifest.get(path) if path else None
    if entry_file is None or not path.lower().endswith(TABLE_SUFFIXES) or entry_file.size > PROFILE_LIMIT:
        return None
    from threadline.prep.steps import profile

    return profile(repos, f"{entry['repo']}@{commit.id}:{path}").to_dict()


def training_profile(repos: DataRepos, data: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """`{"repo@commit12:path": profile}` for each training table that has or gets a profile."""
    out = {}
    for entry in data:
        found = _stored_profile(repos, entry)
        if found is not None:
            key = f"{entry['repo']}@{str(entry['commit'])[:12]}"
            out[key + (f":{entry['path']}" if entry.get("path") else "")] = found
    return out


def ensure_model(session_factory: Any, name: str, description: str) -> None:
    """Create the registered model row if it does not exist (a concurrent creator wins)."""
    with session_factory() as session:
        if session.scalar(select(RegisteredModelRow.id).where(RegisteredModelRow.name == name)):
            return
    try:
        with session_factory() as session, session.begin():
            stamp = now_ms()
            session.add(RegisteredModelRow(name=name, description=description, tags={}, policy={},
                                           created_at=stamp, updated_at=stamp))
    except DBIntegrityError:
        pass  # registered meanwhile by another writer: fine


def insert_version(
    session_factory: Any, name: str, fields: dict[str, Any], edges: Sequence[tuple[Node, str]],
) -> ModelVersionRow:
    """Insert a version row with the next number, plus lineage edges, in one transaction."""
    for _ in range(INSERT_TRIES):
        try:
            with session_factory() as session, session.begin():
                row = _insert(session, name, fields, edges)
            return row
        except DBIntegrityError:
            continue  # another registration took this number: take the next
    raise Conflict(f"could not register a version of {name!r}: {INSERT_TRIES} concurrent "
                   "registrations took every number tried; retry")


def _insert(session: Session, name: str, fields: dict[str, Any],
            edges: Sequence[tuple[Node, str]]) -> ModelVersionRow:
    model = session.scalar(select(RegisteredModelRow).where(RegisteredModelRow.name == name))
    if model is None:
        raise NotFound(f"model {name!r} is not registered; create it first "
                       "(`ModelRegistry.create_model`, or MLflow's registered-models/create)")
    top = session.scalar(select(func.max(ModelVersionRow.version))
                         .where(ModelVersionRow.model_id == model.id))
    row = ModelVersionRow(model_id=model.id, version=(top or 0) + 1, created_at=now_ms(), **fields)
    session.add(row)
    session.flush()
    target = version_node(name, row.version)
    add_edges(session, [Edge(node, relation, target) for node, relation in edges])
    model.updated_at = now_ms()
    return row


def lineage_sources(run_id: str | None, data: Sequence[Mapping[str, Any]],
                    artifact_commit: str) -> list[tuple[Node, str]]:
    """The edges into a new version: run -produced->, data -trained_on->, files -stored_as->."""
    sources: list[tuple[Node, str]] = []
    if run_id:
        sources.append((Node(RUN_KIND, run_id), "produced"))
    sources += [(commit_node(str(d["commit"])), "trained_on") for d in data]
    sources.append((commit_node(artifact_commit), "model_files"))
    return sources
