"""Signatures inferred from arrays, frames, Arrow tables and records; validation names the field."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from threadline.registry.signature import SignatureError, infer, validate

COLUMNS = {"type": "columns", "columns": [{"name": "age", "dtype": "integer"},
                                          {"name": "income", "dtype": "float"},
                                          {"name": "city", "dtype": "string"}]}


def test_infer_from_a_data_frame_an_arrow_table_and_records_gives_the_same_columns() -> None:
    frame = pd.DataFrame({"age": [30, 40], "income": [1.5, 2.5], "city": ["a", "b"]})
    records = [{"age": 30, "income": 1.5, "city": "a"}, {"age": 40, "income": 2.5, "city": "b"}]
    assert infer(frame)["inputs"] == COLUMNS
    assert infer(pa.Table.from_pandas(frame, preserve_index=False))["inputs"] == COLUMNS
    assert infer(records)["inputs"] == COLUMNS
    assert infer({"age": [1], "income": [2.0], "city": ["x"]})["inputs"] == COLUMNS


def test_infer_from_arrays_records_dtype_family_and_shape_with_outputs() -> None:
    signature = infer(np.zeros((4, 3), dtype=np.float32), np.array([1, 0, 1, 1]))
    assert signature == {"inputs": {"type": "tensor", "dtype": "float", "shape": [-1, 3]},
                         "outputs": {"type": "tensor", "dtype": "integer", "shape": [-1]}}
    assert infer([[1, 2], [3, 4]])["inputs"] == {"type": "tensor", "dtype": "integer", "shape": [-1, 2]}


def test_validate_accepts_matching_data_and_integers_for_floats() -> None:
    validate({"inputs": COLUMNS}, [{"age": 1, "income": 2, "city": "x"}])
    validate({"inputs": COLUMNS}, pd.DataFrame({"age": [1], "income": [2.0], "city": ["x"]}))
    validate({}, object())  # no signature: anything goes


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ({"age": 1, "city": "x"}, "income", "missing column 'income' in row 0"),
        ({"age": 1, "income": 2.0, "city": "x", "zip": 1}, "zip", "unexpected column 'zip'"),
        ({"age": "old", "income": 2.0, "city": "x"}, "age",
         "column 'age' should be integer but row 0 has string"),
        ({"age": 1.5, "income": 2.0, "city": "x"}, "age", "should be integer but row 0 has float"),
    ],
)
def test_validate_names_the_missing_extra_or_mistyped_column(
    row: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(SignatureError, match=message) as info:
        validate({"inputs": COLUMNS}, [row])
    assert info.value.field == field


def test_validate_a_frame_with_a_wrong_type_and_a_tensor_with_a_wrong_shape() -> None:
    frame = pd.DataFrame({"age": ["a"], "income": [2.0], "city": ["x"]})
    with pytest.raises(SignatureError, match="column 'age' should be integer but is string"):
        validate({"inputs": COLUMNS}, frame)
    tensor = {"inputs": {"type": "tensor", "dtype": "float", "shape": [-1, 3]}}
    validate(tensor, np.zeros((2, 3)))
    with pytest.raises(SignatureError, match=r"takes shape \[-1, 3\], got \[-1, 4\]"):
        validate(tensor, np.zeros((2, 4)))
    with pytest.raises(SignatureError, match="takes float values, got string"):
        validate(tensor, np.array([["a", "b", "c"]]))


def test_the_signature_module_does_not_import_pandas_or_pyarrow() -> None:
    code = ("import sys, threadline.registry.signature as s\n"
            "s.validate(s.infer([{'a': 1}]), [{'a': 2}])\n"
            "print([m for m in ('pandas', 'pyarrow') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
