"""Executors: the only place that knows how work is shipped to workers (local processes or Ray)."""
