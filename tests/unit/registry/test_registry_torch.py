"""The torch flavor: a trained TorchModel registers from its run or as an object, loads back with
the same answers, refuses tampered weights, imports its own factory only with `allow_code`, and
serves."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
import warnings
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest
import torch

from threadline.errors import IntegrityError, InvalidArgument
from threadline.registry import ModelRegistry, UntrustedModel
from threadline.registry.flavors.base import LoadPolicy, file_hash, read_meta, write_meta
from threadline.registry.flavors.catalog import detect_flavor, load_folder, save_folder
from threadline.serving.app import create_app
from threadline.serving.deployments import Deployments
from threadline.tracking import TrackingStore
from threadline.train import TorchModel
from threadline.train.record import log_model

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from threadline.data.repos import DataRepos

NET = "threadline.train.torch_nets:mlp"
FEATURES = ["f0", "f1", "f2"]


def _problem(task: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    if task == "classification":
        return X, np.where(X[:, 0] + 0.5 * X[:, 1] > 0, 7, 3)  # labels that are not 0..k-1
    return X, X @ np.array([1.0, -2.0, 0.5]) + 0.25


def _train(model: TorchModel, X: np.ndarray, y: np.ndarray, steps: int = 60) -> TorchModel:
    """A few full-batch steps in process, with the parts the DDP workers train with."""
    torch.manual_seed(0)
    if model.task == "classification":
        model.classes_ = np.unique(y)
    module = model.build()
    loss, optimizer = model.make_loss(), model.make_optimizer(module.parameters())
    inputs, targets = torch.from_numpy(X.astype(np.float32)), model.targets(y)
    for _ in range(steps):
        optimizer.zero_grad()
        out = module(inputs)
        loss(out if model.task == "classification" else out.reshape(-1), targets).backward()
        optimizer.step()
    model.state_ = {k: v.detach().clone() for k, v in module.state_dict().items()}
    return model


@pytest.fixture
def trained() -> Callable[..., TorchModel]:
    """`trained(task, factory=NET)`: a small TorchModel trained in well under a second."""
    def make(task: str = "classification", factory: str = NET) -> TorchModel:
        outputs = 2 if task == "classification" else 1
        model = TorchModel(factory, {"features": 3, "classes": outputs}, task=task, optimizer="adam",
                           lr=0.05)
        return _train(model, *_problem(task))
    return make


def _rehash(folder: Path, name: str) -> None:
    """Rewrite the folder's description so that it matches the (changed) file `name`."""
    meta = read_meta(folder)
    write_meta(folder, replace(meta, files={**meta.files, name: file_hash(folder / name)}))


def _log_with_a_run(home: DataRepos, model: TorchModel) -> str:
    """A run that logged `model` as training does (`train.record.log_model`)."""
    store = TrackingStore(home)
    run_id = store.create_run(store.experiment("train").id).id
    log_model(store, run_id, model)
    return run_id


def test_a_model_logged_by_training_registers_from_its_run_and_answers_the_same(
    home: DataRepos, registry: ModelRegistry, trained: Callable[..., TorchModel]
) -> None:
    model = trained()
    X, y = _problem("classification")
    run_id = _log_with_a_run(home, model)
    from_run = registry.register("net", run_id=run_id, artifact_path="model")
    assert (from_run.flavor, from_run.run_id) == ("torch", run_id)
    assert from_run.format_id.startswith("torch-state/1+torch/")
    loaded = registry.load_model("net@1")
    assert isinstance(loaded, TorchModel)
    assert model.score(X, y) > 0.9
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert set(loaded.predict(X)) == {3, 7}
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X), rtol=1e-6)
    # the flavor writes the same folder training logs: same files, bytes and description
    from_object = registry.register("net", model)
    assert from_object.format_id == from_run.format_id
    assert from_object.artifact_hash == from_run.artifact_hash
    with registry.store.fetch(from_object.artifact_commit) as folder:
        saved = read_meta(folder)
    with registry.store.fetch(from_run.artifact_commit) as folder:
        logged = read_meta(folder)
    assert saved == logged
    assert saved.options == {"factory": NET, "task": "classification"}


def test_a_model_object_registers_with_an_example_and_its_signature(
    registry: ModelRegistry, trained: Callable[..., TorchModel]
) -> None:
    model = trained("regression")
    X, _ = _problem("regression")
    example = pd.DataFrame(X[:5], columns=FEATURES)
    version = registry.register("reg", model, example=example)
    assert version.flavor == "torch"
    assert [c["name"] for c in version.signature["inputs"]["columns"]] == FEATURES
    assert version.signature["outputs"]["dtype"] == "float"
    loaded = registry.load_model("reg@1")
    np.testing.assert_allclose(loaded.predict(X), model.predict(X), rtol=1e-6)
    assert loaded.predict(X).dtype.kind == "f"
    pd.testing.assert_frame_equal(registry.load_example(version), example)
    with pytest.raises(InvalidArgument, match="predict_proba is for classification"):
        loaded.predict_proba(X)


