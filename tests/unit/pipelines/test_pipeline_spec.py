"""Pipeline model validation: names, inputs, cycles, overrides; the Python and YAML front ends."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from threadline.errors import InvalidArgument
from threadline.pipelines.spec import DatumSpec, InputSpec, StepSpec, apply_overrides, build
from threadline.pipelines.yaml_spec import load_text, render

if TYPE_CHECKING:
    from pipeline_helpers import Project


def _step(name: str, *sources: str, **params: object) -> StepSpec:
    inputs = tuple(InputSpec.parse(f"in{i}", s) for i, s in enumerate(sources))
    return StepSpec(name, "command", "true", inputs, dict(params), argv=("true",))


def test_steps_come_out_upstream_first_in_declared_order() -> None:
    spec = build("p", [_step("c", "step:b", "step:a"), _step("a", "raw@main"), _step("b", "step:a")], {})
    assert [s.name for s in spec.steps] == ["a", "b", "c"]
    assert spec.downstream({"b"}) == ["b", "c"]
    assert spec.output_repo(spec.step("a")) == "p-a"


@pytest.mark.parametrize(("steps", "message"), [
    ([_step("a"), _step("a")], "step 'a' is defined twice"),
    ([_step("a", "step:ghost")], "step 'a': input 'in0' reads step 'ghost', which is not in the pipeline"),
    ([_step("a", "step:b"), _step("b", "step:a")], "the steps a, b depend on each other in a cycle"),
    ([_step("a", "step:a")], "step 'a' reads its own output"),
    ([_step("1bad")], "step name '1bad' must start with a letter"),
    ([_step("x" * 40)], "at most 31"),
    ([], "has no steps"),
])
def test_invalid_pipelines_are_refused_naming_the_step(steps: list[StepSpec], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(")):
        build("p", steps, {})


def test_parameter_overrides_apply_to_declaring_steps_and_refuse_typos() -> None:
    spec = build("p", [_step("a", threshold=0.5), _step("b", threshold=0.1, k=1)], {})
    both = apply_overrides(spec, {"threshold": 0.9})
    assert [s.params["threshold"] for s in both.steps] == [0.9, 0.9]
    one = apply_overrides(spec, {"b.k": 3})
    assert one.step("b").params["k"] == 3
    assert one.step("a").params == {"threshold": 0.5}
    with pytest.raises(InvalidArgument, match="no step of pipeline 'p' has a parameter 'treshold'"):
        apply_overrides(spec, {"treshold": 1})


def test_datum_specs_parse_and_refuse_nonsense() -> None:
    assert DatumSpec.parse("file") == DatumSpec("file")
    assert DatumSpec.parse("glob:*.csv") == DatumSpec("glob", pattern="*.csv")
    assert DatumSpec.parse("partition:2") == DatumSpec("partition", depth=2)
    for bad in ("glob", "partition:0", "rows"):
        with pytest.raises(InvalidArgument, match="is not one of"):
            DatumSpec.parse(bad)
    assert InputSpec.parse("x", "step:feat:train.parquet").path == "train.parquet"


def test_the_python_api_refuses_incomplete_steps(project: Project) -> None:
    with pytest.raises(InvalidArgument, match=r"step 'f' has no `out: Path = Output\(\)` argument"):
        project.module("bad_steps1", """
            from threadline.pipelines import Input, step
            @step
            def f(raw=Input("raw@main")):
                pass
        """)
    with pytest.raises(InvalidArgument, match="argument 'x' needs a default"):
        project.module("bad_steps2", """
            from threadline.pipelines import Output, step
            @step
            def g(x, out=Output()):
                pass
        """)
    with pytest.raises(InvalidArgument, match="define steps at the top level of an importable module"):
        project.module("bad_steps3", """
            from threadline.pipelines import Output, step
            def make():
                @step
                def inner(out=Output()):
                    pass
            make()
        """)


def test_the_python_api_builds_a_validated_dag(project: Project) -> None:
    mod = project.module("good_steps", """
        from threadline.pipelines import Input, Output, Pipeline, step
        @step(retries=2, timeout_s=5, cpus=2, output="feats")
        def features(raw=Input("raw@main", datums="glob:*.csv"), out=Output(), threshold=0.5):
            pass
        @step
        def train(f=Input(features), out=Output()):
            pass
        pipe = Pipeline("churn", steps=[train, features])
    """)
    spec = mod.pipe.spec()
    assert [s.name for s in spec.steps] == ["features", "train"]
    features = spec.step("features")
    assert features.target == "good_steps:features"
    assert features.params == {"threshold": 0.5}
    assert features.retries == 2
    assert features.timeout_s == 5
    assert features.resources.cpus == 2
    assert spec.output_repo(features) == "feats"
    assert features.datum_input is not None
    assert str(features.datum_input.datums) == "glob:*.csv"
    assert spec.step("train").inputs[0].step == "features"
    assert mod.features(raw=None, out=None) is None  # still a plain callable


def test_yaml_is_validated_with_the_step_named(tmp_path: object) -> None:
    good = load_text("""
pipeline: churn
schedule: "*/5 * * * *"
steps:
  clean:
    uses: threadline.prep.cleanse
    inputs: {table: "raw@main:data.csv"}
    with: {spec: {}}
  feat:
    run: python make.py {inputs.clean} {output} --t {params.t}
    inputs: {clean: "step:clean", logs: {ref: "logs@main", datums: "glob:*.jsonl"}}
    params: {t: 0.5}
    retries: 1
""", "/nowhere")
    assert [s.name for s in good.steps] == ["clean", "feat"]
    assert good.schedule == "*/5 * * * *"
    assert good.step("feat").argv == ("python", "make.py", "{inputs.clean}", "{output}", "--t", "{params.t}")
    bad = {
        "steps: {a: {run: x, uses: y}}": "step 'a' needs exactly one of",
        "pipeline: p\nsteps: {a: {run: 'cat {inputs.nope}'}}": r"the command uses \{inputs.nope\}",
        "pipeline: p\nsteps: {a: {run: x, colour: red}}": r"step 'a': unknown keys \['colour'\]",
        "pipeline: p\nsteps: {a: {uses: threadline.prep.bake}}": "is not one of",
        "pipeline: p\nsteps: {a: {uses: threadline.prep.split, inputs: {x: r@main}}}": "named `table`",
        "pipeline: p\nsteps: [1]": "needs `pipeline: NAME`",
        "pipeline: p\nsteps: {a: {run: 'x \"unclosed'}}": "cannot split the command",
        ": : :": "not valid YAML",
    }
    for text, message in bad.items():
        with pytest.raises(InvalidArgument, match=message):
            load_text(text, "/nowhere")


def test_placeholders_fill_one_argument_each_and_never_reach_a_shell() -> None:
    argv = render(("cp", "{inputs.a}/x y", "{output}", "--n={params.n}", "{params.s}"),
                  {"a": "/in/a b"}, "/out", {"n": 3, "s": "$(rm -rf /); echo"})
    assert argv == ["cp", "/in/a b/x y", "/out", "--n=3", "$(rm -rf /); echo"]
