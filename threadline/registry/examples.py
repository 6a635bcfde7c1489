"""The example batch stored with a model version, as JSON: what latency gates and the serving
layer's warm-up call the model with.

Stored as `{"kind": "ndarray", "dtype": "float64", "data": [[...]]}` or
`{"kind": "pandas"|"arrow"|"records", "columns": [...], "data": [{...}, ...]}`; reading it back
gives the same kind of object the example was (pandas and pyarrow imported only then).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from threadline.errors import InvalidArgument
from threadline.registry.flavors.base import require

if TYPE_CHECKING:
    from pathlib import Path

EXAMPLE_FILE = "input_example.json"
#: rows kept: enough for a latency measurement, small enough to sit beside the model
MAX_ROWS = 100


def encode(example: Any) -> dict[str, Any]:
    """A JSON-ready form of the first `MAX_ROWS` rows of an example input."""
    if hasattr(example, "columns") and hasattr(example, "iloc"):
        head = example.head(MAX_ROWS)
        return {"kind": "pandas", "columns": [str(c) for c in head.columns],
                "data": json.loads(head.to_json(orient="records", date_format="iso"))}
    if hasattr(example, "schema") and hasattr(example, "column_names"):
        head = example.slice(0, MAX_ROWS)
        return {"kind": "arrow", "columns": list(head.column_names), "data": head.to_pylist()}
    if hasattr(example, "dtype") and hasattr(example, "tolist"):
        return {"kind": "ndarray", "dtype": str(example.dtype), "data": example[:MAX_ROWS].tolist()}
    if isinstance(example, list) and all(isinstance(r, dict) for r in example):
        return {"kind": "records", "data": example[:MAX_ROWS]}
    if isinstance(example, list):
        return {"kind": "list", "data": example[:MAX_ROWS]}
    raise InvalidArgument(f"cannot store an example of type {type(example).__name__}; give an "
                          "array, a data frame, an Arrow table or a list of dicts")


def decode(stored: dict[str, Any]) -> Any:
    """The example as the kind of object it was given as."""
    kind = stored.get("kind")
    data = stored.get("data")
    if kind == "ndarray":
        return require("numpy", "sklearn").asarray(data, dtype=stored.get("dtype"))
    if kind == "pandas":
        return require("pandas", "sklearn").DataFrame.from_records(data, columns=stored["columns"])
    if kind == "arrow":
        return require("pyarrow", "sklearn").Table.from_pylist(data)
    if kind in ("records", "list"):
        return data
    raise InvalidArgument(f"unknown stored example kind {kind!r}")


def write_example(folder: Path, example: Any) -> str:
    """Write the example file into a model folder; return its name."""
    text = json.dumps(encode(example), default=str, allow_nan=True)
    (folder / EXAMPLE_FILE).write_text(text)
    return EXAMPLE_FILE


def read_example(folder: Path, name: str) -> Any:
    """Read an example file back."""
    try:
        stored = json.loads((folder / name).read_text())
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"cannot read the stored example {name}: {exc}") from exc
    if not isinstance(stored, dict):
        raise InvalidArgument(f"the stored example {name} is not an object")
    return decode(stored)
