"""Arrow arrays as NumPy arrays without pyarrow's conversion (which imports pandas)."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pytest

from threadline.prep.arrays import arrow_mask, arrow_of, arrow_scalar, numpy_filled, numpy_of

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.parametrize("array", [
    pa.array([True, False, True, True, False, False, True, False, True, True]).slice(3),
    pa.array([True] * 17).slice(9, 5),
    pa.array([1, 2, 3, 4], pa.int8()).slice(1),
    pa.array([1.5, -2.5, 3.0]).slice(1, 1),
    pa.array([], pa.bool_()),
    pa.array([], pa.uint32()),
    pa.array([1, None, 3]),  # nulls: pyarrow's own conversion
    pa.chunked_array([[1, 2], [3]]),
])
def test_numpy_of_matches_pyarrow(array: pa.Array) -> None:
    expected = array.to_numpy(zero_copy_only=False)
    got = numpy_of(array)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(("array", "fill"), [
    (pa.array([1, None, 3, None, 5], pa.int32()).slice(1), 0),
    (pa.array([1.5, None, float("nan"), 2.0]), float("-inf")),
    (pa.array([True, None, False, None, True, True, None, False, True]).slice(2), False),
    (pa.array([True, None, False, None, True, True, None, False, True]).slice(1, 6), True),
    (pa.array([4, 5, 6], pa.uint8()), 9),  # no nulls: a view
])
def test_numpy_filled_matches_fill_null(array: pa.Array, fill: object) -> None:
    import pyarrow.compute as pc

    expected = pc.fill_null(array, fill).to_numpy(zero_copy_only=False)
    got = numpy_filled(array, fill)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def test_arrow_mask_and_arrow_of_round_trip() -> None:
    mask = np.array([True, False, True, True, False, False, True, False, True, True, False])
    assert arrow_mask(mask).to_pylist() == mask.tolist()
    assert arrow_mask(mask[3:]).to_pylist() == mask[3:].tolist()
    values = np.arange(10, dtype=np.int64)[::3]  # not contiguous
    assert arrow_of(values).to_pylist() == [0, 3, 6, 9]
    assert arrow_of(np.array([1.5, 2.5], dtype=np.float32)).type == pa.float32()


def test_profiling_hashing_and_filtering_a_csv_do_not_import_pandas(tmp_path: Path) -> None:
    """pyarrow's to_numpy imports pandas, about 0.3 s of every `prep` command before this."""
    source = tmp_path / "t.csv"
    source.write_text("a,b,c,d,e\n1,x,2.5,true,2025-01-02\n2,,3.5,false,2025-01-03\n,y,,,\n")  # nulls too
    code = ("import sys, pyarrow.csv as c\n"
            "from threadline.prep.hashing import key_hashes\n"
            "from threadline.prep.profile import TableProfile\n"
            f"batches = list(c.open_csv({str(source)!r}))\n"
            "TableProfile.from_batches(batches)\n"
            "from threadline.prep.arrays import arrow_mask\n"
            "hashes = key_hashes(batches[0], batches[0].schema.names, 7)\n"
            "batches[0].filter(arrow_mask(hashes % 2 == 0))\n"
            "print('pandas' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize(("value", "type_"), [
    (True, None), (False, pa.bool_()), (0, None), (-(1 << 63), None), ((1 << 63) - 1, None),
    (2.5, None), (3, pa.float32()), (2.0, pa.int16()), (None, pa.float64()), (None, None),
    ("text", None), ("7", pa.string()),
])
def test_arrow_scalar_matches_pa_scalar(value: object, type_: pa.DataType | None) -> None:
    expected = pa.scalar(value) if type_ is None else pa.scalar(value).cast(type_)
    got = arrow_scalar(value, type_)
    assert got.type == expected.type
    assert got.as_py() == expected.as_py()
    assert got.is_valid == expected.is_valid


CLEANSE_SPEC = """format: threadline.cleanse/1
steps:
  - strip: [s]
  - missing: {x: {strategy: mean}}
  - outliers: {x: {method: clip, min: 0, max: 5}}
  - outliers: {y: {method: drop, min: 1}}
  - derive: {z: "x * 2 + y / y"}
"""
CLEANSE_SCRIPT = """
import sys
import pyarrow.csv as c
from threadline.prep.cleanse import CleanseSpec, cleanse_table
spec = CleanseSpec.from_yaml(sys.argv[2])
batches = list(c.open_csv(sys.argv[1]))
rows = sum(b.num_rows for b in cleanse_table(lambda: batches, spec.fit(lambda: batches)))
print(rows, "pandas" in sys.modules)
"""


def test_cleansing_with_the_usual_rules_does_not_import_pandas(tmp_path: Path) -> None:
    """Python values made into Arrow scalars import pandas: 0.2 s of `prep cleanse` before."""
    source = tmp_path / "t.csv"
    source.write_text("s,x,y\n a ,1.5,0\nb,,3\n c,9,2\n")
    done = subprocess.run([sys.executable, "-c", CLEANSE_SCRIPT, str(source), CLEANSE_SPEC],
                          capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["2", "False"]  # the row with y < 1 dropped
