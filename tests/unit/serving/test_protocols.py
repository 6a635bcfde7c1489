"""The serving wire protocols: every accepted form decodes to the same checked rows, every bad
body is refused with the right error and a message naming the problem, nothing is unpickled."""

from __future__ import annotations

import csv
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from threadline.errors import InvalidArgument, ThreadlineError
from threadline.registry.signature import SignatureError
from threadline.serving.inputs import Inputs
from threadline.serving.protocols import (
    PICKLE_TYPES,
    STATUS,
    InputSpec,
    UnsupportedMediaType,
    decode_invocations,
    decode_predict,
    decode_v2,
    encode_invocations,
    encode_predict,
    encode_v2,
    v2_metadata,
    validate,
)

JSON = "application/json"
TABLE: dict[str, Any] = {"inputs": {"type": "columns", "columns": [{"name": "age", "dtype": "integer"},
                                                   {"name": "income", "dtype": "float"},
                                                   {"name": "city", "dtype": "string"},
                                                   {"name": "member", "dtype": "boolean"}]},
         "outputs": {"type": "tensor", "dtype": "integer", "shape": [-1]}}
TENSOR: dict[str, Any] = {"inputs": {"type": "tensor", "dtype": "float", "shape": [-1, 3]},
          "outputs": {"type": "tensor", "dtype": "float", "shape": [-1]}}
ROWS: list[dict[str, Any]] = [{"city": "Oslo", "age": 31, "income": 52000.5, "member": True},
                              {"member": False, "income": 10, "age": 45, "city": None}]
COLUMNS: dict[str, list[Any]] = {"age": [31, 45], "income": [52000.5, 10], "city": ["Oslo", None],
                                 "member": [True, False]}


def body(value: Any) -> bytes:
    return orjson.dumps(value)


def columns_of(inputs: Inputs) -> list[tuple[str, list[Any]]]:
    """Columns as an ordered list, so assertions check the column order too."""
    assert inputs.columns is not None
    return list(inputs.columns.items())


# --- POST /predict ------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [ROWS, {"records": ROWS}])
def test_predict_records_become_columns_in_the_signature_order(payload: Any) -> None:
    inputs = decode_predict(body(payload), JSON, TABLE)
    assert columns_of(inputs) == list(COLUMNS.items())
    assert inputs.rows == 2
    assert inputs.tensor is None


def test_predict_single_record_object_is_one_row() -> None:
    inputs = decode_predict(body(ROWS[0]), "application/json; charset=UTF-8", TABLE)
    assert columns_of(inputs) == [("age", [31]), ("income", [52000.5]), ("city", ["Oslo"]),
                                  ("member", [True])]
    assert inputs.rows == 1


def test_predict_record_with_a_column_named_records_is_a_record_not_a_wrapper() -> None:
    signature = {"inputs": {"type": "columns", "columns": [{"name": "records", "dtype": "any"}]}}
    inputs = decode_predict(body({"records": [1, 2]}), JSON, signature)
    assert columns_of(inputs) == [("records", [[1, 2]])]
    assert inputs.rows == 1


@pytest.mark.parametrize("payload", [{"instances": [[1, 2, 3], [4, 5.5, 6]]},
                                     [[1, 2, 3], [4, 5.5, 6]]])
def test_predict_tensor_rows_as_instances_or_a_bare_list(payload: Any) -> None:
    inputs = decode_predict(body(payload), JSON, TENSOR)
    assert inputs.tensor is not None
    assert inputs.columns is None
    assert inputs.tensor.dtype == np.float64
    assert inputs.rows == 2
    np.testing.assert_array_equal(inputs.tensor, [[1, 2, 3], [4, 5.5, 6]])


def test_predict_integer_rows_for_a_float_tensor_become_float() -> None:
    inputs = decode_predict(body([[1, 2, 3]]), JSON, TENSOR)
    assert inputs.tensor is not None
    assert inputs.tensor.dtype == np.float64


def test_predict_without_a_signature_keeps_the_request_as_it_came() -> None:
    table = decode_predict(body([{"b": 1, "a": "x"}]), JSON, None)
    assert columns_of(table) == [("b", [1]), ("a", ["x"])]
    tensor = decode_predict(body([[1, 2], [3, 4]]), JSON, {})
    assert tensor.tensor is not None
    assert tensor.tensor.shape == (2, 2)
    assert tensor.rows == 2


