"""Built-in steps: the preparation operations of `threadline.prep`, driven by YAML `with:`.

    clean:   {uses: threadline.prep.cleanse,  inputs: {table: REF}, with: {spec: {...}, output: x.parquet}}
    dedupe:  {uses: threadline.prep.dedupe,   inputs: {table: REF}, with: {spec: {...}, keep_removed: false}}
    split:   {uses: threadline.prep.split,    inputs: {table: REF},
              with: {fractions: {train: 0.8, test: 0.2}, by: [id], seed: 0}}
    check:   {uses: threadline.prep.validate, inputs: {table: REF}, with: {schema: {...}}}
    load:    {uses: threadline.prep.ingest,   with: {sources: [data/*.csv], replace: true}}
    train:   {uses: threadline.train,         inputs: {table: REF}, with: {estimator: ..., target: y}}

Each commits through `threadline.prep.ops.run_step` (its report and `prep.<op>` lineage edge
included); the worker adds the pipeline's own lineage edges. `ingest` sources are relative to
the pipeline file's folder and their content is part of the step's cache key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from threadline.data.tables import TABLE_SUFFIXES
from threadline.errors import InvalidArgument
from threadline.prep import steps
from threadline.prep.cleanse import FORMAT as CLEANSE_FORMAT
from threadline.prep.cleanse import CleanseSpec
from threadline.prep.dedupe import FORMAT as DEDUPE_FORMAT
from threadline.prep.dedupe import DedupeSpec
from threadline.prep.ops import META_DIR
from threadline.prep.validate import FORMAT as SCHEMA_FORMAT
from threadline.prep.validate import TableSchema

if TYPE_CHECKING:
    from pathlib import Path

    from threadline.data.repos import DataRepos

_KEYS = {
    "ingest": {"sources", "replace"},
    "cleanse": {"spec", "output"},
    "dedupe": {"spec", "keep_removed", "output"},
    "split": {"fractions", "by", "stratify", "time_column", "cutoffs", "seed"},
    "validate": {"schema", "output"},
}


def _doc(value: Any, format_id: str) -> dict[str, Any]:
    """A definition written in YAML without its `format:` line gets the current one."""
    if not isinstance(value, dict):
        raise InvalidArgument(f"expected a mapping for a {format_id} definition, not {value!r}")
    return {"format": format_id, **value}


def _uses(op: str) -> str:
    """The `uses:` name of a built-in operation."""
    return "threadline.train" if op == "train" else f"threadline.prep.{op}"


def _one_table(repos: DataRepos, ref: str, op: str) -> str:
    """`ref` if it names a file, else the one table file in the folder it names."""
    target = repos.resolve(ref)
    manifest = repos.manifest(target.require_commit())
    if target.path and manifest.get(target.path) is not None:
        return ref
    tables = [e.path for e in manifest.under(target.path)
              if not e.path.startswith(f"{META_DIR}/") and e.path.endswith(TABLE_SUFFIXES)]
    if len(tables) != 1:
        raise InvalidArgument(f"{_uses(op)}: {ref} holds {len(tables)} tables; name one as "
                              "`step:NAME:PATH` or `REPO@REV:PATH`")
    return f"{ref.split(':', 1)[0]}:{tables[0]}"


def run(repos: DataRepos, op: str, ref: str | None, into: str, params: dict[str, Any], base: Path) -> str:
    """Run preparation operation `op` (or "train") on `ref` into `into`; returns the output commit id."""
    if op == "train":
        if ref is None:
            raise InvalidArgument("threadline.train needs an input named `table`")
        from threadline.pipelines.train_step import run_train

        return run_train(repos, _one_table(repos, ref, op), into, params)
    p = dict(params)
    unknown = set(p) - _KEYS.get(op, set())
    if unknown:  # checked first: the step commits as it runs
        raise InvalidArgument(f"threadline.prep.{op}: unknown `with:` keys {sorted(unknown)}; "
                              f"allowed: {sorted(_KEYS.get(op, set()))}")
    if op == "ingest":
        sources = [str(base / s) for s in p.pop("sources", [])]
        return steps.ingest(repos, into, sources=sources, replace=bool(p.pop("replace", True))).commit.id
    if ref is None:
        raise InvalidArgument(f"threadline.prep.{op} needs an input named `table`")
    table = _one_table(repos, ref, op)
    if op == "cleanse":
        spec_c = CleanseSpec.from_dict(_doc(p.pop("spec", {}), CLEANSE_FORMAT))
        result = steps.cleanse(repos, table, into, spec_c, output=p.pop("output", None))
    elif op == "dedupe":
        spec_d = DedupeSpec.from_dict(_doc(p.pop("spec", {}), DEDUPE_FORMAT))
        result = steps.dedupe(repos, table, into, spec_d,
                              keep_removed=bool(p.pop("keep_removed", False)),
                              output=p.pop("output", None))
    elif op == "split":
        spec = steps.make_spec(p.pop("fractions", {}), by=p.pop("by", ()), stratify=p.pop("stratify", None),
                               time_column=p.pop("time_column", None), cutoffs=p.pop("cutoffs", ()),
                               seed=int(p.pop("seed", 0)))
        result = steps.split(repos, table, into, spec)
    elif op == "validate":
        schema = TableSchema.from_dict(_doc(p.pop("schema", {}), SCHEMA_FORMAT))
        result = steps.validate(repos, table, into, schema, output=p.pop("output", None))
    else:
        raise InvalidArgument(f"unknown built-in step threadline.prep.{op}")
    return result.commit.id
