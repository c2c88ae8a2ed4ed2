# Two commands do all the set-up on a fresh machine:
#   make run    installs into .venv, then runs the main job (a default sweep on built-in data)
#   make test   installs into .venv (with dev extras) and Chromium (apt, if missing), then runs
#               the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test test-all lint bench clean browser

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	@# The inception extra where the index has it (not the offline CI mirror): its tests skip
	@# without it. One quick try, so an offline machine does not wait on retries.
	$(PY) -m pip install -q --retries 0 --timeout 15 -e ".[inception]" 2>/dev/null || \
	  echo "note: gan-sweeper[inception] is not installable here; the Inception tests will skip"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/sweeper run $(RUN_ARGS)

# The browser test (tests/sweeper/cli/test_browser.py) drives Debian's headless Chromium;
# installed with apt when missing (as root, or through sudo).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  S=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  $$S apt-get install -y -q chromium chromium-driver >/dev/null || \
	  { $$S apt-get update -q >/dev/null && $$S apt-get install -y -q chromium chromium-driver >/dev/null; }; }

test: $(STAMP) browser
	$(PY) -m pytest -q -p no:cacheprovider -rs

# Also the fault variants that repeat another's code path with the other --fuse value
# (about 7 minutes more; see tests/conftest.py).
test-all: $(STAMP) browser
	$(PY) -m pytest -q -p no:cacheprovider -rs --all-variants

lint: $(STAMP)
	$(VENV)/bin/ruff check trainers sweeper tests benchmarks examples

clean:
	rm -rf $(VENV) *.egg-info
