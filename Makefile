# Task runner: one name for each check, called alike by .ci/run and
# .github/workflows/ci.yml. Recipes only call commands and scripts/; the logic
# stays there. Run it with the virtual environment to test active, or say
# which interpreter: make test PYTHON=/path/to/venv/bin/python.
# `make help` lists the targets.

PYTHON ?= python
PIP := $(PYTHON) -m pip
CYTHON_LINT ?= cython-lint
# Extra pytest arguments, e.g. make test PYTEST_ARGS='-m "not stress"'.
PYTEST_ARGS ?=
SOAK_SECONDS ?= 30
# test-pure's own environment, so the pure-Python install never replaces the
# compiled one of $(PYTHON).
PURE_VENV ?= $(CURDIR)/.venv-pure
ifeq ($(OS),Windows_NT)
PURE_PYTHON := $(PURE_VENV)/Scripts/python
else
PURE_PYTHON := $(PURE_VENV)/bin/python
endif

# The heavy legs each use every core: one at a time, in the order given.
.NOTPARALLEL:
.DEFAULT_GOAL := help

.PHONY: help install demo test-deps test test-pure check-core ci-deps integrations-deps lint \
	lint-ruff lint-mypy lint-format lint-cython redis soak tsan freethreaded \
	other-pythons bench ci ci-before-suite ci-after-suite wheels test-wheels \
	lint-workflows

help: ## list the targets
	@awk 'BEGIN { FS = ":.*## " } /^[a-z0-9-]+:.*## / { printf "  %-16s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

install: ## pip install . (README command 1, first half): compiles the core
	$(PIP) install .

demo: ## python -m qbreaker demo: the side-by-side outage demo, about 30 s
	$(PYTHON) -m qbreaker demo

test-deps: ## pip install ".[test,integrations]" (README command 2, first half)
	$(PIP) install ".[test,integrations]"

test: ## python -m pytest: the whole suite on both cores (PYTEST_ARGS adds arguments)
	$(PYTHON) -m pytest $(PYTEST_ARGS)

# A pure install has no compiled core to require: the flag, which CI sets for
# everything else, is emptied (empty means unset) for its tests.
test-pure: ## the suite on a QBREAKER_NO_EXTENSIONS=1 install, in its own venv (.venv-pure)
	$(PYTHON) -m venv "$(PURE_VENV)"
	QBREAKER_NO_EXTENSIONS=1 "$(PURE_PYTHON)" -m pip install -q ".[test,integrations]"
	PYTHON="$(PURE_PYTHON)" bash scripts/check_core.sh --pure
	QBREAKER_REQUIRE_EXTENSIONS= QBREAKER_NO_EXTENSIONS=1 "$(PURE_PYTHON)" -m pytest --no-c-extensions $(PYTEST_ARGS)

check-core: ## the compiled core is the one installed and the one the tests import
	PYTHON="$(PYTHON)" bash scripts/check_core.sh

ci-deps: ## pip install ".[lint,compat]": the linters, and Tornado for a compat test
	$(PIP) install -q ".[lint,compat]"

integrations-deps: ## pip install ".[integrations]": the client libraries qbreaker.integrations wraps (mypy checks against them; their tests skip without them)
	$(PIP) install -q ".[integrations]"

# Each check its own target, so make -k lint reports every failing one.
# lint-format and lint-cython join lint once the tree passes them.
lint: lint-ruff lint-mypy ## ruff check and mypy --strict (needs the [lint] extra)

lint-ruff: ## ruff check src tests benchmarks
	$(PYTHON) -m ruff check src tests benchmarks

lint-mypy: ## mypy, strict as configured in pyproject.toml
	$(PYTHON) -m mypy

lint-format: ## ruff format --check (not in lint: the tree is not formatted yet)
	$(PYTHON) -m ruff format --check --diff src tests benchmarks

