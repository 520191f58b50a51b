# The two set-up commands of the README: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-unit bench lint clean

setup:
	@bash scripts/setup.sh

demo: setup
	@$(PY) examples/runtime_demo.py
	@$(PY) examples/images_demo.py

test: setup
	@$(PY) -m pytest -q -p no:cacheprovider tests

test-unit: setup
	@$(PY) -m pytest -q -p no:cacheprovider tests/unit

bench: setup
	@$(PY) -m bench

lint: setup
	@$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build src/*.egg-info
