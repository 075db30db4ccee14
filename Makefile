# Two entry points (see README): `make demo` and `make test`. Each bootstraps .venv on first use.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck unit bench clean

$(BIN)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

demo: $(BIN)/.installed
	$(BIN)/python demo.py

test: lint typecheck unit

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/.installed
	$(BIN)/mypy .

unit: $(BIN)/.installed
	$(BIN)/pytest

# The benchmarks at their defaults (about 25 min on two cores); see README "Benchmarks".
bench: $(BIN)/.installed
	$(BIN)/python -m bench.onboard_fleet
	$(BIN)/python -m bench.idle_fleet
	$(BIN)/python -m bench.lifetime
	$(BIN)/python -m bench.lifetime --faults

clean:
	rm -rf $(VENV) .data .mypy_cache .ruff_cache .pytest_cache
