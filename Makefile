# The interface to the project: CI calls the same targets a person does.
#   make run    install what running needs, then run the embedded platform (NATS, Redis,
#               four services); the development tools are left out
#   make test   install everything, lint, then run every test against real servers except
#               the long suites (marker `long`)
#   make test-long  the long suites: the projects on container targets (CI runs it too)
#   make lint   ruff, mypy --strict, import-linter contracts
#   make bench  the benchmarks (bench/) against their peers, written to docs/benchmarks.md
#   make reliability  the fault suite's figures as docs/reliability.md

SHELL := /bin/bash
PYTHON ?= python3
# uv from PATH, else the one pip installed as a module, else the one `make uv` puts in
# .tools/ with `pip install --target`: that needs no root, and it is allowed where PEP 668
# forbids pip to install into the system Python (Debian 12, Ubuntu 24.04).
UV := $(shell command -v uv 2>/dev/null \
	|| { $(PYTHON) -m uv --version >/dev/null 2>&1 && echo "$(PYTHON) -m uv"; } \
	|| echo "$(CURDIR)/.tools/bin/uv")
RUN := $(UV) run --frozen --all-packages
PYTEST_ARGS ?=

.PHONY: install install-run run test test-long lint format pytest uv bench system-deps reliability

uv:
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 \
		|| test -x .tools/bin/uv \
		|| $(PYTHON) -m pip install --quiet --disable-pip-version-check --target .tools uv \
		|| { echo "make: cannot install uv with $(PYTHON) -m pip; install pip" \
			"(apt-get install python3-pip) or uv (https://docs.astral.sh/uv/)" >&2; exit 1; }

# Everything: the platform and the development tools (the dependency group `dev`).
install: uv
	$(UV) sync --frozen --all-packages --quiet

# What running needs: the workspace's packages, and scikit-learn for the examples' training
# (the README's walk-through). --inexact keeps the development tools of an earlier
# `make install`, so that switching between `make run` and `make test` removes nothing.
install-run: uv
	$(UV) sync --frozen --all-packages --no-dev --group examples --inexact --quiet

# --no-sync: `uv run` would otherwise install the default group (the development tools).
run: install-run
	$(UV) run --frozen --no-sync dockyard up

lint: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy libs/common/src libs/cli/src libs/platform/src services/api/src \
		services/builder/src services/scheduler/src services/router/src
	$(RUN) lint-imports

# Debian packages the tests use (registry, skopeo, redis, busybox), installed when missing.
system-deps:
	bash .ci/system-deps.sh

pytest: install system-deps
	$(RUN) pytest -m "not long" $(PYTEST_ARGS)

test: lint pytest

# Minutes each: the real projects' forms on container targets (podman, a Python base image
# made with mmdebstrap and cached under ~/.cache/dockyard-tests). Without an engine they skip.
test-long: install system-deps
	$(RUN) pytest -m long $(PYTEST_ARGS)

format: install
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

# The benchmarks of bench/README.md's table, then docs/benchmarks.md and .json from their
# results; wrk (the load generator), nginx and HAProxy (the peers) installed when missing.
bench: install
	@for tool in wrk nginx haproxy; do command -v $$tool >/dev/null 2>&1 \
		|| PATH="$$PATH:/usr/sbin" command -v $$tool >/dev/null 2>&1 \
		|| { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
			&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light haproxy \
			>/dev/null; } \
		|| { echo "make bench: needs $$tool (apt-get install wrk nginx-light haproxy)" >&2; \
			exit 1; }; done
	set -o pipefail; logs=$$(mktemp -d) && trap 'rm -rf "$$logs"' EXIT \
		&& for script in proxies switching projects namespace_hop build api scheduler autoscale cli_startup; do \
			echo "== bench/$$script.py" && $(RUN) python bench/$$script.py \
			| tee "$$logs/$$script.log" || exit 1; done \
		&& $(RUN) python bench/report.py "$$logs"

# kill -9 of each platform process under load (tests/faults), rendered as docs/reliability.md
# with the hostile inputs tests/test_hostile_inputs.py sends.
reliability: install
	results=$$(mktemp) && trap 'rm -f "$$results"' EXIT \
		&& DOCKYARD_FAULTS_RESULTS=$$results $(RUN) pytest tests/faults/test_faults.py -q \
		&& $(RUN) python -m tests.faults.report --results "$$results" --output docs/reliability.md
