# The README's two set-up commands are `make demo` and `make test`; each creates .venv when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install install-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: setup.py $(BIN)/python
	$(BIN)/python -m pip install --progress-bar off -e .
	touch $@

$(VENV)/.installed-test: setup.py $(BIN)/python
	$(BIN)/python -m pip install --progress-bar off -e ".[test]"
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

## make demo: the main job, the whole pipeline on the built-in phantom (CPU: < 15 min)
demo: install
	$(BIN)/symtc demo -o demo_output

## make test: install with the test extra and run the whole suite
test: install-test
	$(BIN)/pytest