@pytest.mark.parametrize(("raw", "match"), [
    (b"{not json", "not valid JSON.*list of records"),
    (b"", "body is empty"),
    (b"   ", "body is empty"),
    (b"42", "JSON int"),
    (b"[]", "has no rows"),
    (b'{"records": []}', "has no rows"),
    (b'{"records": 5}', '"records" must be a list'),
    (b'{"instances": 5}', "must be a list of rows"),
    (b"[1, [2, 3]]", "do not form a tensor"),
    (b'[{"age": 1}, 7]', "record 1 is a int, not an object"),
])
def test_predict_malformed_bodies_are_invalid_arguments_naming_the_problem(raw: bytes,
                                                                          match: str) -> None:
    with pytest.raises(InvalidArgument, match=match) as info:
        decode_predict(raw, JSON, None if b"age" in raw else TENSOR)
    assert not isinstance(info.value, SignatureError)


def test_predict_records_with_different_keys_are_invalid_without_a_signature() -> None:
    with pytest.raises(InvalidArgument, match=r"record 1 lacks 'a'.*same keys"):
        decode_predict(body([{"a": 1}, {"b": 2}]), JSON, None)
    with pytest.raises(InvalidArgument, match="record 1 has 'b'"):
        decode_predict(body([{"a": 1}, {"a": 1, "b": 2}]), JSON, None)


@pytest.mark.parametrize(("rows", "field", "match"), [
    ([ROWS[0], {"age": 1, "income": 1.0, "member": True}], "city",
     "missing column 'city' in record 1"),
    ([ROWS[0], {**ROWS[1], "zip": "0150"}], "zip", "unexpected column 'zip' in record 1; the model "
     "takes age, income, city, member"),
    ([ROWS[0], {**ROWS[1], "age": "45"}], "age", "column 'age' takes integer values but row 1 has "
     "string"),
    ([{**ROWS[0], "age": 31.0}], "age", "row 0 has float"),
    ([{**ROWS[0], "age": True}], "age", "row 0 has boolean"),
    ([{**ROWS[0], "member": 1}], "member", "takes boolean values but row 0 has integer"),
    ([{**ROWS[0], "income": [1.0]}], "income", "takes float values but row 0 has array"),
    ([{**ROWS[0], "city": {"name": "Oslo"}}], "city", "row 0 has object"),
])
def test_predict_rows_that_do_not_match_the_signature_name_the_field_and_row(
        rows: list[dict[str, Any]], field: str, match: str) -> None:
    with pytest.raises(SignatureError, match=match) as info:
        decode_predict(body(rows), JSON, TABLE)
    assert info.value.field == field


def test_predict_accepts_null_in_every_column() -> None:
    inputs = decode_predict(body([dict.fromkeys(COLUMNS)]), JSON, TABLE)
    assert columns_of(inputs) == [(name, [None]) for name in COLUMNS]


@pytest.mark.parametrize(("payload", "field", "match"), [
    ([[1, 2]], "shape", r"takes shape \[-1, 3\].*got \[-1, 2\]"),
    ([[[1, 2, 3]]], "shape", r"got \[-1, 1, 3\]"),
    ([["a", "b", "c"]], "dtype", "takes float values; got string"),
    ([[1, None, {"x": 1}]], "dtype", "not numbers"),
    ([{"a": 1.0, "b": 2.0, "c": 3.0}], "shape", "takes a float tensor.*got a table with columns a"),
])
def test_predict_tensors_that_do_not_match_the_signature(payload: Any, field: str,
                                                         match: str) -> None:
    with pytest.raises(SignatureError, match=match) as info:
        decode_predict(body(payload), JSON, TENSOR)
    assert info.value.field == field


def test_predict_rows_for_a_table_model_name_the_columns_to_send() -> None:
    with pytest.raises(SignatureError, match="takes a table with columns age, income, city, "
                                             "member; got a tensor") as info:
        decode_predict(body([[1, 2.0, "x", True]]), JSON, TABLE)
    assert info.value.field == "columns"


def test_null_in_a_float_tensor_becomes_nan() -> None:
    inputs = decode_predict(body([[1, None, 3]]), JSON, TENSOR)
    assert inputs.tensor is not None
    assert np.isnan(inputs.tensor[0, 1])


def test_datetime_and_binary_columns_take_iso_text_and_base64() -> None:
    signature = {"inputs": {"type": "columns", "columns": [{"name": "at", "dtype": "datetime"},
                                                           {"name": "blob", "dtype": "binary"}]}}
    good = [{"at": "2026-11-27T14:00:00+00:00", "blob": "aGVsbG8="}, {"at": None, "blob": None}]
    assert columns_of(decode_predict(body(good), JSON, signature)) == [
        ("at", ["2026-11-27T14:00:00+00:00", None]), ("blob", ["aGVsbG8=", None])]
    with pytest.raises(SignatureError, match="row 1 has 'yesterday', which is not an ISO 8601"):
        decode_predict(body([good[0], {"at": "yesterday", "blob": None}]), JSON, signature)
    with pytest.raises(SignatureError, match="not base64 text") as info:
        decode_predict(body([{"at": None, "blob": "*not base64*"}]), JSON, signature)
    assert info.value.field == "blob"


