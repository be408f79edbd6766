# Set-up and everyday targets. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# uv ignores pip's configuration: hand it the configured wheel folders when there are any.
PIP_FIND_LINKS := $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null)
PIP_EXTRA_INDEX := $(shell $(PYTHON) -m pip config get global.extra-index-url 2>/dev/null)
UV_ENV := $(if $(PIP_FIND_LINKS),UV_FIND_LINKS="$(PIP_FIND_LINKS)") \
          $(if $(PIP_EXTRA_INDEX),UV_EXTRA_INDEX_URL="$(PIP_EXTRA_INDEX)") UV_INDEX_STRATEGY=unsafe-best-match

.PHONY: install run test lint typecheck bench eval clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet uv
	$(UV_ENV) $(BIN)/uv pip install --python $(BIN)/python -e '.[dev]'
	touch $(STAMP)

run: install
	NOETL_HOME=$${NOETL_HOME:-.noetl-home} $(BIN)/noetl-agent run examples/sales_report.yaml

lint: install
	$(BIN)/ruff check engine learning noetl_agent mcp_server tests evals
	$(BIN)/ruff format --check engine learning noetl_agent mcp_server tests evals

typecheck: install
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest -q -p no:cacheprovider

bench: install
	$(BIN)/python -m evals.bench.engine
	$(BIN)/python -m evals.bench.distributed

eval: install
	$(BIN)/python -m evals.retrieval.run

clean:
	rm -rf $(VENV)
