# The two set-up commands of the README: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo demo-runtime demo-images test test-unit bench lint clean

setup:
	@bash scripts/setup.sh

# the main demo: the seed's counter-app with `dockyard compose` (examples/counter_demo.py)
demo: setup
	@$(PY) examples/counter_demo.py

# the earlier demos: the OCI runtime alone, and images with a registry of our own
demo-runtime: setup
	@$(PY) examples/runtime_demo.py

demo-images: setup
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
