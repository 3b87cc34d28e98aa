# mdmappliance: `make run` starts a demo appliance, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= var/demo
DEMO_TOPIC ?= com.apple.mgmt.External.mdmappliance-demo
DEVICE_PORT ?= 8443
ENROLLMENT_PORT ?= 8444
ADMIN_PORT ?= 9180
RUNTIME_STAMP := $(VENV)/.runtime-stamp
DEPS_STAMP := $(VENV)/.deps-stamp
INSTALL_STAMP := $(VENV)/.install-stamp
SHELL := /bin/bash
#: What the installed package is built from: reinstalled only when one of these changed.
SOURCES := $(shell find mdmappliance twisted -type f ! -path '*/__pycache__/*' \
    ! -name '*.pyc' ! -name dropin.cache 2>/dev/null) setup.cfg pyproject.toml

.PHONY: run ports test faults bench bench-instructions lint conf schema update-schema install clean dist deb packages

# The virtualenv with the project's runtime dependencies (what `make run` needs), rebuilt
# when they change; the test and lint tools on top of it for `make test`.
$(RUNTIME_STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c 'import configparser, subprocess, sys; c = configparser.ConfigParser(); \
	    c.read("setup.cfg"); lines = c["options"]["install_requires"].splitlines(); \
	    reqs = [line.strip() for line in lines if line.strip()]; \
	    sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "--quiet", *reqs]))'
	touch $@

$(DEPS_STAMP): $(RUNTIME_STAMP)
	$(BIN)/python -m pip install --quiet '.[test]'
	touch $@

# The project itself, so the console script and the twistd plugin match the tree: built
# again only when a source file changed since the last install.
$(INSTALL_STAMP): $(RUNTIME_STAMP) $(SOURCES)
	rm -rf build  # a stale build/ would hide a package left out of setup.cfg
	$(BIN)/python -m pip install --quiet --no-deps --force-reinstall .
	touch $@

install: $(DEPS_STAMP) $(INSTALL_STAMP)

# The demo's ports must be free before anything else is done (a second `make run` says so
# at once instead of reinstalling under the running one).
ports:
	@for port in $(DEVICE_PORT) $(ENROLLMENT_PORT) $(ADMIN_PORT); do \
	    if (exec 3<>/dev/tcp/127.0.0.1/$$port) 2>/dev/null; then \
	        echo "make run: port $$port is in use (is a demo already running?)"; exit 1; \
	    fi; \
	done

# init is idempotent: it creates what an older demo lacks and otherwise changes nothing.
run: ports $(INSTALL_STAMP)
	$(BIN)/mdmappliance init --data-dir $(DEMO_DIR) --hostname localhost \
	    --device-port $(DEVICE_PORT) --enrollment-port $(ENROLLMENT_PORT) \
	    --admin-port $(ADMIN_PORT) --topic $(DEMO_TOPIC)
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
	$(BIN)/python bench/instructions.py --without-klein

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

# The single-file binary dist/mdmappliance: a shiv zipapp of the project and its dependencies
# (pinned to this virtualenv's), for any machine with the same Python (README "Single-file
# binary and .deb"). The wheel is built from a copy of the tree, never from a stale build/.
dist: $(DEPS_STAMP)
	$(BIN)/python packaging/deb/build.py dist --out dist/mdmappliance

# dist/mdmappliance_<version>_<arch>.deb: that binary under /opt/mdmappliance, the unit, the
# config as a conffile, the maintainer scripts of packaging/deb/.
deb: dist
	$(BIN)/python packaging/deb/build.py deb --binary dist/mdmappliance --out-dir dist

# Builds both, then starts the appliance from each and runs lintian (tests/packages; slow, so
# not part of `make test`).
packages: deb
	set -o pipefail; MDMAPPLIANCE_PACKAGES=1 $(BIN)/python -m twisted.trial tests.packages 2>&1 \
	    | $(BIN)/python tests/summary.py
