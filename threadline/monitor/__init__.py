"""Monitoring: reference summaries, drift and accuracy checks, alerts, policies."""

from threadline.monitor.drift import DriftReport, check_drift
from threadline.monitor.loop import Monitor
from threadline.monitor.reference import Reference
from threadline.monitor.version_reference import reference_for_version
from threadline.monitor.window import WindowSummary, summarise

__all__ = ["DriftReport", "Monitor", "Reference", "WindowSummary", "check_drift",
           "reference_for_version", "summarise"]
