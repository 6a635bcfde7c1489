"""Cache soundness: after any change, exactly the affected steps and their descendants re-run,
and what the cache kept equals what a fresh run computes.

The reference model: each step's output is a function of a few pieces of state (raw data, a
parameter, a step's code, a helper module, a second input). A step must run exactly when the
tuple its cache key covers - with upstream outputs by *content* - has not been seen before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pipeline_helpers import ran

if TYPE_CHECKING:
    from pipeline_helpers import Project

STEPS = '''
from threadline.pipelines import Input, Output, Pipeline, step
import prop_helpers

@step
def a(raw=Input("raw@main"), out=Output()):
    {a_body}

@step
def b(raw=Input("raw@main"), out=Output(), k=2):
    total = sum(len(f.read_bytes()) for f in raw.iterdir())
    (out / "size").write_text(str(prop_helpers.scale(total) * k))

@step
def c(x=Input("step:a"), y=Input("step:b"), out=Output()):
    data = b"".join(f.read_bytes() for f in sorted(x.iterdir()))
    (out / "joined").write_bytes(data + (y / "size").read_bytes())

@step
def d(other=Input("side@main"), out=Output()):
    (out / "copy").write_bytes((other / "s.txt").read_bytes())

@step
def e(x=Input("step:a"), out=Output()):
    (out / "n").write_text(str(sorted(f.name for f in x.iterdir())))

pipe = Pipeline("prop", steps=[a, b, c, d, e])
'''
A_BODIES = [
    "for f in sorted(raw.iterdir()): (out / f.name).write_bytes(f.read_bytes().upper())",
    "for f in sorted(raw.iterdir()): (out / f.name).write_bytes(f.read_bytes().upper())  # same",
    "for f in sorted(raw.iterdir()): (out / f.name).write_bytes(f.read_bytes().lower())",
]
A_MEANING = [0, 0, 1]  # bodies 0 and 1 compute the same output
HELPERS = ["def scale(x):\n    return x\n", "def scale(x):\n    return x + 1000\n"]
# variant 3 upper-cases like variant 0: a's output is the same, so c and e stay cached
RAW = [{"x.txt": b"hello1", "y.txt": b"World"}, {"x.txt": b"hello2", "y.txt": b"World"},
       {"x.txt": b"hello1", "y.txt": b"Worle"}, {"x.txt": b"hellO1", "y.txt": b"World"}]
SIDE = [b"one", b"two"]


class Model:
    """The state, the steps' dependency tuples and which of them already ran."""

    def __init__(self) -> None:
        self.state = {"raw": 0, "k": 2, "a_code": 0, "helper": 0, "side": 0}
        self.seen: set[tuple[Any, ...]] = set()

    def keys(self) -> dict[str, tuple[Any, ...]]:
        s = self.state
        # a step's inputs are keyed by content: model each output's content as the step computes it
        raw = RAW[s["raw"]]
        a_out = tuple(sorted((n, d.upper() if A_MEANING[s["a_code"]] == 0 else d.lower())
                             for n, d in raw.items()))
        total = sum(len(d) for d in raw.values())
        b_out = ("b", (total + 1000 * s["helper"]) * s["k"])
        return {"a": ("a", s["raw"], s["a_code"]), "b": ("b", s["raw"], s["k"], s["helper"]),
                "c": ("c", a_out, b_out),
                "d": ("d", s["side"]), "e": ("e", a_out)}

    def expect(self) -> set[str]:
        keys = self.keys()
        fresh = {name for name, key in keys.items() if key not in self.seen}
        self.seen.update(keys.values())
        return fresh


def _apply(project: Project, model: Model, change: str, value: int) -> dict[str, Any]:
    s = model.state
    params: dict[str, Any] = {}
    if change == "raw":
        s["raw"] = value % len(RAW)
    elif change == "k":
        s["k"] = 2 + value % 2
    elif change == "a_code":
        s["a_code"] = value % len(A_BODIES)
    elif change == "helper":
        s["helper"] = value % len(HELPERS)
    elif change == "side":
        s["side"] = value % len(SIDE)
    project.commit("raw", RAW[s["raw"]])
    project.commit("side", {"s.txt": SIDE[s["side"]]})
    project.module("prop_helpers", HELPERS[s["helper"]])
    mod = project.module("prop_steps", STEPS.format(a_body=A_BODIES[s["a_code"]]))
    params["k"] = s["k"]
    return {"spec": mod.pipe.spec(), "params": params}


def _run(project: Project, model: Model, change: str, value: int) -> set[str]:
    setup = _apply(project, model, change, value)
    result = project.run(setup["spec"], params=setup["params"])
    assert result.status == "succeeded", result.to_dict()
    return ran(result)


def _assert_cache_equals_fresh_run(project: Project, model: Model) -> None:
    spec = project.module("prop_steps", STEPS.format(a_body=A_BODIES[model.state["a_code"]])).pipe.spec()
    kept = {s.name: project.tree(f"prop-{s.name}") for s in spec.steps}
    project.forget_cache()
    fresh = project.run(spec, params={"k": model.state["k"]})
    assert ran(fresh) == set(kept)
    assert {name: project.tree(f"prop-{name}") for name in kept} == kept


MUTATIONS = [
    ("nothing", 0, set()),
    ("raw", 1, {"a", "b", "c", "e"}),                 # one input byte
    ("raw", 3, {"a", "b"}),                           # one byte, but a's output is unchanged
    ("k", 1, {"b", "c"}),                             # one parameter
    ("a_code", 2, {"a", "c", "e"}),                   # a step's code (its output changes)
    ("a_code", 1, {"a"}),                             # code changes, output identical: stop there
    ("helper", 1, {"b", "c"}),                        # a project helper one step calls
    ("side", 1, {"d"}),                               # an independent input
]


@pytest.mark.parametrize(("change", "value", "expected"), MUTATIONS,
                         ids=[f"{m[0]}-{m[1]}" for m in MUTATIONS])
def test_a_change_reruns_exactly_the_affected_steps(
    project: Project, change: str, value: int, expected: set[str]
) -> None:
    model = Model()
    assert _run(project, model, "nothing", 0) == model.expect() == {"a", "b", "c", "d", "e"}
    assert _run(project, model, change, value) == model.expect() == expected
    assert _run(project, model, "nothing", 0) == set()  # and then all of it is cached
    _assert_cache_equals_fresh_run(project, model)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.lists(st.tuples(st.sampled_from(["raw", "k", "a_code", "helper", "side"]),
                                  st.integers(0, 5)), min_size=1, max_size=4))
def test_any_sequence_of_changes_matches_the_model(project: Project, changes: list[tuple[str, int]]) -> None:
    # one home for every example: the model remembers what ran in earlier examples too
    model = getattr(project, "_model", None)
    if model is None:
        model = Model()
        project._model = model  # type: ignore[attr-defined]
        assert _run(project, model, "nothing", 0) == model.expect()
    for change, value in changes:
        assert _run(project, model, change, value) == model.expect(), (change, value, model.state)


def test_cached_outputs_equal_a_fresh_run_after_changes(project: Project) -> None:
    model = Model()
    for change, value in [("nothing", 0), ("raw", 2), ("k", 1), ("a_code", 2), ("helper", 1)]:
        _run(project, model, change, value)
    _assert_cache_equals_fresh_run(project, model)
