# Every target does its own set-up from a fresh clone: it creates .venv and installs into it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck docs unit clean chromium chaos celery-suite

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The documentation site (MkDocs + Material + mkdocstrings); --strict turns every warning
# (a broken link, a page missing from the nav, a docstring that does not render) into an error.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The dashboard's browser tests drive Debian's chromium (never `playwright install`).
# CI runs as root on a fresh machine: install it there; elsewhere say how.
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	  elif [ "$$CI" = true ]; then \
	    echo "/usr/bin/chromium is missing and this CI job is not root" >&2; exit 1; \
	  else \
	    echo "note: no /usr/bin/chromium, browser tests will skip (sudo apt-get install chromium)"; \
	  fi; \
	fi

test: $(STAMP) chromium lint typecheck docs
	$(BIN)/pytest -n 2 --dist loadfile

# The long chaos soak (issue 11's sizes, about 15 minutes): worker kills, broker restarts and
# bad input on Redis, RabbitMQ (a private node) and SQLite; writes bench/results/chaos-<date>.md.
chaos: $(STAMP)
	$(BIN)/python bench/chaos.py

# Celery 5.7's own integration suite (t/integration, downloaded by pip into build/) against
# Celeriac and against Celery on the machine's Redis (DBs 14 and 15, about 40 minutes):
# writes bench/results/celery-suite-<date>.md. Not in CI; tests/unit/test_celery_suite_hook.py is.
celery-suite: $(STAMP)
	$(BIN)/python -m tests.celery_suite

clean:
	rm -rf $(VENV) build *.egg-info
