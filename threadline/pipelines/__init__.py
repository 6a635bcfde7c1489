"""Data-driven pipelines: DAGs of steps whose outputs are commits, re-run exactly when their inputs change."""
