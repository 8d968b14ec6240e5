# The two commands of the README. Each installs what it needs, from nothing:
#   make run   - the whole platform locally on the embedded default (port 7071)
#   make test  - test dependencies, the emulators (npm), the full suite
# Everything Python goes into .venv; the emulators into tests/emulators/node_modules, the client
# generators into tests/clients/node_modules.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check --quiet

.PHONY: run test bench clean

$(VENV)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements.txt
	@# The `accrue` command (run, issue-key, poison, reconcile, export decrypt ...): python -m shared.local.
	printf '#!/bin/sh\nPYTHONPATH="%s$${PYTHONPATH:+:$$PYTHONPATH}" exec "%s" -m shared.local "$$@"\n' \
		"$(CURDIR)" "$(CURDIR)/$(PY)" > $(VENV)/bin/accrue
	chmod +x $(VENV)/bin/accrue
	touch $@

$(VENV)/.test: $(VENV)/.runtime tests/requirements.txt
	$(PIP) install -r tests/requirements.txt
	touch $@

tests/emulators/node_modules/.installed: tests/emulators/package-lock.json
	npm ci --prefix tests/emulators --no-audit --no-fund --loglevel=error
	touch $@

# The client generators the contract tests run (openapi-typescript, typescript).
tests/clients/node_modules/.installed: tests/clients/package-lock.json
	npm ci --prefix tests/clients --no-audit --no-fund --loglevel=error
	touch $@

run: $(VENV)/.runtime
	$(PY) -m shared.local run

# pytest starts the emulators itself (tests/emulators.py: free ports, stopped at the end).
test: $(VENV)/.test tests/emulators/node_modules/.installed tests/clients/node_modules/.installed
	$(PY) -m pytest

bench: $(VENV)/.test
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) tests/emulators/node_modules tests/clients/node_modules .accrue-data
