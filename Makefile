# Two commands: `make up` and `make test`. Both bootstrap .venv when needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test lint bench fuzz clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev,bench]'
	touch $(STAMP)

up: $(STAMP)
	$(BIN)/orderflow up

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The API fuzzer for ten minutes (the test suite runs it for about two): 0 failures expected.
fuzz: $(STAMP)
	ORDERFLOW_FUZZ_SECONDS=$${ORDERFLOW_FUZZ_SECONDS:-600} \
	ORDERFLOW_FUZZ_EXAMPLES=$${ORDERFLOW_FUZZ_EXAMPLES:-500} \
	$(BIN)/pytest tests/api/test_fuzz.py -q -p no:cacheprovider --timeout=900

bench: $(STAMP)
	$(BIN)/orderflow bench

clean:
	rm -rf $(VENV) .orderflow .pytest_cache
