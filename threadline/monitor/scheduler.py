"""Runs every stored monitoring policy on its own interval (`threadline server --monitor`).

One thread walks the deployments that have a policy once a second and starts a pass for each
whose `interval_s` has elapsed since its previous pass; a failing pass is logged and retried
on the next interval, never stopping the others.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from sqlalchemy import select

from threadline.errors import ThreadlineError
from threadline.meta.models import MonitorPolicyRow
from threadline.monitor.loop import Monitor

if TYPE_CHECKING:
    from threadline.registry.registry import ModelRegistry

log = logging.getLogger(__name__)


class Scheduler:
    """Monitoring passes for every deployment with a policy, in a background thread."""

    def __init__(self, registry: ModelRegistry, *, tick_s: float = 1.0) -> None:
        self.monitor = Monitor(registry)
        self.tick_s = tick_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: dict[str, float] = {}
        #: passes run so far (for status and tests)
        self.passes = 0

    def due(self) -> list[str]:
        """Deployments whose interval has elapsed."""
        with self.monitor.db.session() as session:
            names = list(session.scalars(select(MonitorPolicyRow.deployment)).all())
        now = time.monotonic()
        return [n for n in names
                if now - self._last.get(n, float("-inf")) >= self.monitor.policy(n).interval_s]

    def tick(self) -> None:
        """Run the passes that are due."""
        for name in self.due():
            self._last[name] = time.monotonic()
            try:
                self.monitor.run_once(name)
                self.passes += 1
            except (ThreadlineError, ValueError) as exc:
                log.warning("monitoring %s failed: %s", name, exc)

    def start(self) -> None:
        """Start the background thread."""
        def loop() -> None:
            while not self._stop.is_set():
                self.tick()
                self._stop.wait(self.tick_s)

        self._thread = threading.Thread(target=loop, name="tl-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the pass in progress."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
