# Two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config.toml

.PHONY: help run test lint bench clean

# The first target: `make` alone says what there is.
help:
	@echo "make run     set up and serve seeds/ on http://127.0.0.1:8080 (CONFIG=config.toml)"
	@echo "make test    set up, lint and run the whole test suite"
	@echo "make lint    ruff over the code and tests"
	@echo "make bench   measure against floors (QUICK=1 for the short run)"
	@echo "make clean   remove the virtual environment, data/ and the exported feeds"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The stamp files re-run pip only when the pins or the project metadata change.
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/aggregator --config $(CONFIG) serve

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The rules are in pyproject.toml ([tool.ruff]).
lint: $(VENV)/.installed-test
	$(BIN)/ruff check aggregator tests bench

$(VENV)/.installed-bench: $(VENV)/.installed-test
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,bench]'
	touch $@

# Not part of `make test`: QUICK=1 for the reduced run.
bench: $(VENV)/.installed-bench
	$(BIN)/python -m bench $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) data feeds/*.rss feeds/*.atom feeds/*.json feeds/*.opml feeds/tags
