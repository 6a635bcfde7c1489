"""Data preparation: profiles and splits of committed tables, each step recorded as a commit."""
