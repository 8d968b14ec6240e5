# The two commands of the README. Each installs what it needs, from nothing:
#   make run   - the whole platform locally on the embedded default (port 7071)
#   make test  - test dependencies, the emulators (npm), the full suite
# Everything Python goes into .venv; the emulators into tests/emulators/node_modules, the client
# generators into tests/clients/node_modules.
#   make lock       - regenerate the pinned, hashed lock files from the *.in files (docs/packaging.md)
#   make lock-check - check that the locks resolve for every supported Python (needs PyPI)

comma := ,
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check --quiet
# Hash-checked installs: nothing but the locked files, byte for byte (docs/packaging.md).
INSTALL := $(PIP) install --require-hashes
# Supported Pythons (pyproject.toml requires-python): fastapi needs 3.11; 3.13 is the newest tested.
PYTHON_MIN := 3.11
PYTHON_MAX := 3.13
UV_COMPILE := $(PY) -m uv pip compile --quiet --generate-hashes --universal --python-version $(PYTHON_MIN) \
	--custom-compile-command "make lock"

.PHONY: run test bench clean lock lock-check chromium

$(VENV)/.runtime: requirements.txt requirements-local.txt
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(not ($(subst .,$(comma),$(PYTHON_MIN)),) <= v <= ($(subst .,$(comma),$(PYTHON_MAX)),))' \
		|| { echo "Accrue needs Python $(PYTHON_MIN) to $(PYTHON_MAX); $(PYTHON) is $$($(PYTHON) -V). Try: make PYTHON=python3.12"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	@# What Azure installs (requirements.txt) plus what only the local platform runs (uvicorn).
	$(INSTALL) -r requirements.txt -r requirements-local.txt
	@# The `accrue` command (run, issue-key, poison, reconcile, export decrypt ...): python -m shared.local.
	printf '#!/bin/sh\nPYTHONPATH="%s$${PYTHONPATH:+:$$PYTHONPATH}" exec "%s" -m shared.local "$$@"\n' \
		"$(CURDIR)" "$(CURDIR)/$(PY)" > $(VENV)/bin/accrue
	chmod +x $(VENV)/bin/accrue
	touch $@

$(VENV)/.test: $(VENV)/.runtime tests/requirements.txt
	$(INSTALL) -r tests/requirements.txt
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

# The operator page's browser test drives Debian's chromium through chromium-driver (WebDriver's
# virtual authenticator for WebAuthn); installed once, from the distribution, never at test time.
chromium:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }

# pytest starts the emulators itself (tests/emulators.py: free ports, stopped at the end).
test: $(VENV)/.test tests/emulators/node_modules/.installed tests/clients/node_modules/.installed chromium
	$(PY) -m pytest -n auto --dist worksteal

bench: $(VENV)/.test
	$(PY) bench/run_all.py

# The lock files, from the human-edited *.in files. An existing pin is kept unless its .in line
# changed (uv prefers the versions already in the output file); `make lock UPGRADE=1` upgrades all.
lock: $(VENV)/.test
	$(UV_COMPILE) $(if $(UPGRADE),--upgrade) requirements.in -o requirements.txt
	$(UV_COMPILE) $(if $(UPGRADE),--upgrade) -c requirements.txt requirements-local.in -o requirements-local.txt
	$(UV_COMPILE) $(if $(UPGRADE),--upgrade) -c requirements.txt -c requirements-local.txt \
		tests/requirements.in -o tests/requirements.txt

lock-check: $(VENV)/.test
	$(PY) tests/lock_check.py

clean:
	rm -rf $(VENV) tests/emulators/node_modules tests/clients/node_modules .accrue-data
