"""Parallel training: shard-and-combine, synchronous data parallelism and parallel search on the executors."""
