# Two commands do all the set-up on a fresh machine:
#   make run    installs into .venv, then runs the main job (a default sweep on built-in data)
#   make test   installs into .venv (with dev extras), then runs the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/sweeper run

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(VENV)/bin/ruff check trainers sweeper tests benchmarks

clean:
	rm -rf $(VENV) *.egg-info
