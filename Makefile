# fleetstream — the two commands: `make run` and `make test`. Everything else is a step of them.
SHELL := /bin/bash
PYTHON ?= python3
# uv manages the venv from uv.lock; it is installed from PyPI when the machine lacks it.
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
RUN := $(UV) run --frozen
# The compiled stream core (native/) is built by `uv sync` with the Rust toolchain rustup puts in
# ~/.cargo/bin (Rust >= 1.82; Debian's rustc is too old): first on PATH, so it wins.
export PATH := $(HOME)/.cargo/bin:$(PATH)
RUST_MIN := 1.82

.PHONY: rust run test test-slow test-secure test-cluster screenshots lint tools unit integration soak setup venv stack-down bench bench-secure clean

run: venv  ## set up venv + local stack, run API and worker in the foreground
	$(RUN) fleetstream run

test: venv lint tools  ## set up everything, then lint, unit (today and 400 days ahead) and integration
	$(RUN) fleetstream setup
	$(RUN) pytest tests/unit -q
	$(RUN) python -m tests.future
	$(RUN) pytest tests/integration -q -m "not slow and not cluster and not secure"

test-slow: venv  ## the fleet-size tests and the MQTT front killed under load (minutes each); CI runs them after `make test`
	$(RUN) fleetstream setup
	$(RUN) pytest tests/integration -q -m "slow and not cluster and not secure"

test-secure: venv  ## secure mode end to end on a broker of its own (TLS, SASL, ACLs; ~3 min); CI runs it after test-slow
	$(RUN) fleetstream setup
	$(RUN) pytest tests/integration -q -m secure

test-cluster: venv  ## three brokers killed under load, and the coordinator killed mid-join (~7 min); CI runs them after test-secure
	$(RUN) fleetstream setup
	$(RUN) pytest tests/integration -q -m cluster

screenshots: venv  ## photograph the operator views into docs/screenshots (on purpose, not every test run)
	$(RUN) fleetstream setup
	FLEET_SCREENSHOTS_DIR=docs/screenshots $(RUN) pytest tests/integration/test_operator_views.py \
		tests/integration/test_operator_actions.py -q -k browser

lint: venv
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy
	$(RUN) lint-imports  # the layer rule: schemas <- connectors <- streams <- agents | api <- cli

tools: venv  ## programs the unit tests need besides the stack: promtool (Debian's prometheus)
	$(RUN) python -m cli.stack.dev_tools

unit: venv tools
	$(RUN) pytest tests/unit -q
	$(RUN) python -m tests.future

integration: venv
	$(RUN) fleetstream setup
	$(RUN) pytest tests/integration -q -m "not slow and not cluster and not secure"

soak: venv  ## the hostile fleet for 15 minutes, the MQTT front with 1,000 registrations
	$(RUN) fleetstream setup
	FLEET_SOAK_S=900 $(RUN) pytest tests/integration/test_hostile_fleet.py \
		tests/integration/test_mqtt_front.py -q -s

bench: venv  ## every benchmark scenario and baseline (< 30 min on 2 cores) → bench/RESULTS.md
	$(RUN) fleetstream setup
	$(RUN) fleetstream bench all

bench-secure: venv  ## the cost of secure mode: ingest and pipeline, plain and secure stacks of its own (~10 min)
	$(RUN) fleetstream setup
	$(RUN) fleetstream bench secure

setup: venv
	$(RUN) fleetstream setup

stack-down: venv
	$(RUN) fleetstream stack down

venv: .venv/.synced

.venv/.synced: pyproject.toml uv.lock native/Cargo.toml native/Cargo.lock $(wildcard native/src/*.rs)
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 \
		|| $(PYTHON) -m pip install --quiet 'uv>=0.5'
	@$(MAKE) --no-print-directory rust
	$(UV) sync --frozen
	@touch $@

rust:  ## check for the Rust toolchain that builds native/ (the compiled stream core)
	@command -v cargo >/dev/null 2>&1 && command -v rustc >/dev/null 2>&1 || { \
		echo "error: Rust is missing: native/ (the compiled stream core) needs Rust >= $(RUST_MIN)." >&2; \
		echo "Install it with rustup (https://rustup.rs), which puts cargo in ~/.cargo/bin." >&2; exit 1; }
	@printf '%s\n' "$(RUST_MIN)" "$$(rustc --version | cut -d' ' -f2)" | sort -V -C || { \
		echo "error: $$(rustc --version) is too old: native/ needs Rust >= $(RUST_MIN) (rustup update)." >&2; \
		exit 1; }

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache
