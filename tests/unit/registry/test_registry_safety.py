"""Nothing untrusted runs on load: malicious pickles, skops files with untrusted types, code,
and artifacts swapped after registration are refused before any byte is deserialized."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sklearn.base import BaseEstimator
from sqlalchemy import update

from threadline.errors import IntegrityError
from threadline.meta.models import ModelVersionRow
from threadline.registry import ModelRegistry, UntrustedModel
from threadline.registry.flavors import LoadPolicy, load_folder, save_folder
from threadline.registry.flavors.base import META_FILE, artifact_hash, file_hash
from threadline.registry.store import MODELS_REPO

if TYPE_CHECKING:
    from threadline.data.repos import DataRepos


class Evil:
    """Unpickling this touches a marker file: stands for any code a pickle can run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


class EvilEstimator(BaseEstimator):  # type: ignore[misc]
    """A custom estimator whose state restoration touches a marker file."""

    def __init__(self, marker: str = "") -> None:
        self.marker = marker

    def fit(self, features: Any, labels: Any = None) -> EvilEstimator:
        return self

    def __setstate__(self, state: dict[str, Any]) -> None:
        Path(state["marker"]).touch()
        self.__dict__.update(state)


def test_a_pickle_is_never_loaded_without_opt_in(registry: ModelRegistry, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    version = registry.register("evil", Evil(marker), flavor="pickle")
    with pytest.raises(UntrustedModel, match=r"plain pickle.*allow_pickle=True"):
        registry.load_model("evil")
    with pytest.raises(UntrustedModel):
        registry.load_model(f"evil@{version.version}", trusted=["builtins.object"], allow_code=True)
    assert not marker.exists()


def _swap_artifact(home: DataRepos, registry: ModelRegistry, name: str, folder: Path) -> None:
    """Simulate tampering: point the version at other files (with a matching description)."""
    commit = home.commit(f"{MODELS_REPO}@{name}", [folder], "tampered").commit.id
    with home.db.session() as session, session.begin():
        session.execute(update(ModelVersionRow).values(artifact_commit=commit))


def test_a_swapped_pickle_is_refused_even_with_opt_in(
    home: DataRepos, registry: ModelRegistry, tmp_path: Path, classifier: Any
) -> None:
    marker = tmp_path / "pwned"
    registry.register("churn", classifier, flavor="pickle")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.pkl").write_bytes(pickle.dumps(Evil(marker)))
    # the attacker also rewrites the description so that it matches the new bytes
    files = {"model.pkl": file_hash(bad / "model.pkl")}
    (bad / META_FILE).write_text(json.dumps({
        "format": "threadline.model/1", "flavor": "pickle", "format_id": "pickle/4",
        "files": files}))
    _swap_artifact(home, registry, "churn", bad)
    with pytest.raises(IntegrityError, match="not the registered one"):
        registry.load_model("churn", allow_pickle=True)
    assert not marker.exists()


def test_the_pickle_flavor_itself_checks_the_hash_before_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    folder = tmp_path / "m"
    folder.mkdir()
    meta = save_folder(Evil(marker), folder, flavor="pickle")
    with pytest.raises(IntegrityError, match="registry recorded"):
        load_folder(folder, LoadPolicy(allow_pickle=True, expected_hash="0" * 64))
    with pytest.raises(IntegrityError, match="only against the hash"):
        load_folder(folder, LoadPolicy(allow_pickle=True))
    assert not marker.exists()
    (folder / "model.pkl").write_bytes(pickle.dumps("changed"))
    with pytest.raises(IntegrityError, match="does not match its recorded hash"):
        load_folder(folder, LoadPolicy(allow_pickle=True, expected_hash=meta.hash))
    assert not marker.exists()


def test_a_skops_file_with_an_untrusted_type_is_refused_and_names_it(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    registry.register("custom", EvilEstimator(str(marker)).fit(None))
    with pytest.raises(UntrustedModel, match=r"not trusted: .*EvilEstimator.*trusted=\[") as info:
        registry.load_model("custom")
    assert not marker.exists()
    assert [t.rpartition(".")[2] for t in info.value.untrusted] == ["EvilEstimator"]
    # trusting it explicitly is the documented way in
    loaded = registry.load_model("custom", trusted=info.value.untrusted)
    assert isinstance(loaded, EvilEstimator)
    assert marker.exists()


def test_pyfunc_code_does_not_run_without_allow_code(registry: ModelRegistry, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    code = tmp_path / "m.py"
    code.write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
                    "def predict(data):\n    return data\n")
    registry.register("code", flavor="pyfunc", code=str(code), entry="predict")
    with pytest.raises(UntrustedModel, match=r"Python code.*allow_code=True"):
        registry.load_model("code")
    assert not marker.exists()
    assert registry.load_model("code", allow_code=True).predict([1]) == [1]
    assert marker.exists()


def test_a_changed_byte_in_a_model_file_is_refused(tmp_path: Path, classifier: Any) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    meta = save_folder(classifier, folder)
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    data = bytearray((copy / "model.skops").read_bytes())
    data[len(data) // 2] ^= 1
    (copy / "model.skops").write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"model\.skops"):
        load_folder(copy, LoadPolicy(expected_hash=meta.hash))
    assert artifact_hash(meta.files) == meta.hash