lint-cython: ## cython-lint on the .pyx/.pxd/.pxi files (not in lint: the tree fails it yet)
	$(CYTHON_LINT) src/qbreaker/*.pyx src/qbreaker/*.pxd src/qbreaker/_native/*.pxi src/qbreaker/_cli/bench/*.pyx

redis: ## install redis-server for the compat Redis storage tests
	bash scripts/ci_redis.sh

soak: ## the 30 s soak slice (SOAK_SECONDS to change it)
	QBREAKER_SOAK_SECONDS=$(SOAK_SECONDS) $(PYTHON) -m pytest -m soak -q -p no:cacheprovider tests/concurrency/test_soak.py

tsan: ## ThreadSanitizer on the nogil stress harness (scripts/tsan.sh)
	bash scripts/tsan.sh

freethreaded: ## the suite on CPython 3.13t with the GIL off (builds and caches 3.13t)
	bash scripts/ci_freethreaded.sh

other-pythons: ## the suite on the machine's other CPythons (3.9, 3.12, 3.13)
	bash scripts/ci_other_pythons.sh

WHEEL_PYTHONS ?= 3.9 3.10 3.11 3.12 3.13 3.13t
wheels: ## dist/: the sdist, the pure wheel, a manylinux wheel for each CPython (WHEEL_PYTHONS)
	QBREAKER_WHEEL_PYTHONS="$(WHEEL_PYTHONS)" PYTHON="$(PYTHON)" bash scripts/build_wheels.sh

test-wheels: ## each wheel of dist/ installed in a fresh venv, no compiler; the suite on it
	PYTHON="$(PYTHON)" bash scripts/test_wheels.sh

lint-workflows: ## .github/ against its schemas, zizmor --offline; cibuildwheel vs the README
	PYTHON="$(PYTHON)" bash scripts/lint_workflows.sh

bench: ## python -m qbreaker bench: the quick benchmark
	$(PYTHON) -m qbreaker bench

# What .ci/run runs, in its order; .ci/run writes the README's two commands
# (install + demo, test-deps + test) out itself and calls the two halves.
# With the compiled core required, the demo already fails if it was not built.
ci: ## everything .ci/run runs, in order, in the current venv
	QBREAKER_REQUIRE_EXTENSIONS=1 $(MAKE) install demo ci-before-suite test-deps test ci-after-suite

ci-before-suite: ci-deps integrations-deps lint redis ## ci's steps before the suite: linters, the client libraries, redis-server

# test-wheels runs the suite on every CPython the machine has (3.9 to 3.13
# and 3.13t, GIL off, with the same GIL checks), from installed wheels, and on
# the pure wheel's twin (what PyPy and platforms without a compiled wheel
# get), each without the stress, fleet_heavy (Redis Sentinel and Cluster)
# and fleet_matrix tests (simulated hosts of worker processes): nothing in
# them depends on the interpreter beyond what the other fleet tests cover;
# the suite above runs them once. So it replaces three legs that ran the same suites from source:
# other-pythons (3.9, 3.12, 3.13), freethreaded (3.13t) and test-pure. Those
# targets stay for local use.
ci-after-suite: check-core soak tsan lint-workflows wheels test-wheels ## ci's steps after the suite

.PHONY: fleet-e2e
fleet-e2e: ## the fleet end to end (real redis-server, 5 hosts x 2 workers), with its figures
	$(PYTHON) -m pytest -m fleet -s -q -p no:cacheprovider tests/fleet/test_e2e.py

.PHONY: fleet-redis-faults
fleet-redis-faults: ## the fleet's Redis faults (6 hosts x 3 workers; QBREAKER_MATRIX_HOSTS/_WORKERS), with their figures
	$(PYTHON) -m pytest -m fleet -s -q -p no:cacheprovider tests/fleet/test_fault_matrix_redis.py

.PHONY: fleet-pair
fleet-pair: ## a shared breaker's allow()+record_success() with and without fleet=True: callgrind instructions, timing ratio
	$(PYTHON) benchmarks/fleet_pair.py

.PHONY: fleet-heavy
fleet-heavy: ## the fleet on Redis Sentinel and Cluster (several redis-server processes)
	$(PYTHON) -m pytest -m fleet_heavy -q -p no:cacheprovider tests/fleet/test_topologies.py
