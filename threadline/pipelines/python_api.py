"""The Python way to write a pipeline: `@step` functions and a `Pipeline` object.

    from pathlib import Path
    from threadline.pipelines import Input, Output, Pipeline, step

    @step
    def features(raw: Path = Input("churn-raw@main", datums="glob:*.csv"),
                 out: Path = Output(), threshold: float = 0.5) -> None:
        for src in raw.rglob("*.csv"):            # one datum: the folder holds just its files
            (out / "features.csv").write_text(transform(src.read_text(), threshold))

    @step(retries=2, timeout_s=600, cpus=2)
    def train(feats: Path = Input("step:features"), out: Path = Output(), lr: float = 0.1) -> None:
        ...

    churn = Pipeline("churn", steps=[features, train])

At run time each `Input` argument is a `Path` to a read-only checkout of its commit (for a
datum-split input: of one datum's files), the `Output` argument an empty folder whose contents
become the output commit, and every other argument a parameter (JSON-ready, with a default,
overridable with `--param`). The decorated function stays a plain callable; the step is named
by `module:qualname` so a worker process imports it again instead of unpickling code.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import sys
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, overload

from threadline.errors import InvalidArgument, NotFound
from threadline.pipelines import reload
from threadline.pipelines.spec import InputSpec, PipelineSpec, Resources, StepSpec, build

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


@dataclass(frozen=True)
class Input:
    """Default value marking a parameter as an input: a data ref or `step:NAME[:path]`.

    Args:
        source: `repo@branch[:path]`, `step:NAME[:path]`, or a decorated step (its output).
        datums: split the input into datums: `file`, `glob:PATTERN` or `partition[:DEPTH]`.
    """

    source: str | StepFunction
    datums: str | None = None


@dataclass(frozen=True)
class Output:
    """Default value marking the parameter that receives the output folder.

    Args:
        repo: the output repo (default `<pipeline>-<step>`).
    """

    repo: str = ""


class StepFunction:
    """A function decorated with `@step`: still callable, plus what the engine needs."""

    def __init__(self, fn: Callable[..., Any], options: dict[str, Any]) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.options = options
        self.name: str = options.get("name") or fn.__name__
        self.target = f"{fn.__module__}:{fn.__qualname__}"
        if "<locals>" in fn.__qualname__ or fn.__module__ == "__main__":
            raise InvalidArgument(
                f"step {self.name!r} is defined inside a function or a script run as __main__; "
                "define steps at the top level of an importable module so worker processes can "
                "import them"
            )
        self.inputs, self.output, self.params = _signature(self.name, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def spec(self) -> StepSpec:
        """This step as a plain record."""
        opts = self.options
        return StepSpec(
            name=self.name, kind="python", target=self.target, inputs=tuple(self.inputs),
            params=dict(self.params), output=opts.get("output") or self.output,
            resources=Resources(opts.get("cpus", 1), opts.get("memory_mb"), opts.get("gpus", 0)),
            retries=int(opts.get("retries", 0)), timeout_s=opts.get("timeout_s"),
        )


def _signature(name: str, fn: Callable[..., Any]) -> tuple[list[InputSpec], str, dict[str, Any]]:
    inputs: list[InputSpec] = []
    output: str | None = None
    params: dict[str, Any] = {}
    for arg, p in inspect.signature(fn).parameters.items():
        default = p.default
        if isinstance(default, Input):
            source = default.source
            text = f"step:{source.name}" if isinstance(source, StepFunction) else source
            inputs.append(InputSpec.parse(arg, text, default.datums))
        elif isinstance(default, Output):
            if output is not None:
                raise InvalidArgument(f"step {name!r} declares two Output() arguments")
            output = default.repo
        elif default is inspect.Parameter.empty:
            raise InvalidArgument(
                f"step {name!r}: argument {arg!r} needs a default: Input(...), Output() or a "
                "parameter value"
            )
        else:
            params[arg] = default
    if output is None:
        raise InvalidArgument(f"step {name!r} has no `out: Path = Output()` argument")
    return inputs, output, params


def _output_arg(fn: Callable[..., Any]) -> str:
    try:
        return _OUTPUT_ARGS[fn]
    except (KeyError, TypeError):  # TypeError: a callable that takes no weak reference
        pass
    for arg, p in inspect.signature(fn).parameters.items():
        if isinstance(p.default, Output):
            with contextlib.suppress(TypeError):
                _OUTPUT_ARGS[fn] = arg
            return arg
    raise InvalidArgument(f"{getattr(fn, '__qualname__', fn)} has no Output() argument")


#: step function -> its Output argument (a function is loaded before every plan and job;
#: weak, so that the functions of modules imported again are not kept alive)
_OUTPUT_ARGS: weakref.WeakKeyDictionary[Callable[..., Any], str] = weakref.WeakKeyDictionary()


@overload
def step(fn: Callable[..., Any], /) -> StepFunction: ...
@overload
def step(
    *, name: str | None = None, output: str | None = None, retries: int = 0,
    timeout_s: float | None = None, cpus: float = 1, memory_mb: int | None = None, gpus: float = 0,
) -> Callable[[Callable[..., Any]], StepFunction]: ...


def step(
    fn: Callable[..., Any] | None = None, /, **options: Any
) -> StepFunction | Callable[[Callable[..., Any]], StepFunction]:
    """Declare a pipeline step (see the module docstring); usable bare or with options.

    Options: `name`, `output` (repo), `retries`, `timeout_s`, `cpus`, `memory_mb`, `gpus`.
    """
    if fn is not None:
        return StepFunction(fn, {})
    return lambda f: StepFunction(f, options)


class Pipeline:
    """A named set of `@step` functions (order does not matter: the DAG comes from inputs).

    Args:
        name: the pipeline's name.
        steps: the decorated functions.
        schedule: optional cron expression (5 fields) for `threadline pipeline watch`.
    """

    def __init__(self, name: str, steps: Sequence[StepFunction], schedule: str = "") -> None:
        self.name = name
        self.steps = list(steps)
        self.schedule = schedule
        for s in self.steps:
            if not isinstance(s, StepFunction):
                raise InvalidArgument(f"pipeline {name!r}: {s!r} is not decorated with @step")
        module = self.steps[0].fn.__module__ if self.steps else ""
        self._spec = build(name, [s.spec() for s in self.steps], {"kind": "module", "module": module},
                           schedule)

    def spec(self) -> PipelineSpec:
        """The validated pipeline."""
        return self._spec


def find_pipelines(module_name: str) -> dict[str, PipelineSpec]:
    """Every `Pipeline` defined at the top level of a module, by pipeline name."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise NotFound(f"cannot import pipeline module {module_name!r}: {exc}") from exc
    reload.remember_imports()  # stamped now: an edit before the first run is noticed by it
    found: dict[str, PipelineSpec] = {}
    for value in vars(module).values():
        if isinstance(value, Pipeline):
            spec = value.spec()
            found[spec.name] = PipelineSpec(spec.name, spec.steps,
                                            {"kind": "module", "module": module_name}, spec.schedule)
    return found


def load_function(target: str, *, fresh: bool = False) -> tuple[Callable[..., Any], str]:
    """Import `module:qualname` of a step; returns the plain function and its Output argument.

    With `fresh`, modules of the step's project whose files changed since this process imported
    them are imported again first (`reload.py`): once per run or job, not per datum.
    """
    module_name, _, qualname = target.partition(":")
    if fresh:
        reload.forget_changed(module_name)
    imported = module_name in sys.modules
    obj: Any = importlib.import_module(module_name)
    if not imported:
        reload.remember_imports()
    for part in qualname.split("."):
        obj = getattr(obj, part)
    fn = obj.fn if isinstance(obj, StepFunction) else obj
    return fn, _output_arg(fn)
