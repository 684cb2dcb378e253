# `make demo` and `make test` work on a fresh machine: they create .venv when it is missing and
# install the locked dependencies into it first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_HOME ?= instance/demo

.PHONY: venv browser demo test lint format bench lock clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# PyTorch first, by exact version: on this kind of machine pip takes the local CPU wheel.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	# The scanner's name lexicon, derived once from names-dataset into a cache file.
	$(BIN)/python -m governance.pii.names
	touch $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO_HOME)
	GOVERNANCE_HOME=$(DEMO_HOME) $(BIN)/govern demo

# The console's browser tests drive Debian's Chromium; Playwright's own browser download is not
# used (nothing downloads at run time). Installing it needs root, as on CI machines.
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }
	@$(CHROMIUM) --version

# SQLite and PostgreSQL run at once, one pytest process each (tests/run_backends.py).
test: $(STAMP) browser
	$(BIN)/python -m tests.run_backends

# Measure and write BENCHMARKS.md (a few minutes; needs PostgreSQL as for the tests).
bench: $(STAMP)
	$(BIN)/govern bench --out BENCHMARKS.md

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Refresh requirements.lock after changing dependencies in pyproject.toml.
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes \
		--no-emit-package torch --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 -o requirements.lock

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache
