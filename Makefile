# Targets CI calls verbatim. `make run` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint format clean studio studio-if-node

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: install studio-if-node
	$(BIN)/bpmn-collab serve

# The studio (studio/, served at /studio): npm ci from the lockfile, then a Vite build, each
# only when its inputs are newer than what it made, so `make run` stays fast.
NPM ?= npm
STUDIO_MODULES := studio/node_modules/.package-lock.json
STUDIO_STAMP := studio/dist/.build-stamp
STUDIO_SOURCES := $(shell find studio/src -type f 2>/dev/null) studio/index.html \
	studio/vite.config.js studio/package.json studio/package-lock.json

$(STUDIO_MODULES): studio/package-lock.json
	cd studio && $(NPM) ci --no-audit --no-fund

$(STUDIO_STAMP): $(STUDIO_MODULES) $(STUDIO_SOURCES)
	cd studio && $(NPM) run build
	@touch $(STUDIO_STAMP)

studio: $(STUDIO_STAMP)

studio-if-node:
	@if command -v node >/dev/null 2>&1 && command -v $(NPM) >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory studio \
			|| echo "The studio could not be built (Node.js 20.19+ is needed); the server runs without it"; \
	else \
		echo "Node.js not found: the studio is not built (/studio says how to build it)"; \
	fi

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache studio/dist
