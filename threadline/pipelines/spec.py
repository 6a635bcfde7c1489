"""The pipeline model: steps, their inputs, parameters and outputs, and DAG validation.

A pipeline is a DAG of steps. Each step reads named inputs, each either a data ref
(`churn-raw@main`, `churn-raw@main:data/`) or another step's output (`step:features`, with an
optional path: `step:features:train.parquet`), takes JSON-ready parameters with defaults, and
writes one output commit into its output repo (default `<pipeline>-<step>`). The Python API
(`python_api.py`) and the YAML loader (`yaml_spec.py`) both build these frozen records, so the
engine, the cache and impact analysis never care how a pipeline was written.

What runs is named by value, never by object, because steps run in other processes:
`kind="python"` names `module:qualname`, `kind="command"` holds the argument template and
`kind="builtin"` names a preparation operation (`threadline.prep.cleanse`, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from threadline.errors import InvalidArgument

StepKind = Literal["python", "command", "builtin"]
DatumKind = Literal["file", "glob", "partition"]

STEP_PREFIX = "step:"
# Step names end up in lineage relations (`pipeline.<step>`, at most 40 characters) and repo names.
_STEP_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,30}$")
_PIPELINE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,60}$")


@dataclass(frozen=True)
class DatumSpec:
    """How an input splits into datums: each file, each file matching a glob, or each folder
    `depth` levels down (a table's partitions, e.g. `date=2024-01-01/`)."""

    kind: DatumKind = "file"
    pattern: str = "*"
    depth: int = 1

    @classmethod
    def parse(cls, text: str) -> DatumSpec:
        """`file`, `glob:*.csv`, `partition` or `partition:2`."""
        kind, _, arg = text.partition(":")
        if kind == "file" and not arg:
            return cls("file")
        if kind == "glob" and arg:
            return cls("glob", pattern=arg)
        if kind == "partition":
            try:
                depth = int(arg or "1")
            except ValueError:
                depth = 0
            if depth >= 1:
                return cls("partition", depth=depth)
        raise InvalidArgument(
            f"datums {text!r} is not one of: file, glob:PATTERN, partition[:DEPTH]"
        )

    def __str__(self) -> str:
        if self.kind == "glob":
            return f"glob:{self.pattern}"
        if self.kind == "partition":
            return f"partition:{self.depth}"
        return "file"


@dataclass(frozen=True)
class InputSpec:
    """A named input: a data ref, or another step's output (`step` set, `path` inside it)."""

    name: str
    ref: str | None = None
    step: str | None = None
    path: str = ""
    datums: DatumSpec | None = None

    @classmethod
    def parse(cls, name: str, source: str, datums: str | None = None) -> InputSpec:
        """`repo@branch[:path]` or `step:NAME[:path]`."""
        split = DatumSpec.parse(datums) if datums else None
        if source.startswith(STEP_PREFIX):
            step, _, path = source[len(STEP_PREFIX):].partition(":")
            return cls(name, step=step, path=path.strip("/"), datums=split)
        if not source:
            raise InvalidArgument(f"input {name!r} names no data: give REPO@BRANCH or step:NAME")
        return cls(name, ref=source, datums=split)

    @property
    def source(self) -> str:
        """The input as written (`repo@branch:path` or `step:NAME:path`)."""
        if self.step is not None:
            return f"{STEP_PREFIX}{self.step}" + (f":{self.path}" if self.path else "")
        return str(self.ref)


@dataclass(frozen=True)
class Resources:
    """What one attempt of a step needs from its executor."""

    cpus: float = 1
    memory_mb: int | None = None
    gpus: float = 0


@dataclass(frozen=True)
class StepSpec:
    """One step, described by value (see the module docstring)."""

    name: str
    kind: StepKind
    target: str
    inputs: tuple[InputSpec, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    output: str = ""
    resources: Resources = Resources()
    retries: int = 0
    timeout_s: float | None = None
    #: for command steps: the argument template (already split, never run through a shell)
    argv: tuple[str, ...] = ()

    @property
    def datum_input(self) -> InputSpec | None:
        """The one input that is split into datums, if any."""
        return next((i for i in self.inputs if i.datums is not None), None)

    def upstream(self) -> set[str]:
        """Names of the steps whose outputs this step reads."""
        return {i.step for i in self.inputs if i.step is not None}


@dataclass(frozen=True)
class PipelineSpec:
    """A validated pipeline: steps in topological order.

    Attributes:
        name: the pipeline's name (output repos default to `<name>-<step>`).
        steps: every step, upstream before downstream (ties keep the declared order).
        source: how a worker re-loads it: {"kind": "module", "module": ...} or
            {"kind": "yaml", "text": ..., "base": folder of the file}.
        schedule: a cron expression (5 fields) for `threadline pipeline watch`, or "".
    """

    name: str
    steps: tuple[StepSpec, ...]
    source: dict[str, str] = field(default_factory=dict)
    schedule: str = ""

    def step(self, name: str) -> StepSpec:
        """The step called `name`."""
        for step in self.steps:
            if step.name == name:
                return step
        known = ", ".join(s.name for s in self.steps)
        raise InvalidArgument(f"pipeline {self.name!r} has no step {name!r} (steps: {known})")

    def output_repo(self, step: StepSpec) -> str:
        """The data repo a step commits its output into."""
        return step.output or f"{self.name}-{step.name}"

    def downstream(self, names: set[str]) -> list[str]:
        """`names` and every step that reads from them, directly or not, in order."""
        hit = set(names)
        for step in self.steps:
            if step.upstream() & hit:
                hit.add(step.name)
        return [s.name for s in self.steps if s.name in hit]


def build(name: str, steps: list[StepSpec], source: dict[str, str], schedule: str = "") -> PipelineSpec:
    """Validate steps and return them as a pipeline, in topological order.

    Raises InvalidArgument naming the step for a bad or duplicate name, an input naming an
    unknown step, a parameter that is not JSON-ready, or a cycle.
    """
    if not _PIPELINE_NAME.match(name):
        raise InvalidArgument(f"pipeline name {name!r} must be letters, digits, '_' or '-'")
    if not steps:
        raise InvalidArgument(f"pipeline {name!r} has no steps")
    by_name: dict[str, StepSpec] = {}
    for step in steps:
        if not _STEP_NAME.match(step.name):
            raise InvalidArgument(
                f"step name {step.name!r} must start with a letter and be at most 31 letters, "
                "digits, '_' or '-'"
            )
        if step.name in by_name:
            raise InvalidArgument(f"step {step.name!r} is defined twice in pipeline {name!r}")
        by_name[step.name] = step
    for step in steps:
        _check_step(step, by_name)
    return PipelineSpec(name, tuple(_toposort(steps, by_name)), source, schedule)


def _check_step(step: StepSpec, by_name: dict[str, StepSpec]) -> None:
    seen: set[str] = set()
    for item in step.inputs:
        if item.name in seen:
            raise InvalidArgument(f"step {step.name!r} has two inputs named {item.name!r}")
        seen.add(item.name)
        if item.step is not None and item.step not in by_name:
            raise InvalidArgument(
                f"step {step.name!r}: input {item.name!r} reads step {item.step!r}, which is not "
                f"in the pipeline (steps: {', '.join(by_name)})"
            )
        if item.step == step.name:
            raise InvalidArgument(f"step {step.name!r} reads its own output (a cycle)")
    if sum(1 for i in step.inputs if i.datums is not None) > 1:
        raise InvalidArgument(f"step {step.name!r}: only one input may be split into datums")
    for key, value in step.params.items():
        if not isinstance(value, (str, int, float, bool, type(None), list, dict)):
            raise InvalidArgument(
                f"step {step.name!r}: parameter {key!r} must be JSON-ready, not {type(value).__name__}"
            )
    if step.retries < 0 or (step.timeout_s is not None and step.timeout_s <= 0):
        raise InvalidArgument(f"step {step.name!r}: retries must be >= 0 and timeout_s > 0")


def _toposort(steps: list[StepSpec], by_name: dict[str, StepSpec]) -> list[StepSpec]:
    """Kahn's algorithm, stable in declaration order; a cycle names its steps."""
    order: list[StepSpec] = []
    done: set[str] = set()
    pending = list(steps)
    while pending:
        ready = [s for s in pending if s.upstream() <= done]
        if not ready:
            cycle = ", ".join(sorted(s.name for s in pending))
            raise InvalidArgument(f"the steps {cycle} depend on each other in a cycle")
        for step in ready:
            order.append(step)
            done.add(step.name)
        pending = [s for s in pending if s.name not in done]
    return order


def apply_overrides(pipeline: PipelineSpec, overrides: dict[str, Any]) -> PipelineSpec:
    """Parameter overrides: `k` sets `k` on every step that declares it, `step.k` on one step.

    An override no step declares is an error, so a typo never passes silently.
    """
    steps = list(pipeline.steps)
    for key, value in overrides.items():
        step_name, dot, param = key.rpartition(".")
        hits = 0
        for i, step in enumerate(steps):
            if (dot and step.name != step_name) or param not in step.params:
                continue
            steps[i] = StepSpec(**{**step.__dict__, "params": {**step.params, param: value}})
            hits += 1
        if not hits:
            raise InvalidArgument(
                f"--param {key}: no step of pipeline {pipeline.name!r} has a parameter {param!r}"
            )
    return PipelineSpec(pipeline.name, tuple(steps), pipeline.source, pipeline.schedule)
