"""`threadline.yaml`: pipelines of shell-free commands and built-in preparation steps.

    pipeline: churn
    schedule: "0 3 * * *"            # optional, for `threadline pipeline watch`
    steps:
      clean:
        uses: threadline.prep.cleanse   # built-in: cleanse|dedupe|split|validate|ingest, threadline.train
        inputs: {table: "churn-raw@main:data.csv"}
        with: {spec: {columns: {age: {fill: median}}}}
      features:
        run: python scripts/features.py {inputs.clean} {output} --threshold {params.threshold}
        inputs:
          clean: step:clean
          logs: {ref: "churn-logs@main", datums: "glob:*.jsonl"}
        params: {threshold: 0.5}
        output: churn-features        # optional, default <pipeline>-<step>
        retries: 1
        timeout_s: 600
        resources: {cpus: 1, memory_mb: 2048}

A command is split with `shlex` once, then each argument's placeholders are filled in and the
list is run without a shell (SECURITY.md: configuration never becomes code). `{inputs.NAME}`
is the folder holding the input's checkout, `{output}` the folder whose contents become the
output commit, `{params.X}` a parameter. The file is read with `yaml.safe_load`.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import TYPE_CHECKING, Any

import yaml

from threadline.errors import InvalidArgument, NotFound
from threadline.pipelines.spec import InputSpec, PipelineSpec, Resources, StepSpec, build

if TYPE_CHECKING:
    from pathlib import Path

BUILTINS = ("cleanse", "dedupe", "split", "validate", "ingest", "train")
_PLACEHOLDER = re.compile(r"\{(inputs\.[A-Za-z0-9_-]+|params\.[A-Za-z0-9_-]+|output)\}")
_STEP_KEYS = {"run", "uses", "inputs", "params", "with", "output", "retries", "timeout_s",
              "resources"}


def load_file(path: Path) -> PipelineSpec:
    """Load and validate a `threadline.yaml`."""
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise NotFound(f"no pipeline file {path}; write one or pass --file / --module") from exc
    return load_text(text, str(path.resolve().parent))


def load_text(text: str, base: str) -> PipelineSpec:
    """Parse YAML text; `base` is the folder commands run in and relative files resolve from."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"pipeline file is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("steps"), dict):
        raise InvalidArgument("a pipeline file needs `pipeline: NAME` and a `steps:` mapping")
    name = str(doc.get("pipeline") or "")
    steps = [_step(str(key), value) for key, value in doc["steps"].items()]
    return build(name, steps, {"kind": "yaml", "text": text, "base": base},
                 str(doc.get("schedule") or ""))


def _step(name: str, doc: Any) -> StepSpec:
    if not isinstance(doc, dict):
        raise InvalidArgument(f"step {name!r} must be a mapping with `run:` or `uses:`")
    unknown = set(doc) - _STEP_KEYS
    if unknown:
        raise InvalidArgument(f"step {name!r}: unknown keys {sorted(unknown)}; "
                              f"allowed: {sorted(_STEP_KEYS)}")
    if ("run" in doc) == ("uses" in doc):
        raise InvalidArgument(f"step {name!r} needs exactly one of `run:` (a command) or `uses:`")
    inputs = tuple(_input(name, key, value) for key, value in (doc.get("inputs") or {}).items())
    res = doc.get("resources") or {}
    common: dict[str, Any] = {
        "name": name, "inputs": inputs, "output": str(doc.get("output") or ""),
        "retries": int(doc.get("retries") or 0), "timeout_s": doc.get("timeout_s"),
        "resources": Resources(res.get("cpus", 1), res.get("memory_mb"), res.get("gpus", 0)),
    }
    if "uses" in doc:
        uses = {"threadline.train" if b == "train" else f"threadline.prep.{b}": b for b in BUILTINS}
        raw = str(doc["uses"])
        op = uses.get(raw) or (raw if raw in BUILTINS else "")
        if not op:
            raise InvalidArgument(f"step {name!r}: `uses: {doc['uses']}` is not one of " + ", ".join(uses))
        params = dict(doc.get("with") or {})
        if op != "ingest" and [i.name for i in inputs] != ["table"]:
            raise InvalidArgument(f"step {name!r}: {doc['uses']} reads one input named "
                                  "`table` (a REPO@REV:PATH or step:NAME:PATH)")
        return StepSpec(kind="builtin", target=op, params=params, **common)
    command = doc["run"]
    try:
        argv = tuple(command) if isinstance(command, list) else tuple(shlex.split(str(command)))
    except ValueError as exc:
        raise InvalidArgument(f"step {name!r}: cannot split the command: {exc}") from exc
    if not argv:
        raise InvalidArgument(f"step {name!r} has an empty command")
    params = dict(doc.get("params") or {})
    names = {i.name for i in inputs}
    for arg in argv:
        for ref in _PLACEHOLDER.findall(str(arg)):
            kind, _, key = ref.partition(".")
            if (kind == "inputs" and key not in names) or (kind == "params" and key not in params):
                raise InvalidArgument(f"step {name!r}: the command uses {{{ref}}}, which the "
                                      f"step does not declare")
    return StepSpec(kind="command", target=" ".join(str(a) for a in argv), params=params,
                    argv=tuple(str(a) for a in argv), **common)


def _input(step: str, name: str, value: Any) -> InputSpec:
    if isinstance(value, str):
        return InputSpec.parse(name, value)
    if isinstance(value, dict) and isinstance(value.get("ref"), str):
        return InputSpec.parse(name, value["ref"], value.get("datums"))
    raise InvalidArgument(f"step {step!r}: input {name!r} must be a ref string or "
                          "{ref: ..., datums: ...}")


def render(argv: tuple[str, ...], inputs: dict[str, str], output: str, params: dict[str, Any]) -> list[str]:
    """Fill the placeholders of each argument (a value never splits into more arguments)."""

    def fill(match: re.Match[str]) -> str:
        kind, _, key = match.group(1).partition(".")
        if kind == "output":
            return output
        if kind == "inputs":
            return inputs[key]
        value = params[key]
        return value if isinstance(value, str) else json.dumps(value)

    return [_PLACEHOLDER.sub(fill, arg) for arg in argv]
