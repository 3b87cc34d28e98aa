# mdmappliance: `make run` starts a demo appliance, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= var/demo
DEPS_STAMP := $(VENV)/.deps-stamp
SHELL := /bin/bash

.PHONY: run test faults bench bench-instructions lint conf schema update-schema install clean

# The virtualenv with the project's dependencies and test tools; rebuilt when they change.
$(DEPS_STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet '.[test]'
	touch $@

# (Re)install the project itself so the console script and the twistd plugin match the tree.
install: $(DEPS_STAMP)
	rm -rf build  # a stale build/ would hide a package left out of setup.cfg
	$(BIN)/python -m pip install --quiet --no-deps --force-reinstall .

# init is idempotent: it creates what an older demo lacks and otherwise changes nothing.
run: install
	$(BIN)/mdmappliance init --data-dir $(DEMO_DIR) --hostname localhost --device-port 8443 --enrollment-port 8444
	exec $(BIN)/mdmappliance serve --config $(DEMO_DIR)/mdmappliance.toml

# trial's report, then one plain "N passed, N failed" line; fails if trial failed.
test: install
	set -o pipefail; $(BIN)/python -m twisted.trial $(TRIAL_ARGS) tests 2>&1 \
	    | $(BIN)/python tests/summary.py

# The fault-injection suite (tests/faults): SIGKILLs, a locked, read-only or full database,
# APNs and webhook outages under load; prints its seed and figures. MDMAPPLIANCE_FAULT_SEED
# replays a run.
faults: install
	set -o pipefail; MDMAPPLIANCE_FAULTS=1 $(BIN)/python -m twisted.trial tests.faults 2>&1 \
	    | $(BIN)/python tests/summary.py

bench: install
	$(BIN)/python bench/run.py

# Instructions per device message, counted by callgrind (repeatable where CPU time is not).
bench-instructions: install
	$(BIN)/python bench/instructions.py
	$(BIN)/python bench/instructions.py --routes-only

lint: $(DEPS_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache  # the import rule of docs/architecture.md

# Regenerate the documented example config from the schema in mdmappliance/config/.
conf: install
	$(BIN)/mdmappliance config-example > conf/mdmappliance.toml

# Rewrite the current schema (one readable file) from the numbered migrations.
schema: $(DEPS_STAMP)
	$(BIN)/python -c "from mdmappliance.store.migrate import main; main()" \
	    > mdmappliance/store/schema.sql

# Apple's device-management schema (github.com/apple/device-management, MIT), shipped in
# mdmappliance/mdm/apple/: copy mdm/commands, mdm/checkin and mdm/profiles from a checkout
# and compile schema.json. Today's copy: tag Release_iOS-18-1_macOS-15-1, commit
# b6202ca2fbd31286a52eb160b67a4db7b4fe1f1f. To update:
#   git clone https://github.com/apple/device-management /tmp/dm
#   make update-schema APPLE_SCHEMA=/tmp/dm
APPLE_SCHEMA ?= ../shared/testdata/apple-device-management
update-schema: $(DEPS_STAMP)
	$(BIN)/python -m mdmappliance.mdm.schema_build --source $(APPLE_SCHEMA)

clean:
	rm -rf $(VENV) build *.egg-info _trial_temp
