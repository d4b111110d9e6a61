# Two commands for a fresh machine (see README.md):
#   make demo   - run the main job: `nestor demo`
#   make test   - ruff, mypy and pytest
# Both set up .venv with the pinned dependencies first.

VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint typecheck pytest bench clean

setup:
	@./scripts/bootstrap.sh

demo: setup
	$(BIN)/nestor demo

test: setup lint typecheck pytest

lint:
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples docs

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python bench/bench_dataset.py
	$(BIN)/python bench/bench_contract.py
	$(BIN)/python bench/bench_attestation.py
	$(BIN)/python bench/bench_pipeline.py
	$(BIN)/python bench/bench_analyses.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
