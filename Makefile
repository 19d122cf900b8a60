# Clickstream Guardian — the two commands a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat infra/constraints.txt infra/requirements.in pyproject.toml | sha256sum | cut -c1-12)

.PHONY: setup run stop test lint unit integration e2e status clean

setup: $(STAMP)  ## virtualenv with pinned deps, jars via Maven, PostgreSQL (idempotent)
	@$(BIN)/clickguard setup

$(STAMP):
	@echo "setup: creating $(VENV) with pinned dependencies (infra/constraints.txt)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --upgrade pip
	@$(BIN)/pip install -q -c infra/constraints.txt -r infra/requirements.in
	@$(BIN)/pip install -q --no-deps -e .
	@grep -q clickguard.dagster_env $(BIN)/activate || printf '%s\n' \
		'# clickguard: `dagster asset materialize` uses the same instance as the UI' \
		'export DAGSTER_HOME="$$("$$VIRTUAL_ENV/bin/python" -m clickguard.dagster_env home)"' \
		'export DAGSTER_MODULE_NAME=clickguard_dagster.definitions' >> $(BIN)/activate
	@rm -f $(VENV)/.installed-* && touch $@

run: setup  ## start everything and stream demo traffic
	@$(BIN)/clickguard demo

stop:  ## stop every process of the stack
	@$(BIN)/clickguard stack down

status:
	@$(BIN)/clickguard stack status

lint: setup  ## ruff, then mypy on the core and the apps (pyproject.toml [tool.mypy])
	@$(BIN)/ruff check .
	@$(BIN)/mypy

test: setup lint  ## the whole suite on real services (starts what it needs)
	@$(BIN)/pytest tests

unit: setup
	@$(BIN)/pytest tests/unit

integration: setup
	@$(BIN)/pytest tests/integration

e2e: setup
	@$(BIN)/pytest tests/e2e

clean: stop
	@$(BIN)/clickguard stack down --reset
