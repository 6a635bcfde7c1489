"""Each flavor saves a model folder and loads it back predicting the same; ids and detection."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from threadline.errors import InvalidArgument
from threadline.registry.flavors import LoadPolicy, detect_flavor, get_flavor, load_folder, save_folder
from threadline.registry.flavors.base import META_FILE, read_meta

if TYPE_CHECKING:
    from pathlib import Path


def _roundtrip(model: Any, folder: Path, example: Any, **kwargs: Any) -> tuple[Any, Any]:
    folder.mkdir()
    meta = save_folder(model, folder, example=example, **kwargs)
    policy = LoadPolicy(expected_hash=meta.hash, allow_pickle=True, allow_code=True)
    return meta, load_folder(folder, policy, flavor=meta.flavor)


def test_sklearn_round_trip_records_files_hashes_signature_and_versions(
    tmp_path: Path, classifier: Any, xy: tuple[Any, Any]
) -> None:
    features, _ = xy
    meta, loaded = _roundtrip(classifier, tmp_path / "m", features[:5])
    assert meta.flavor == "sklearn"
    assert meta.format_id.startswith("skops/0.16+sklearn/1.")
    assert set(meta.files) == {"model.skops", "input_example.json"}
    assert meta.signature["inputs"] == {"type": "tensor", "dtype": "float", "shape": [-1, 3]}
    assert meta.signature["outputs"]["dtype"] == "integer"
    assert meta.versions["scikit-learn"].startswith("1.")
    on_disk = json.loads((tmp_path / "m" / META_FILE).read_text())
    assert on_disk["files"] == meta.files
    np.testing.assert_array_equal(loaded.predict(features), classifier.predict(features))


def test_xgboost_and_lightgbm_wrappers_are_detected_before_sklearn(
    tmp_path: Path, xy: tuple[Any, Any]
) -> None:
    import lightgbm
    import xgboost

    features, labels = xy
    xgb_model = xgboost.XGBClassifier(n_estimators=5, max_depth=2).fit(features, labels)
    lgb_model = lightgbm.LGBMClassifier(n_estimators=5, min_child_samples=5, verbose=-1).fit(
        features, labels)
    assert detect_flavor(xgb_model).name == "xgboost"
    assert detect_flavor(lgb_model).name == "lightgbm"
    meta, loaded = _roundtrip(xgb_model, tmp_path / "x", features[:5])
    assert meta.format_id.startswith("xgboost-ubj+xgboost/")
    np.testing.assert_array_equal(loaded.predict(features), xgb_model.predict(features))
    meta, loaded = _roundtrip(lgb_model, tmp_path / "l", features[:5])
    assert meta.format_id.startswith("lightgbm-text+lightgbm/4.")
    np.testing.assert_array_equal(loaded.predict(features), lgb_model.predict(features))
    np.testing.assert_allclose(loaded.predict_proba(features), lgb_model.predict_proba(features))


def test_xgboost_booster_round_trip(tmp_path: Path, xy: tuple[Any, Any]) -> None:
    import xgboost

    features, labels = xy
    booster = xgboost.train({"max_depth": 2}, xgboost.DMatrix(features, label=labels), 3)
    _meta, loaded = _roundtrip(booster, tmp_path / "b", None)
    np.testing.assert_allclose(loaded.predict(features), booster.predict(xgboost.DMatrix(features)))


def test_sklearn_model_converted_to_onnx_predicts_the_same(
    tmp_path: Path, classifier: Any, xy: tuple[Any, Any]
) -> None:
    features, _ = xy
    meta, loaded = _roundtrip(classifier, tmp_path / "o", features[:5], flavor="onnx")
    assert meta.flavor == "onnx"
    assert meta.format_id.startswith("onnx/")
    assert not meta.format_id.startswith("onnx/0")
    np.testing.assert_array_equal(loaded.predict(features), classifier.predict(features))


def test_onnx_conversion_needs_an_example(tmp_path: Path, classifier: Any) -> None:
    (tmp_path / "o").mkdir()
    with pytest.raises(InvalidArgument, match="needs example"):
        save_folder(classifier, tmp_path / "o", flavor="onnx")


def test_pyfunc_stores_the_code_and_loads_it_with_allow_code(tmp_path: Path) -> None:
    code = tmp_path / "doubler.py"
    code.write_text("class Doubler:\n    def predict(self, data):\n        return [2 * x for x in data]\n"
                    "def triple(data):\n    return [3 * x for x in data]\n")
    meta, loaded = _roundtrip(None, tmp_path / "p", [1, 2], flavor="pyfunc", code=str(code),
                              entry="Doubler")
    assert meta.files.keys() == {"doubler.py", "input_example.json"}
    assert loaded.predict([1, 2]) == [2, 4]
    _meta, function = _roundtrip(None, tmp_path / "f", None, flavor="pyfunc", code=str(code),
                                 entry="triple")
    assert function.predict([1]) == [3]


def test_pickle_round_trip_with_opt_in_and_the_right_hash(tmp_path: Path, classifier: Any,
                                                          xy: tuple[Any, Any]) -> None:
    meta, loaded = _roundtrip(classifier, tmp_path / "k", None, flavor="pickle")
    assert meta.format_id.startswith("pickle/")
    np.testing.assert_array_equal(loaded.predict(xy[0]), classifier.predict(xy[0]))


def test_unknown_flavor_and_undetectable_model_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="unknown model flavor 'torchscript'"):
        get_flavor("torchscript")
    with pytest.raises(InvalidArgument, match="no model flavor recognises object"):
        detect_flavor(object())
    assert get_flavor("pickle").detect(object()) is False


def test_a_description_naming_a_file_outside_the_folder_is_refused(tmp_path: Path,
                                                                    classifier: Any) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    save_folder(classifier, folder)
    raw = json.loads((folder / META_FILE).read_text())
    raw["files"] = {"../escape.skops": "0" * 64}
    (folder / META_FILE).write_text(json.dumps(raw))
    with pytest.raises(InvalidArgument, match="invalid model file name"):
        read_meta(folder)
