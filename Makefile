# Two commands: `make up` and `make test`. Both bootstrap .venv when needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

up: $(STAMP)
	$(BIN)/orderflow up

test: $(STAMP)
	$(BIN)/ruff check orderflow tests
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check orderflow tests

bench: $(STAMP)
	$(BIN)/orderflow bench

clean:
	rm -rf $(VENV) .orderflow .pytest_cache
