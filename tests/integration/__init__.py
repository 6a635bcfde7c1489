"""Integration tests: real files, real subprocesses, real databases."""
