# fraudstream: two commands on a machine with only Python 3.11+ and pip.
#   make demo   - virtualenv, embedded broker + Redis, a worker, sample traffic, what came out
#   make test   - the whole test suite (unit, doctests, integration against a real broker/Redis)

PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
             command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
             && { echo $$p; break; }; done)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test test-unit lint bench stack-up stack-down stack-status readme clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "fraudstream needs Python >= 3.11 on PATH (python3.11, python3.12 ...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m infra.demo

test: $(STAMP)
	$(PY) -m pytest -q

test-unit: $(STAMP)
	$(PY) -m pytest -q -m "not integration and not e2e"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy config contracts features models training app infra simulator bench

bench: $(STAMP)
	$(VENV)/bin/fraudstream bench

stack-up: $(STAMP)
	$(VENV)/bin/fraudstream stack up

stack-down: $(STAMP)
	$(VENV)/bin/fraudstream stack down

stack-status: $(STAMP)
	$(VENV)/bin/fraudstream stack status

readme: $(STAMP)
	$(PY) -m config.settings_doc --write README.md

clean:
	-$(VENV)/bin/fraudstream stack down 2>/dev/null
	rm -rf $(VENV) .fraudstream .pytest_cache
