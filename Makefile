# The entry points for people and CI. `sudo make run` and `sudo make test` set up what is missing.
VENV := .venv
PYTEST := $(VENV)/bin/python -m pytest

.PHONY: setup run daemon test unit kernel lint bench dashboards clean

setup:
	@bash scripts/setup.sh

run: setup
	$(VENV)/bin/kcmp-monitor --trace

daemon: setup
	$(VENV)/bin/kcmp-monitor

test:
	@bash scripts/setup.sh --test
	$(PYTEST) -ra tests

unit: setup
	$(PYTEST) -ra tests/unit

kernel:
	@bash scripts/setup.sh --test
	$(PYTEST) -ra tests/kernel

lint: setup
	$(VENV)/bin/ruff check monitor tests bench dashboards
	$(VENV)/bin/mypy

dashboards: setup
	$(VENV)/bin/python dashboards/build.py
	$(VENV)/bin/python dashboards/lint.py dashboards/*.json

bench: setup
	@bash scripts/setup.sh --bench
	$(VENV)/bin/python bench/bench.py

clean:
	rm -rf $(VENV) .tools build *.egg-info
