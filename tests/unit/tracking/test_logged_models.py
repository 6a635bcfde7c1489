"""MLflow 3 logged models kept on their source run: records, changes, searches and refusals."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest

from threadline.errors import InvalidArgument, NotFound
from threadline.tracking import logged_models as lm
from threadline.tracking.store import TrackingStore

if TYPE_CHECKING:
    from collections.abc import Callable

    from threadline.data.repos import DataRepos


@pytest.fixture
def store(home: DataRepos) -> TrackingStore:
    return TrackingStore(home)


@pytest.fixture
def make_model(store: TrackingStore) -> Callable[..., lm.LoggedModel]:
    """A logged model of a new run of experiment `exp` (default "e")."""

    def make(exp: str = "e", **kwargs: object) -> lm.LoggedModel:
        experiment = store.experiment(exp).id
        run_id = store.create_run(experiment).id
        return lm.create(store, experiment, run_id, **kwargs)  # type: ignore[arg-type]

    return make


def test_create_and_get_round_trip(store: TrackingStore, make_model: Callable[..., lm.LoggedModel]) -> None:
    model = make_model(name="model", model_type="sk", params={"C": 1.0}, tags={"team": "ml"})
    assert model.id.startswith(f"m-{model.source_run_id}")
    assert len(model.id) == 42
    assert lm.run_of(model.id) == model.source_run_id
    assert (model.status, model.params, model.tags) == (lm.PENDING, {"C": "1.0"}, {"team": "ml"})
    assert model.artifact_path == f"logged_models/{model.id}"
    assert lm.get(store, model.id) == model
    # the record is a reserved tag of the run; users can neither overwrite nor delete it
    tags = store.get_run(model.source_run_id).tags
    assert lm.of_run(tags) == [model]
    with pytest.raises(InvalidArgument, match="reserved for Threadline"):
        store.log_batch(model.source_run_id, tags={lm.MODEL_TAG + model.id: "{}"})
    with pytest.raises(InvalidArgument, match="reserved for Threadline"):
        store.delete_tag(model.source_run_id, lm.MODEL_TAG + model.id)


def test_unnamed_models_get_a_name(make_model: Callable[..., lm.LoggedModel]) -> None:
    assert make_model().name.startswith("model-")


@pytest.mark.parametrize("model_id", ["m-" + "0" * 40, "m-short", "../x", ""])
def test_unknown_ids_are_not_found(store: TrackingStore, model_id: str) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        lm.get(store, model_id)


def test_create_refuses_bad_runs_names_and_keys(store: TrackingStore) -> None:
    exp = store.experiment("e").id
    other = store.experiment("other").id
    run_id = store.create_run(exp).id
    with pytest.raises(InvalidArgument, match=f"run {run_id} is in experiment {exp}, not {other}"):
        lm.create(store, other, run_id)
    with pytest.raises(InvalidArgument, match="invalid logged model name"):
        lm.create(store, exp, run_id, name="a/b")
    with pytest.raises(InvalidArgument, match="tag key"):
        lm.create(store, exp, run_id, tags={"bad\nkey": "x"})
    with pytest.raises(NotFound, match="does not exist"):
        lm.create(store, exp, "f" * 32)
    store.delete_run(run_id)
    with pytest.raises(InvalidArgument, match="is deleted; restore it"):
        lm.create(store, exp, run_id)


def test_finalize_tags_params_and_outputs(store: TrackingStore,
                                          make_model: Callable[..., lm.LoggedModel]) -> None:
    model = make_model(params={"a": "1"})
    ready = lm.finalize(store, model.id, lm.READY)
    assert ready.status == lm.READY
    assert ready.updated_at >= model.updated_at
    with pytest.raises(InvalidArgument, match="status must be one of"):
        lm.finalize(store, model.id, "DONE")
    lm.set_tags(store, model.id, {"x": "1", "y": "2"})
    assert lm.delete_tag(store, model.id, "x").tags == {"y": "2"}
    with pytest.raises(NotFound, match="has no tag 'x'"):
        lm.delete_tag(store, model.id, "x")
    assert lm.log_params(store, model.id, {"a": "1", "b": "2"}).params == {"a": "1", "b": "2"}
    with pytest.raises(InvalidArgument, match=r"'a' of logged model m-\w+ is '1' already and cannot"):
        lm.log_params(store, model.id, {"a": "9"})
    assert lm.log_output(store, model.source_run_id, model.id, 3).outputs == {model.source_run_id: 3}
    assert lm.get(store, model.id).status == lm.READY  # every change kept the others


def test_deleted_models_are_hidden_but_kept(store: TrackingStore,
                                            make_model: Callable[..., lm.LoggedModel]) -> None:
    model = make_model()
    lm.delete(store, model.id)
    with pytest.raises(NotFound, match="was deleted"):
        lm.get(store, model.id)
    with pytest.raises(NotFound, match="was deleted"):
        lm.set_tags(store, model.id, {"a": "b"})
    assert lm.get(store, model.id, allow_deleted=True).lifecycle_stage == "deleted"
    assert lm.search(store, [model.experiment_id]) == ([], None)


def test_concurrent_changes_lose_nothing(store: TrackingStore,
                                         make_model: Callable[..., lm.LoggedModel]) -> None:
    model = make_model()
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def tag(worker: int) -> None:
        start.wait(timeout=30)
        try:
            for i in range(5):
                lm.set_tags(store, model.id, {f"w{worker}-{i}": "x"})
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=tag, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(lm.get(store, model.id).tags) == 20


def test_search_filters_orders_and_pages(store: TrackingStore, make_model: Callable[..., lm.LoggedModel],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(1_000, 1_000_000, 10))
    monkeypatch.setattr(lm, "now_ms", lambda: next(clock))  # distinct creation times, in order
    a = make_model(name="alpha", params={"C": "1"}, tags={"team": "ml"}, model_type="sk")
    b = make_model(name="beta", params={"C": "2"})
    c = make_model(name="alphabet")
    elsewhere = make_model(exp="other", name="alpha")
    lm.finalize(store, b.id, lm.READY)
    exp = a.experiment_id

    def ids(text: str = "", **kwargs: object) -> list[str]:
        return [m.id for m in lm.search(store, [exp], text, **kwargs)[0]]  # type: ignore[arg-type]

    assert ids() == [c.id, b.id, a.id]  # newest first
    assert ids("name = 'alpha'") == [a.id]
    assert ids("name LIKE 'alpha%'") == [c.id, a.id]
    assert ids("name ILIKE 'ALPHA'") == [a.id]
    assert ids("tags.team = 'ml'") == [a.id]
    assert ids("tags.team != 'ml'") == [c.id, b.id]
    assert ids("params.C = '2' AND attributes.status = 'LOGGED_MODEL_READY'") == [b.id]
    assert ids("status = 'PENDING'") == [c.id, a.id]
    assert ids(f"source_run_id = '{a.source_run_id}'") == [a.id]
    assert ids("model_type = \"sk\"") == [a.id]
    assert ids(f"creation_timestamp >= {a.created_at}") == [c.id, b.id, a.id]
    assert ids(order_by=[("name", True)]) == [a.id, c.id, b.id]
    assert ids(order_by=[("attributes.name", False)]) == [b.id, c.id, a.id]
    page, token = lm.search(store, [exp], max_results=2)
    assert [m.id for m in page] == [c.id, b.id]
    assert token == "2"
    assert [m.id for m in lm.search(store, [exp], max_results=2, page_token=token)[0]] == [a.id]
    assert [m.id for m in lm.search(store, [elsewhere.experiment_id])[0]] == [elsewhere.id]


@pytest.mark.parametrize(("text", "match"), [
    ("metrics.auc > 0.5", "unsupported logged model filter clause"),
    ("colour = 'red'", "unsupported logged model filter clause"),
    ("name = 'a' OR name = 'b'", "unsupported logged model filter clause"),
])
def test_search_refuses_what_it_cannot_answer(store: TrackingStore, text: str, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        lm.search(store, [store.experiment("e").id], text)


def test_search_refuses_bad_order_and_paging(store: TrackingStore) -> None:
    exp = store.experiment("e").id
    with pytest.raises(InvalidArgument, match=r"cannot order logged models by 'metrics\.auc'"):
        lm.search(store, [exp], order_by=[("metrics.auc", True)])
    with pytest.raises(InvalidArgument, match="invalid page_token"):
        lm.search(store, [exp], page_token="abc")
    with pytest.raises(InvalidArgument, match="max_results must be between"):
        lm.search(store, [exp], max_results=0)
    with pytest.raises(InvalidArgument, match="name at least one experiment"):
        lm.search(store, [])


def test_records_of_an_unknown_format_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="unknown format"):
        lm.LoggedModel.from_json('{"format": 99}')
