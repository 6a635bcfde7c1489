"""The conformance suite every model flavor passes (as `storage/conformance.py` for backends).

A flavor's test module subclasses `FlavorConformance` and provides a `flavor_case` fixture
returning a `FlavorCase` — a model of that flavor, an example input and the output expected
on it::

    import pytest

    from threadline.registry.flavors.conformance import FlavorCase, FlavorConformance


    @pytest.fixture
    def flavor_case():
        model = fit_my_model()
        return FlavorCase("sklearn", model, example=X[:5], expected=model.predict(X[:5]))


    class TestSklearnFlavor(FlavorConformance):
        pass

The suite checks the round trip, the description file, that any changed, missing or
escaping file is refused before the flavor reads it, and that a flavor which runs code on
load (pickle, pyfunc) refuses to without the caller's opt-in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from threadline.errors import IntegrityError, InvalidArgument
from threadline.registry.errors import UntrustedModel
from threadline.registry.flavors.base import META_FILE, LoadPolicy, read_meta
from threadline.registry.flavors.catalog import get_flavor, load_folder, save_folder

if TYPE_CHECKING:
    from pathlib import Path

#: flavors whose load runs code the caller must opt in to
RUNS_CODE = ("pickle", "pyfunc")


@dataclass
class FlavorCase:
    """A model of one flavor, an example input and the model's expected output on it."""

    flavor: str
    model: Any
    example: Any
    expected: Any
    options: dict[str, Any] = field(default_factory=dict)


def _same(actual: Any, expected: Any) -> None:
    np = pytest.importorskip("numpy")
    np.testing.assert_allclose(np.asarray(actual, dtype=float), np.asarray(expected, dtype=float),
                               rtol=1e-5)


class FlavorConformance:
    """Checks every flavor must pass; subclass it and provide a `flavor_case` fixture."""

    @pytest.fixture
    def saved(self, flavor_case: FlavorCase, tmp_path: Path) -> Path:
        folder = tmp_path / "model"
        folder.mkdir()
        save_folder(flavor_case.model, folder, flavor=flavor_case.flavor,
                    example=flavor_case.example, **flavor_case.options)
        return folder

    def _trusting(self, folder: Path) -> LoadPolicy:
        return LoadPolicy(allow_pickle=True, allow_code=True, expected_hash=read_meta(folder).hash)

    def test_round_trip_predicts_the_same(self, flavor_case: FlavorCase, saved: Path) -> None:
        loaded = load_folder(saved, self._trusting(saved), flavor=flavor_case.flavor)
        _same(loaded.predict(flavor_case.example), flavor_case.expected)

    def test_description_lists_hashed_files_format_and_versions(
        self, flavor_case: FlavorCase, saved: Path
    ) -> None:
        meta = read_meta(saved)
        assert meta.flavor == flavor_case.flavor
        assert "/" in meta.format_id
        assert meta.versions["python"]
        assert meta.example in meta.files
        assert sorted(p.name for p in saved.iterdir()) == sorted([*meta.files, META_FILE])
        assert meta.signature["inputs"]

    def test_a_changed_file_is_refused_before_loading(self, saved: Path) -> None:
        meta = read_meta(saved)
        for name in meta.files:
            target = saved / name
            original = target.read_bytes()
            target.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
            with pytest.raises(IntegrityError, match=name.replace(".", r"\.")):
                load_folder(saved, self._trusting(saved))
            target.write_bytes(original)

    def test_a_missing_file_is_refused(self, saved: Path) -> None:
        name = sorted(read_meta(saved).files)[0]
        (saved / name).unlink()
        with pytest.raises(InvalidArgument, match="is missing"):
            load_folder(saved, LoadPolicy(allow_pickle=True, allow_code=True))

    def test_a_description_escaping_the_folder_is_refused(self, saved: Path) -> None:
        raw = json.loads((saved / META_FILE).read_text())
        raw["files"]["../outside"] = "0" * 64
        (saved / META_FILE).write_text(json.dumps(raw))
        with pytest.raises(InvalidArgument, match="invalid model file name"):
            load_folder(saved, LoadPolicy(allow_pickle=True, allow_code=True))

    def test_code_runs_only_with_the_callers_opt_in(self, flavor_case: FlavorCase, saved: Path) -> None:
        policy = LoadPolicy(expected_hash=read_meta(saved).hash)
        if flavor_case.flavor in RUNS_CODE:
            with pytest.raises(UntrustedModel):
                load_folder(saved, policy)
        else:
            _same(load_folder(saved, policy).predict(flavor_case.example), flavor_case.expected)

    def test_detection(self, flavor_case: FlavorCase) -> None:
        flavor = get_flavor(flavor_case.flavor)
        assert flavor.detect(flavor_case.model) is (flavor_case.flavor not in RUNS_CODE)
