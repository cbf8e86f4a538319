# Everything runs from .venv; only Python 3.11 and make are needed beforehand.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast test-integration chromium lint faults bench demo airflow cluster suites freeze clean

setup: $(STAMP)

# requirements-dev.txt includes requirements.txt (the runtime pins, all the image gets)
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup lint chromium
	$(BIN)/python -m pytest

# The browser test drives Debian's Chromium (Playwright cannot fetch its own here).
chromium:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; \
	  else echo "the browser test needs Debian's chromium: sudo apt-get install chromium" >&2; exit 1; fi; }

# Tiers: test-fast (no servers, under a minute), test-integration (PostgreSQL and S3
# from the venv, Airflow in-process), test (everything, with the live Airflow components).
test-fast: setup lint
	$(BIN)/python -m pytest tests/unit tests/dags

test-integration: setup
	$(BIN)/python -m pytest tests/integration tests/faults

faults: setup
	$(BIN)/python -m pytest tests/faults

demo: setup
	$(BIN)/python -m nem12.devtools.demo $(if $(FILES),--files $(FILES))

airflow: setup
	$(BIN)/python -m nem12.devtools.demo --serve local

cluster: setup
	$(BIN)/python -m nem12.devtools.demo --serve celery --workdir .cluster

bench: setup
	$(BIN)/python bench/parse_bench.py
	$(BIN)/python bench/pipeline_bench.py
	$(BIN)/python bench/review_bench.py
	$(BIN)/python bench/usage_bench.py

# The GX suites are written from the rule catalogue and the MDFF facts; commit the JSON.
suites: setup
	$(BIN)/python -m nem12.pipeline.suites

# What .venv holds against the two files' pins together ('>' lines: in .venv only).
# A new pin goes to requirements.txt if the runtime dependencies need it (pip install
# --dry-run --report of them in a fresh venv shows it), else to requirements-dev.txt.
freeze: setup
	$(BIN)/python -m pip freeze --exclude-editable | sort -f > requirements.lock.tmp
	grep -hv '^[#-]' requirements.txt requirements-dev.txt | sort -f | \
	  diff - requirements.lock.tmp && echo "the two files pin exactly what .venv holds"

clean:
	rm -rf $(VENV) .pytest_cache bench/out .demo .cluster
