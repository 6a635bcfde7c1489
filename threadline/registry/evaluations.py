"""Where evaluations of model versions are recorded, and finding the latest one.

`threadline evaluate` (the evaluate layer) records each evaluation as a finished run in the
experiment `evaluations`, tagged with the version (`model_version = name/N`), the commit of
the table it scored (`data_commit`) and, for a champion/challenger comparison, the champion
(`champion_version`). Promotion gates with `on: REF` read their metrics from these runs, so a
gate compares versions on the same rows rather than on whatever each was validated on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from threadline.errors import InvalidArgument, NotFound
from threadline.registry.names import check_model_name
from threadline.tracking.model import FINISHED
from threadline.tracking.store import TrackingStore

if TYPE_CHECKING:
    from threadline.data.repos import DataRepos
    from threadline.tracking.model import Run

EXPERIMENT = "evaluations"
TAG_VERSION = "model_version"
TAG_COMMIT = "data_commit"
TAG_CHAMPION = "champion_version"
#: metrics of the champion scored in the same run are logged as `champion.<metric>`
CHAMPION_PREFIX = "champion."


def latest_evaluation(repos: DataRepos, name: str, version: int,
                      data_commit: str | None = None) -> Run | None:
    """The newest finished evaluation run of `name` v`version` (on `data_commit`, if given)."""
    store = TrackingStore(repos)
    try:
        experiment = store.experiment(EXPERIMENT, create=False)
    except NotFound:
        return None
    # model names are checked names and commit ids hex, so neither can close the quotes
    terms = [f"tags.{TAG_VERSION} = '{check_model_name(name)}/{int(version)}'",
             f"attributes.status = '{FINISHED}'"]
    if data_commit is not None:
        if not data_commit.isalnum():
            raise InvalidArgument(f"invalid commit id {data_commit!r}")
        terms.append(f"tags.{TAG_COMMIT} = '{data_commit}'")
    runs, _ = store.search_runs([experiment.id], " and ".join(terms),
                                order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


def evaluated_metrics(repos: DataRepos, name: str, version: int,
                      data_commit: str) -> dict[str, float] | None:
    """Metric values of the newest evaluation of v`version` on `data_commit` (None: never)."""
    run = latest_evaluation(repos, name, version, data_commit)
    return None if run is None else {k: m.value for k, m in run.metrics.items()}


def champion_metrics(repos: DataRepos, name: str, version: int, champion: int,
                     data_commit: str) -> dict[str, float] | None:
    """The champion's metrics from v`version`'s newest evaluation against v`champion` on the commit."""
    run = latest_evaluation(repos, name, version, data_commit)
    if run is None or run.tags.get(TAG_CHAMPION) != f"{name}/{champion}":
        return None
    return {k[len(CHAMPION_PREFIX):]: m.value for k, m in run.metrics.items()
            if k.startswith(CHAMPION_PREFIX)}
