"""End-to-end tests: the user's workflow through the real CLI."""
