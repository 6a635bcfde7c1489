"""Windows summarised on the local executor in slices equal the single-process summary."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from threadline.compute import LocalExecutor
from threadline.errors import InvalidArgument
from threadline.monitor.drift import check_drift
from threadline.monitor.parallel import summarise_parallel
from threadline.monitor.policy import parse_policy
from threadline.monitor.reference import Reference
from threadline.monitor.window import summarise


def test_slices_on_workers_merge_to_the_same_summary_and_report() -> None:
    rng = np.random.default_rng(0)
    reference = Reference.from_table(pa.table({"x": rng.normal(size=5000),
                                               "c": rng.choice(["a", "b", "c"], 5000)}))
    window = pa.table({"x": np.append(rng.normal(0.4, 1, 9999), np.nan),
                       "c": rng.choice(["a", "b", "d"], 10_000), "ignored": np.zeros(10_000)})
    with LocalExecutor(workers=2) as executor:
        parallel = summarise_parallel(reference, window, executor, parts=3)
    alone = summarise(reference, window)
    assert parallel.to_dict() == alone.to_dict()
    assert check_drift(reference, parallel).to_dict() == check_drift(reference, alone).to_dict()
    with pytest.raises(InvalidArgument, match="parts must be at least 1"):
        summarise_parallel(reference, window, executor, parts=0)


def test_policy_names_the_executor_for_big_windows() -> None:
    assert parse_policy({"executor": "ray", "parallel_rows": 1000}).executor == "ray"
    assert parse_policy(None).executor is None
    with pytest.raises(InvalidArgument, match="executor must be local or ray"):
        parse_policy({"executor": "spark"})
