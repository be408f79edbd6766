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

.PHONY: install run test lint typecheck chromium bench eval clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet uv
	$(UV_ENV) $(BIN)/uv pip install --python $(BIN)/python -e '.[dev]'
	touch $(STAMP)

run: install
	NOETL_HOME=$${NOETL_HOME:-.noetl-home} $(BIN)/noetl-agent demo --auto-approve-as-demo-reviewer

lint: install
	$(BIN)/ruff check engine learning noetl_agent mcp_server tests evals
	$(BIN)/ruff format --check engine learning noetl_agent mcp_server tests evals

typecheck: install
	$(BIN)/mypy

# The browser tests (tests/review) drive Debian's chromium; Playwright's own browser
# download cannot work here, so only its Python package is installed (dev extras).
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y --no-install-recommends chromium \
	  || { apt-get update -qq && apt-get install -y --no-install-recommends chromium; }; \
	else \
	  echo "chromium: /usr/bin/chromium is missing and installing it needs root and apt-get;"; \
	  echo "chromium: the browser tests in tests/review will SKIP (under CI=true they FAIL)."; \
	fi

test: lint typecheck chromium
	$(BIN)/pytest -q -p no:cacheprovider

bench: install
	$(BIN)/python -m evals.bench.engine
	$(BIN)/python -m evals.bench.distributed
	$(BIN)/python -m evals.bench.learning
	$(BIN)/python -m evals.bench.mcp

eval: install
	$(BIN)/python -m evals.retrieval.run
	$(BIN)/python -m evals.generation.run
	$(BIN)/python -m evals.explain.run
	$(BIN)/python -m evals.policy.run
	$(BIN)/python -m evals.mcp.run

clean:
	rm -rf $(VENV)