def test_only_a_trained_model_with_a_named_factory_is_saved(tmp_path: Path) -> None:
    untrained = TorchModel(NET, {"features": 3, "classes": 2})
    with pytest.raises(InvalidArgument, match="not trained"):
        save_folder(untrained, tmp_path, flavor="torch")
    anonymous = TorchModel(lambda: torch.nn.Linear(3, 2))
    anonymous.state_ = {}
    with pytest.raises(InvalidArgument, match="no importable name"):
        save_folder(anonymous, tmp_path, flavor="torch")


def test_tampered_weights_are_refused_before_they_are_read(
    tmp_path: Path, trained: Callable[..., TorchModel]
) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    meta = save_folder(trained(), folder)
    assert meta.flavor == "torch"  # detected before scikit-learn, whose tags it carries
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (marker.write_text, ("code ran",))

    torch.save({"format": "torch-state/1", "model": Payload()}, folder / "model.pt")
    with pytest.raises(IntegrityError, match=r"model\.pt"):
        load_folder(folder, LoadPolicy(expected_hash=meta.hash))
    # a description re-hashed to match is refused by the registry's hash...
    _rehash(folder, "model.pt")
    with pytest.raises(IntegrityError, match="not the registered one"):
        load_folder(folder, LoadPolicy(expected_hash=meta.hash))
    # ...and without a recorded hash, weights_only still never unpickles the payload
    with pytest.raises(InvalidArgument, match="not a TorchModel state file"):
        load_folder(folder, LoadPolicy(allow_code=True, allow_pickle=True))
    assert not marker.exists()


def test_a_factory_of_your_own_loads_only_with_allow_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry: ModelRegistry,
    trained: Callable[..., TorchModel]
) -> None:
    module = f"tl_user_nets_{uuid.uuid4().hex[:8]}"
    code = tmp_path / "code"
    code.mkdir()
    (code / f"{module}.py").write_text(
        "import torch\n\n\ndef net(features, classes):\n    return torch.nn.Linear(features, classes)\n")
    monkeypatch.syspath_prepend(str(code))
    model = trained(factory=f"{module}:net")
    X, _ = _problem("classification")
    registry.register("own", model)
    sys.modules.pop(module)
    with pytest.raises(UntrustedModel, match=rf"built by '{module}:net'.*allow_code=True"):
        registry.load_model("own@1")
    assert module not in sys.modules  # refused before the factory's module was imported
    loaded = registry.load_model("own@1", allow_code=True)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_a_description_that_names_another_threadline_function_needs_allow_code(
    tmp_path: Path, trained: Callable[..., TorchModel]
) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    save_folder(trained(), folder)
    spec = json.loads((folder / "torch-model.json").read_text())
    spec["estimator"]["factory"] = "threadline.train.torch_nets:tch"  # importable, not a network
    (folder / "torch-model.json").write_text(json.dumps(spec))
    _rehash(folder, "torch-model.json")
    with pytest.raises(UntrustedModel, match="allow_code=True"):
        load_folder(folder, LoadPolicy())


def test_a_torch_model_is_served(registry: ModelRegistry, trained: Callable[..., TorchModel]) -> None:
    with warnings.catch_warnings():
        # Starlette 1.x prefers the httpx2 fork; httpx (a dev dependency) works the same here
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
        from starlette.testclient import TestClient

    model = trained()
    X, _ = _problem("classification")
    registry.register("net", model, example=pd.DataFrame(X[:5], columns=FEATURES))
    deployments = Deployments(registry)
    deployments.create("web", [{"model": "net@1"}], {"cache": {"enabled": False}})
    app = create_app(registry, deployments, ["web"], log_predictions=False)
    rows = [dict(zip(FEATURES, map(float, row), strict=True)) for row in X[:8]]
    with TestClient(app) as client:
        answer = client.post("/predict", json=rows)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == model.predict(X[:8]).tolist()
    assert answer.headers["x-model-version"] == "net/1"


def test_registering_other_models_does_not_import_torch() -> None:
    code = ("import sys\nfrom sklearn.linear_model import LogisticRegression\n"
            "from threadline.registry.flavors.catalog import detect_flavor\n"
            "assert detect_flavor(LogisticRegression()).name == 'sklearn'\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert detect_flavor(TorchModel(NET)).name == "torch"
