# Two commands matter: `make run` (set up and serve web + worker on SQLite) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench install chromium fakerule fakecentra clean faults

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall whenever pyproject.toml changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The benchmarks' own extra (the Celery peer), on top of dev.
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): pyproject.toml | $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# The browser tests (tests/browser) drive Debian's Chromium through Playwright; installed here when missing
# (Playwright's own browser download needs the internet at test time, which CI does not have).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@command -v chromium >/dev/null 2>&1 || [ -n "$$CHROMIUM_PATH" ] || { \
		echo "installing Debian's chromium for the browser tests"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

run: install
	$(BIN)/python scripts/run.py

test: install chromium
	mkdir -p var
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install $(BENCH_STAMP)
	SANDBOX=1 $(BIN)/python tests/bench/run_all.py

fakerule: install
	SANDBOX=1 $(BIN)/python manage.py fakerule

fakecentra: install
	SANDBOX=1 $(BIN)/python manage.py fakecentra

clean:
	rm -rf $(VENV) var *.egg-info

# The fault suite (docs/reliability.md): PostgreSQL + Redis, gunicorn, 3 qcluster processes, a fake Rule process.
faults: install
	mkdir -p var
	$(BIN)/python tests/faults/run.py $(FAULTS_ARGS)