# --- content types and pickle -------------------------------------------------------------


class _Canary:
    """Pickles to a payload whose unpickling creates a file: proof that something unpickled it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (Path.touch, (self.path,))


@pytest.fixture
def canary(tmp_path: Path) -> tuple[bytes, Path]:
    marker = tmp_path / "unpickled"
    return pickle.dumps(_Canary(marker)), marker


def test_the_canary_payload_really_creates_its_file_when_unpickled(
        canary: tuple[bytes, Path]) -> None:
    payload, marker = canary
    pickle.loads(payload)  # our own bytes: shows the other tests' canary is live
    assert marker.exists()


DECODERS = [decode_predict, decode_invocations, decode_v2]


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("content_type", sorted(PICKLE_TYPES | {"Application/Python-Pickle",
                                                                "application/x-pickle; charset=utf-8"}))
def test_pickled_bodies_are_refused_by_content_type_and_never_unpickled(
        decoder: Any, content_type: str, canary: tuple[bytes, Path]) -> None:
    payload, marker = canary
    with pytest.raises(UnsupportedMediaType, match=r"never accepts pickled bodies.*Send application/json"):
        decoder(payload, content_type, TABLE)
    assert not marker.exists()


@pytest.mark.parametrize("decoder", DECODERS)
def test_a_pickle_sent_as_json_is_a_bad_body_and_never_unpickled(
        decoder: Any, canary: tuple[bytes, Path]) -> None:
    payload, marker = canary
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        decoder(payload, JSON, TABLE)
    assert not marker.exists()


@pytest.mark.parametrize(("decoder", "content_type", "match"), [
    (decode_predict, "application/octet-stream", "does not accept Content-Type "
     "'application/octet-stream'; send application/json"),
    (decode_predict, "text/csv", "send application/json"),
    (decode_predict, "", "'\\(none\\)'"),
    (decode_invocations, "application/x-www-form-urlencoded", "send application/json or text/csv"),
    (decode_invocations, "application/json; charset=latin-1", "only reads UTF-8"),
    (decode_invocations, "application/json; format=pandas-split", "unrecognized content type "
     "parameter 'format'"),
    (decode_v2, "text/csv", "send application/json"),
    (decode_v2, "application/octet-stream", "Inference-Header-Content-Length.*binary_data=False"),
])
def test_content_types_a_route_does_not_take_are_refused_with_what_to_send(
        decoder: Any, content_type: str, match: str) -> None:
    with pytest.raises(UnsupportedMediaType, match=match) as info:
        decoder(body(ROWS), content_type, TABLE)
    assert STATUS[type(info.value)] == 415


# --- POST /invocations --------------------------------------------------------------------

SPLIT = {"columns": ["member", "city", "age", "income"],
         "data": [[True, "Oslo", 31, 52000.5], [False, None, 45, 10]]}


@pytest.mark.parametrize("payload", [
    {"dataframe_split": SPLIT},
    {"dataframe_split": {**SPLIT, "index": [7, 8]}},
    {"dataframe_split": {"data": [[31, 52000.5, "Oslo", True], [45, 10, None, False]]}},
    {"dataframe_records": ROWS},
    {"instances": ROWS},
    {"inputs": ROWS},
    {"instances": COLUMNS},
    {"inputs": {"city": ["Oslo", None], "member": [True, False], "age": [31, 45],
                "income": [52000.5, 10]}},
    {"inputs": [[31, 52000.5, "Oslo", True], [45, 10, None, False]]},
    {"instances": ROWS, "params": {"temperature": 0.5}},
    {"dataframe_records": ROWS, "params": None},
])
def test_invocations_every_mlflow_form_gives_the_same_rows(payload: dict[str, Any]) -> None:
    inputs = decode_invocations(body(payload), JSON, TABLE)
    assert columns_of(inputs) == list(COLUMNS.items())
    assert inputs.rows == 2


def test_invocations_inputs_object_of_single_values_is_one_row() -> None:
    inputs = decode_invocations(body({"inputs": {"age": 3, "income": 1.5, "city": "x",
                                                 "member": False}}), JSON, TABLE)
    assert columns_of(inputs) == [("age", [3]), ("income", [1.5]), ("city", ["x"]),
                                  ("member", [False])]


def test_invocations_one_column_model_takes_a_list_of_values() -> None:
    signature = {"inputs": {"type": "columns", "columns": [{"name": "text", "dtype": "string"}]}}
    for payload in ({"inputs": ["a", "b"]}, {"instances": ["a", "b"]},
                    {"dataframe_split": {"columns": ["text"], "data": ["a", "b"]}}):
        assert columns_of(decode_invocations(body(payload), JSON, signature)) == [("text", ["a", "b"])]


@pytest.mark.parametrize("payload", [{"instances": [[1, 2, 3], [4, 5, 6]]},
                                     {"inputs": [[1, 2, 3], [4, 5, 6]]},
                                     {"dataframe_split": {"columns": ["a", "b", "c"],
                                                          "data": [[1, 2, 3], [4, 5, 6]]}}])
def test_invocations_tensor_forms(payload: dict[str, Any]) -> None:
    inputs = decode_invocations(body(payload), JSON, TENSOR)
    assert inputs.tensor is not None
    np.testing.assert_array_equal(inputs.tensor, [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])


@pytest.mark.parametrize(("payload", "match"), [
    ({}, "got keys none; send a JSON object with exactly one of the keys dataframe_split, "
         "dataframe_records, instances, inputs"),
    ({"instances": ROWS, "inputs": ROWS}, "got keys instances, inputs; .*exactly one of"),
    ({"columns": ["a"], "data": [[1]]}, "exactly one of.*MLflow 1's"),
    ({"inputs": ROWS, "params": [1]}, '"params" must be an object'),
    ({"dataframe_split": ROWS}, "dataframe_split must be an object"),
    ({"dataframe_split": {"columns": ["age"]}}, "must have a 'data' field"),
    ({"dataframe_split": {"data": [[1]], "dtype": "x"}}, "must have a 'data' field"),
    ({"dataframe_split": {"columns": ["age", "age"], "data": [[1, 2]]}}, "names a column twice"),
    ({"dataframe_split": {"columns": ["age", "city"], "data": [[1, "a"], [2]]}},
     "row 1 of 'data' has 1 values but 'columns' names 2"),
    ({"dataframe_split": {"columns": ["age"], "data": [[1]], "index": [1, 2]}}, "'index' must be"),
    ({"dataframe_split": {"columns": "age", "data": [[1]]}}, "'columns' must be a list"),
    ({"dataframe_split": {"data": []}}, "has no rows"),
    ({"dataframe_records": {"age": [1]}}, "must be a list of records"),
    ({"inputs": {"age": [1, 2], "city": ["a"]}}, "column 'city' has 1 values but 'age' has 2"),
    ({"inputs": {"age": [1], "city": "a"}}, "mixes lists and single values"),
    ({"inputs": {}}, "has no columns"),
    ({"inputs": 5}, "must be a list of rows"),
    ({"instances": []}, "has no rows"),
])
def test_invocations_malformed_json_bodies(payload: Any, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match) as info:
        decode_invocations(body(payload), JSON, None)
    assert not isinstance(info.value, SignatureError)


def test_invocations_a_list_body_names_the_accepted_keys() -> None:
    with pytest.raises(InvalidArgument, match="got a JSON list; send a JSON object with exactly "
                                              "one of the keys dataframe_split"):
        decode_invocations(body(ROWS), JSON, TABLE)


def test_invocations_signature_mismatches_are_signature_errors() -> None:
    with pytest.raises(SignatureError, match="row 1 has 3 values but the model takes 4 columns"):
        decode_invocations(body({"inputs": [[1, 2.0, "a", True], [1, 2.0, "a"]]}), JSON, TABLE)
    with pytest.raises(SignatureError, match="unexpected column 'zip'") as info:
        decode_invocations(body({"dataframe_split": {"columns": ["age", "income", "city",
                                                                "member", "zip"],
                                                    "data": [[1, 1.0, "a", True, "z"]]}}),
                           JSON, TABLE)
    assert info.value.field == "zip"
    with pytest.raises(SignatureError, match="missing column 'member'"):
        decode_invocations(body({"inputs": {"age": [1], "income": [1.0], "city": ["a"]}}),
                           JSON, TABLE)


def test_invocations_split_without_columns_and_without_a_signature_is_a_tensor() -> None:
    inputs = decode_invocations(body({"dataframe_split": {"data": [[1, 2], [3, 4]]}}), JSON, None)
    assert inputs.tensor is not None
    assert inputs.tensor.shape == (2, 2)


def test_invocations_ignore_unknown_keys_next_to_one_input_key_as_mlflow_does() -> None:
    inputs = decode_invocations(body({"dataframe_records": ROWS, "extra": 1}), JSON, TABLE)
    assert inputs.rows == 2


# --- CSV ----------------------------------------------------------------------------------


def test_csv_cells_become_their_columns_types_in_the_signature_order() -> None:
    text = ('member,city,income,age\r\n'
            'true,"Oslo, Norway",52000.5,31\r\n'
            'FALSE,,10,45\r\n'
            '1,Bergen,,\r\n'
            '\r\n')
    inputs = decode_invocations(("\ufeff" + text).encode(), "text/csv; charset=utf-8", TABLE)
    assert columns_of(inputs) == [("age", [31, 45, None]), ("income", [52000.5, 10.0, None]),
                                  ("city", ["Oslo, Norway", None, "Bergen"]),
                                  ("member", [True, False, True])]


def test_csv_without_a_signature_infers_each_columns_type() -> None:
    inputs = decode_invocations(b"a,b,c,d\n1,1.5,true,x\n2,2,False,3\n", "text/csv", None)
    assert columns_of(inputs) == [("a", [1, 2]), ("b", [1.5, 2.0]), ("c", [True, False]),
                                  ("d", ["x", "3"])]


def test_csv_for_a_tensor_model_is_a_tensor() -> None:
    inputs = decode_invocations(b"x,y,z\n1,2,3\n4,5,6.5\n", "text/csv", TENSOR)
    assert inputs.tensor is not None
    np.testing.assert_array_equal(inputs.tensor, [[1, 2, 3], [4, 5, 6.5]])
    with pytest.raises(SignatureError, match="takes float values but row 1 has 'five'") as info:
        decode_invocations(b"x,y,z\n1,2,3\n4,five,6\n", "text/csv", TENSOR)
    assert info.value.field == "dtype"


@pytest.mark.parametrize(("text", "field", "match"), [
    (b"age,income,city,member\n1,2,a,true\nx,2,a,true\n", "age",
     "'age' takes integer values but row 1 has 'x'"),
    (b"age,income,city,member\n1,2,a,maybe\n", "member", "'member' takes boolean values"),
    (b"age,income,city,member\n1,2.5.1,a,true\n", "income", "'income' takes float values"),
    (b"age,income,city\n1,2,a\n", "member", "missing column 'member'"),
])
def test_csv_cells_that_do_not_fit_the_signature(text: bytes, field: str, match: str) -> None:
    with pytest.raises(SignatureError, match=match) as info:
        decode_invocations(text, "text/csv", TABLE)
    assert info.value.field == field


@pytest.mark.parametrize(("text", "match"), [
    (b"", "CSV is empty"),
    (b"\n\n", "CSV is empty"),
    (b"a,b\n", "has no rows"),
    (b"a,b\n1,2\n3\n", "line 3 has 1 cells but the header has 2"),
    (b"a,a\n1,2\n", "names a column twice"),
    (b"a\n\xff\n", "not UTF-8"),
])
def test_malformed_csv_is_an_invalid_argument(text: bytes, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        decode_invocations(text, "text/csv", None)


# --- a reference model: every form of the same rows decodes the same ----------------------

_VALUES = {"integer": st.integers(-(2**53), 2**53) | st.none(),
           "float": st.floats(allow_nan=False, allow_infinity=False) | st.none(),
           "string": st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1)
           | st.none(),
           "boolean": st.booleans() | st.none()}


@st.composite
def _tables(draw: st.DrawFn) -> list[dict[str, Any]]:
    families = [c["dtype"] for c in TABLE["inputs"]["columns"]]
    names = [c["name"] for c in TABLE["inputs"]["columns"]]
    n = draw(st.integers(1, 5))
    return [{name: draw(_VALUES[family]) for name, family in zip(names, families)}
            for _ in range(n)]


def _csv(rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(list(rows[0]))
    writer.writerows([["" if v is None else repr(v) if isinstance(v, float) else v
                       for v in row.values()] for row in rows])
    return out.getvalue().encode()


@settings(max_examples=60, deadline=None)
@given(_tables())
def test_records_split_columns_and_csv_all_decode_to_the_same_table(
        rows: list[dict[str, Any]]) -> None:
    names = list(rows[0])
    expected = [(name, [row[name] for row in rows]) for name in names]
    forms = [
        decode_predict(body(rows), JSON, TABLE),
        decode_invocations(body({"dataframe_records": rows[::-1][::-1]}), JSON, TABLE),
        decode_invocations(body({"dataframe_split": {"columns": names[::-1], "data": [
            [row[n] for n in names[::-1]] for row in rows]}}), JSON, TABLE),
        decode_invocations(body({"inputs": dict(expected)}), JSON, TABLE),
        decode_invocations(_csv(rows), "text/csv", TABLE),
    ]
    for inputs in forms:
        assert columns_of(inputs) == expected
        assert inputs.cache_key() == forms[0].cache_key()


# --- Open Inference Protocol V2 -----------------------------------------------------------


def v2_input(name: str, array: np.ndarray[Any, Any], datatype: str) -> dict[str, Any]:
    """An input as tritonclient's InferInput.set_data_from_numpy(array, binary_data=False)
    writes it: the shape, the datatype, and the values flattened row-major."""
    return {"name": name, "shape": list(array.shape), "datatype": datatype,
            "data": array.flatten().tolist()}


def test_v2_table_model_takes_one_input_per_column() -> None:
    request = {"id": "req-1", "parameters": {"trace": True}, "outputs": [{"name": "predict"}],
               "inputs": [v2_input("member", np.array([True, False]), "BOOL"),
                          v2_input("city", np.array(["Oslo", "Bergen"], dtype=object), "BYTES"),
                          v2_input("age", np.array([[31], [45]], dtype=np.int32), "INT32"),
                          {"name": "income", "shape": [2, 1], "datatype": "FP64",
                           "data": [[52000.5], [10]]}]}
    decoded = decode_v2(body(request), JSON, TABLE)
    assert columns_of(decoded.inputs) == [("age", [31, 45]), ("income", [52000.5, 10]),
                                          ("city", ["Oslo", "Bergen"]), ("member", [True, False])]
    assert decoded.id == "req-1"
    assert decoded.outputs == ["predict"]
    assert decoded.parameters == {"trace": True}
    assert decoded.inputs.rows == 2


def test_v2_tensor_model_reshapes_the_flat_data_rows_first() -> None:
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    decoded = decode_v2(body({"inputs": [v2_input("INPUT0", array, "FP32")]}), "", TENSOR)
    tensor = decoded.inputs.tensor
    assert tensor is not None
    assert tensor.dtype == np.float32
    assert decoded.inputs.rows == 2
    np.testing.assert_array_equal(tensor, array)
    assert decoded.id is None
    assert decoded.outputs == []
    assert decoded.parameters == {}


def test_v2_integer_data_for_a_float_tensor_becomes_float() -> None:
    array = np.arange(3, dtype=np.int64).reshape(1, 3)
    decoded = decode_v2(body({"inputs": [v2_input("x", array, "INT64")]}), JSON, TENSOR)
    assert decoded.inputs.tensor is not None
    assert decoded.inputs.tensor.dtype == np.float64


def test_v2_without_a_signature_one_input_is_a_tensor_and_several_are_columns() -> None:
    one = decode_v2(body({"inputs": [v2_input("x", np.ones((2, 2), np.uint8), "UINT8")]}), JSON, None)
    assert one.inputs.tensor is not None
    assert one.inputs.tensor.dtype == np.uint8
    several = decode_v2(body({"inputs": [v2_input("a", np.array([1, 2]), "INT64"),
                                         v2_input("b", np.array([0.5, 1.5]), "FP16")]}), JSON, None)
    assert columns_of(several.inputs) == [("a", [1, 2]), ("b", [0.5, 1.5])]


@pytest.mark.parametrize(("request_json", "match"), [
    ({"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1.0] * 5}]},
     r"input 'x' has 5 values but shape \[2, 3\] needs 6"),
    ({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FLOAT", "data": [1, 2, 3]}]},
     "datatype 'FLOAT'; use one of BOOL"),
    ({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "INT32", "data": [1, 2.5, 3]}]},
     "input 'x' is INT32 but value 1 is 2.5"),
    ({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "UINT8", "data": [1, 300, 3]}]},
     "out of range for UINT8"),
    ({"inputs": [{"name": "x", "shape": "1,3", "datatype": "FP32", "data": [1, 2, 3]}]},
     'needs a "shape"'),
    ({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32"}]}, 'needs "data"'),
    ({"inputs": [{"shape": [1], "datatype": "FP32", "data": [1]}]}, 'needs a "name"'),
    ({"inputs": []}, 'needs a non-empty "inputs" list'),
    ({"id": 5, "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]},
     '"id" must be a string'),
    ({"outputs": ["y"], "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]},
     '"outputs" must be a list of'),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1]},
                 {"name": "a", "shape": [1], "datatype": "FP32", "data": [1]}]}, "same name"),
    ({"inputs": [{"name": "a", "shape": [2], "datatype": "FP32", "data": [1, 2]},
                 {"name": "b", "shape": [1], "datatype": "FP32", "data": [1]}]},
     "input 'b' has 1 rows but 'a' has 2"),
    ({"inputs": [{"name": "a", "shape": [2], "datatype": "FP32", "data": [1, 2]},
                 {"name": "b", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]},
     r"each input is one column, of shape \[n\] or \[n, 1\]"),
])
def test_v2_malformed_requests_are_invalid_arguments(request_json: Any, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match) as info:
        decode_v2(body(request_json), JSON, None)
    assert not isinstance(info.value, SignatureError)


@pytest.mark.parametrize(("inputs", "field", "match"), [
    ([v2_input("x", np.ones((2, 4), np.float32), "FP32")], "shape", r"takes shape \[-1, 3\]"),
    ([v2_input("x", np.array([["a", "b", "c"]], dtype=object), "BYTES")], "dtype",
     "input 'x' is BYTES but the model takes float values"),
    ([v2_input("x", np.ones((1, 3)), "FP64"), v2_input("y", np.ones((1, 3)), "FP64")], "inputs",
     "takes one tensor input; got 2"),
])
def test_v2_tensor_inputs_that_do_not_match_the_signature(inputs: list[dict[str, Any]],
                                                          field: str, match: str) -> None:
    with pytest.raises(SignatureError, match=match) as info:
        decode_v2(body({"inputs": inputs}), JSON, TENSOR)
    assert info.value.field == field


def test_v2_column_inputs_that_do_not_match_the_signature() -> None:
    good = [v2_input("age", np.array([1]), "INT64"), v2_input("income", np.array([1.0]), "FP64"),
            v2_input("city", np.array(["a"], dtype=object), "BYTES"),
            v2_input("member", np.array([True]), "BOOL")]
    assert decode_v2(body({"inputs": good}), JSON, TABLE).inputs.rows == 1
    cases = [([v2_input("age", np.array([1.5]), "FP32"), *good[1:]], "age",
              "input 'age' is FP32 but the model takes integer"),
             (good[1:], "age", "missing column 'age'"),
             ([*good, v2_input("zip", np.array([1]), "INT64")], "zip", "unexpected column 'zip'"),
             ([v2_input("age", np.ones((1, 2), np.int64), "INT64"), *good[1:]], "age",
              r"shape \[1, 2\]; each input is one column")]
    for inputs, field, match in cases:
        with pytest.raises(SignatureError, match=match) as info:
            decode_v2(body({"inputs": inputs}), JSON, TABLE)
        assert info.value.field == field


def test_v2_binary_tensor_extension_is_refused_with_what_to_send_instead() -> None:
    request = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32",
                           "parameters": {"binary_data_size": 12}}]}
    raw = body(request) + np.ones(3, np.float32).tobytes()
    with pytest.raises(UnsupportedMediaType, match=r"Inference-Header-Content-Length.*"
                                                   r"binary_data=False"):
        decode_v2(raw, JSON, TENSOR, header_length=str(len(body(request))))
    with pytest.raises(UnsupportedMediaType, match="input 'x' uses the binary tensor data"):
        decode_v2(body(request), JSON, TENSOR)
    with pytest.raises(InvalidArgument, match=r"not valid JSON.*Inference-Header-Content-Length"):
        decode_v2(raw, JSON, TENSOR)


# --- validate -----------------------------------------------------------------------------


def test_validate_reorders_columns_to_the_signature_and_keeps_the_values() -> None:
    given_order: dict[str, list[Any]] = {"member": [True], "city": ["x"], "income": [2], "age": [1]}
    checked = validate(TABLE, Inputs.table(given_order))
    assert columns_of(checked) == [("age", [1]), ("income", [2]), ("city", ["x"]),
                                   ("member", [True])]
    assert checked.cache_key() == Inputs.table(given_order).cache_key()


def test_validate_takes_a_compiled_spec_and_no_signature_accepts_anything() -> None:
    spec = InputSpec.from_signature(TABLE)
    assert InputSpec.from_signature(spec) is spec
    assert columns_of(validate(spec, Inputs.table(dict(COLUMNS)))) == list(COLUMNS.items())
    anything = Inputs.table({"whatever": [object()]})
    assert validate(None, anything) is anything
    assert validate({}, anything) is anything


def test_validate_accepts_numpy_scalars_and_checks_column_lengths() -> None:
    values: dict[str, list[Any]] = {"age": [np.int32(3)], "income": [np.float32(1.5)], "city": ["a"],
              "member": [np.bool_(True)]}
    assert validate(TABLE, Inputs.table(values)).rows == 1
    with pytest.raises(SignatureError, match="'age' takes integer values but row 0 has float"):
        validate(TABLE, Inputs.table({**values, "age": [np.float64(3)]}))
    with pytest.raises(InvalidArgument, match="column 'income' has 2 values but the request has 1"):
        validate(TABLE, Inputs(columns={**values, "income": [1.0, 2.0]}, rows=1))


@pytest.mark.parametrize("signature", [{"inputs": {"type": "graph"}},
                                       {"inputs": {"type": "columns", "columns": [{"dtype": "x"}]}},
                                       {"inputs": ["age"]}])
def test_a_malformed_signature_says_to_register_the_version_again(signature: Any) -> None:
    with pytest.raises(InvalidArgument, match="register the version again"):
        validate(signature, Inputs.table({"age": [1]}))


# --- encoders -----------------------------------------------------------------------------


def test_encode_predict_round_trips_numpy_predictions() -> None:
    raw = encode_predict(np.array([0.25, np.nan], dtype=np.float32), model="churn", version=3,
                         request_id="r-1")
    assert orjson.loads(raw) == {"predictions": [0.25, None], "model": "churn", "version": 3,
                                 "request_id": "r-1"}
    multi = encode_predict(np.arange(6).reshape(3, 2).T, model="m", version=1, request_id="r")
    assert orjson.loads(multi)["predictions"] == [[0, 2, 4], [1, 3, 5]]
    labels = encode_predict(np.array(["yes", "no"]), model="m", version=1, request_id="r")
    assert orjson.loads(labels)["predictions"] == ["yes", "no"]


def test_encode_invocations_is_mlflows_predictions_object() -> None:
    assert orjson.loads(encode_invocations([np.int64(1), 2.5, "x", b"raw"])) == {
        "predictions": [1, 2.5, "x", "raw"]}
    assert orjson.loads(encode_invocations(np.array([[1, 2]], dtype=np.uint8))) == {
        "predictions": [[1, 2]]}


def test_encoding_something_json_cannot_hold_names_the_problem() -> None:
    with pytest.raises(ThreadlineError, match="cannot be written as JSON"):
        encode_invocations([object()])


@pytest.mark.parametrize(("predictions", "datatype", "shape", "data"), [
    (np.array([0.5, 1.5], dtype=np.float32), "FP32", [2], [0.5, 1.5]),
    (np.array([[1, 2], [3, 4]]), "INT64", [2, 2], [1, 2, 3, 4]),
    (np.array([True, False]), "BOOL", [2], [True, False]),
    (np.array(["yes", "no"]), "BYTES", [2], ["yes", "no"]),
    (np.array([b"a", b"\xff"]), "BYTES", [2], ["a", "/w=="]),
    ([1.0, 2.0], "FP64", [2], [1.0, 2.0]),
])
def test_encode_v2_one_output_tensor_with_its_datatype(predictions: Any, datatype: str,
                                                       shape: list[int], data: list[Any]) -> None:
    response = orjson.loads(encode_v2(predictions, model="churn", version=4, request_id="r-2"))
    assert response == {"model_name": "churn", "model_version": "4", "id": "r-2",
                        "outputs": [{"name": "predict", "datatype": datatype, "shape": shape,
                                     "data": data}]}


def test_encode_v2_ragged_predictions_name_the_problem() -> None:
    with pytest.raises(ThreadlineError, match="ragged"):
        encode_v2([[1], [2, 3]], model="m", version=1, request_id=None, output_name="y")


def test_v2_round_trip_through_the_encoder_and_decoder() -> None:
    array = np.arange(6, dtype=np.float64).reshape(2, 3)
    response = orjson.loads(encode_v2(array, model="m", version=1, request_id="r",
                                      output_name="x"))
    decoded = decode_v2(body({"inputs": response["outputs"]}), JSON, TENSOR)
    assert decoded.inputs.tensor is not None
    np.testing.assert_array_equal(decoded.inputs.tensor, array)


def test_v2_metadata_describes_the_signatures_tensors() -> None:
    assert v2_metadata("churn", [1, 2], TABLE) == {
        "name": "churn", "versions": ["1", "2"], "platform": "threadline",
        "inputs": [{"name": "age", "datatype": "INT64", "shape": [-1]},
                   {"name": "income", "datatype": "FP64", "shape": [-1]},
                   {"name": "city", "datatype": "BYTES", "shape": [-1]},
                   {"name": "member", "datatype": "BOOL", "shape": [-1]}],
        "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1]}]}
    tensor = v2_metadata("vision", ["7"], TENSOR)
    assert tensor["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 3]}]
    assert v2_metadata("bare", [], None)["inputs"] == []
