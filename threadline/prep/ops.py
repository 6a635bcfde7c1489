"""Preparation steps as commits: read an input commit, write a new commit, record both.

Every step (split, profile, and later ingest, validate, cleanse, de-duplicate) runs the same
way: its outputs are written to a scratch folder, committed into the target repo with the
step's name, parameters, input commit and report in the commit's metadata, and a lineage edge
`input commit -[prep.<step>]-> output commit` recorded in the same transaction. A step that
fails commits nothing.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from threadline.data.repos import commit_node

if TYPE_CHECKING:
    from collections.abc import Callable

    from threadline.data.model import CommitInfo
    from threadline.data.repos import DataRepos

#: folder inside an output commit for what describes the data (profiles, definitions)
META_DIR = "_threadline"


@dataclass(frozen=True)
class StepResult:
    """The commit a step produced (or the unchanged head) and the step's report."""

    commit: CommitInfo
    created: bool
    report: dict[str, Any]


def write_json(path: Path, value: Any) -> None:
    """Write canonical JSON (sorted keys; dates and other values as strings), creating parents."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1, sort_keys=True, default=str) + "\n")


def run_step(
    repos: DataRepos,
    *,
    step: str,
    input_ref: str | None,
    into: str,
    params: dict[str, Any],
    produce: Callable[[Path], dict[str, Any]],
    message: str | None = None,
    update: bool = False,
) -> StepResult:
    """Run `produce(folder)` and commit the folder it filled into `into`.

    Args:
        repos: the data layer.
        step: the step's name, e.g. "split".
        input_ref: the data the step reads (resolved once, so the step sees one commit), or
            None for a step whose input is outside Threadline (ingest); `params` then says
            where the data came from.
        into: `repo[@branch]` the output is committed to.
        params: the step's parameters, stored with the output so it can be re-run exactly.
        produce: writes the output files into the folder it is given; returns the report.
        message: commit message (default: "<step> of <input>").
        update: keep the files of the branch's head that the output does not replace (an
            append) instead of making the output the whole tree.
    """
    source = repos.resolve(input_ref).require_commit() if input_ref is not None else None
    scratch = Path(tempfile.mkdtemp(prefix=f"tl-{step}-"))
    try:
        report = produce(scratch)
        inputs = {"ref": input_ref, "commit": source.id} if source else None
        default = f"{step} of {input_ref} ({source.short_id})" if source else step
        result = repos.commit(
            into,
            [scratch],
            message or default,
            metadata={"step": step, "params": params, "input": inputs, "report": report},
            derived_from=[(commit_node(source.id), f"prep.{step}")] if source else (),
            update=update,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return StepResult(result.commit, result.created, report)
