"""Impact analysis: what is downstream of a data ref, a step or a parameter.

`impact(pipeline, repos, target)` answers "if this changes, what re-runs?": the steps reading
the ref (or the step itself, or the steps declaring the parameter) and every step downstream
of them in the DAG, each with its output repo and latest output commit - plus, for a data ref,
everything the lineage graph records downstream of its head commit (other pipelines' outputs,
training runs, model versions), which the DAG alone cannot see.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from threadline.data.refs import parse_ref
from threadline.data.repos import commit_node
from threadline.errors import InvalidArgument, NotFound
from threadline.lineage.graph import LineageGraph
from threadline.pipelines.runs import RunStore

if TYPE_CHECKING:
    from threadline.data.repos import DataRepos
    from threadline.pipelines.spec import PipelineSpec


@dataclass(frozen=True)
class ImpactedStep:
    """A step that re-runs, why, and the output it would replace."""

    step: str
    reason: str
    output_repo: str
    latest_commit: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class Impact:
    """The answer for one target."""

    target: str
    kind: str  # step | param | ref
    steps: list[ImpactedStep]
    lineage: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"target": self.target, "kind": self.kind, "steps": [s.to_dict() for s in self.steps],
                "lineage": self.lineage}


def impact(pipeline: PipelineSpec, repos: DataRepos, target: str) -> Impact:
    """Everything downstream of `target`: a step name, `params.NAME`/`NAME`, or a data ref."""
    direct: dict[str, str] = {}
    lineage: list[str] = []
    names = {s.name for s in pipeline.steps}
    param = target.removeprefix("params.")
    if target in names:
        kind = "step"
        direct[target] = "the step itself"
    elif any(param in s.params for s in pipeline.steps):
        kind = "param"
        direct.update({s.name: f"declares param {param}" for s in pipeline.steps if param in s.params})
    else:
        kind = "ref"
        try:
            spec = parse_ref(target)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{target!r} is no step, parameter or data ref of pipeline "
                                  f"{pipeline.name!r}") from exc
        for step in pipeline.steps:
            for item in step.inputs:
                if item.ref is not None and parse_ref(item.ref).repo == spec.repo:
                    direct.setdefault(step.name, f"reads {item.ref} as {item.name}")
            if pipeline.output_repo(step) == spec.repo:
                for name in pipeline.downstream({step.name})[1:]:
                    direct.setdefault(name, f"reads the output of {step.name}")
        try:
            head = repos.resolve(target).commit
        except NotFound:
            head = None
        if head is not None:
            nodes = LineageGraph(repos.db).closure(commit_node(head.id), "down")
            lineage = sorted(str(n) for n in nodes)
        if not direct and head is None:
            raise NotFound(f"{target!r} is no step, parameter or existing data ref of pipeline "
                           f"{pipeline.name!r}")
    store = RunStore(repos.db)
    steps = []
    for name in pipeline.downstream(set(direct)):
        last = store.last_parts(pipeline.name, name)
        steps.append(ImpactedStep(name, direct.get(name, "downstream of a changed step"),
                                  pipeline.output_repo(pipeline.step(name)), last[1] if last else None))
    return Impact(target, kind, steps, lineage)
