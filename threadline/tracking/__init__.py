"""Experiment tracking: runs, params, metric series, tags, artifacts and inputs, in lineage."""
