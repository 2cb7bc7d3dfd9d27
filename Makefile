PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# a second venv with every non-torch dependency at its declared floor (constraints/minimum.txt)
VENV_MIN := .venv-min
BIN_MIN := $(VENV_MIN)/bin

.PHONY: demo test test-slow test-min lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

$(BIN_MIN)/python:
	$(PYTHON) -m venv $(VENV_MIN)
	$(BIN_MIN)/pip install --quiet --upgrade pip

$(VENV_MIN)/.installed-dev: pyproject.toml constraints/minimum.txt | $(BIN_MIN)/python
	$(BIN_MIN)/pip install --quiet -c constraints/minimum.txt -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/geoembed demo --out demo_output --overwrite

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q

# tests marked slow (wheel install in a fresh venv, ...): run by .ci/run, not by `make test`
test-slow: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -m slow || [ $$? -eq 5 ]

test-min: $(VENV_MIN)/.installed-dev
	$(BIN_MIN)/python -m pytest -q

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

clean:
	rm -rf demo_output .pytest_cache
