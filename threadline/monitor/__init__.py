"""Monitoring: reference summaries, drift and accuracy checks, alerts, policies."""

__all__: list[str] = []
