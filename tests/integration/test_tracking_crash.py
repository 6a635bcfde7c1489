"""A process killed by SIGKILL right after `flush()` loses nothing it logged before the flush."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

from sqlalchemy import text

from threadline.tracking.store import TrackingStore

from .homes import CHILD_TIMEOUT

if TYPE_CHECKING:
    from collections.abc import Callable

    from .homes import Home

CHILD = textwrap.dedent(
    """
    import os, sys
    from threadline.tracking import start_run

    run = start_run("crash")
    run.log_params({"C": "1.0", "seed": 7})
    run.set_tag("stage", "before")
    for i in range(20_000):
        run.log_metric("loss", 1.0 / (i + 1), step=i)
    run.log_metrics({"auc": 0.9, "f1": 0.8}, step=1)
    run.flush()
    print(run.id, "flushed", flush=True)
    for i in range(20_000, 40_000):  # logged after the acknowledgement: may be lost
        run.log_metric("loss", 0.0, step=i)
    run.set_tag("stage", "after")
    os.kill(os.getpid(), 9)
    """
)


def test_metrics_flushed_before_sigkill_survive(make_home: Callable[..., Home]) -> None:
    home = make_home()
    child = home.python(CHILD)
    out, err = child.communicate(timeout=CHILD_TIMEOUT)
    assert child.returncode == -9, err
    run_id, word = out.split()
    assert word == "flushed"

    with home.session() as repos:
        with repos.db.engine.connect() as conn:
            assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
        store = TrackingStore(repos)
        run = store.get_run(run_id)
        assert run.params == {"C": "1.0", "seed": "7"}
        assert run.tags["stage"] in ("before", "after")
        assert run.metrics["auc"].value == 0.9
        assert run.metrics["f1"].value == 0.8
        assert run.info.status == "RUNNING"  # nobody ended it
        history = store.metric_history(run_id, "loss")
        before = [p for p in history if p.step < 20_000]
        assert [p.step for p in before] == list(range(20_000))
        assert all(p.value == 1.0 / (p.step + 1) for p in before)
        # whatever got in afterwards came in whole batches, in order
        after = [p.step for p in history if p.step >= 20_000]
        assert after == list(range(20_000, 20_000 + len(after)))
