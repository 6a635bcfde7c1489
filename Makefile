# Tiny entry points; each installs what it needs into .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test check bench stress clean

$(BIN)/threadline: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/threadline

demo: install
	$(BIN)/python examples/demo.py

test: install
	$(BIN)/python -m pytest tests -q -m "not stress"

stress: install
	$(BIN)/python -m pytest tests -q -m stress

check: install
	$(BIN)/ruff check threadline tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: install
	$(PY) -m venv .bench-venv && .bench-venv/bin/pip install -q -r benchmarks/requirements.txt
	$(BIN)/python benchmarks/data_repo_vs_dvc.py --dvc .bench-venv/bin/dvc --markdown docs/benchmarks-latest.md

clean:
	rm -rf $(VENV) .bench-venv .pytest_cache .mypy_cache .ruff_cache
