# Two commands a newcomer needs (README): `make run` and `make test`.
# Everything installs into .venv; torch is pinned (plain `torch` would pull several GB).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.dasp-installed
# Fast DDS: large best-effort images need the LARGE_DATA builtin transports between processes
# (the tests' cross-process checks use it; `make run` sets its own: docs/dds_matching.md).
export FASTDDS_BUILTIN_TRANSPORTS ?= LARGE_DATA

.PHONY: setup run test test-fast demo-model bench clean

$(STAMP): setup.py
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -e ".[all]"
	@touch $(STAMP)

setup: $(STAMP)

## The main job: synthetic night drive bag -> depth node (shipped model) over DDS -> outputs
run: setup
	$(BIN)/python -m dasp_ros.night_drive --out outputs/night_drive

## The test suite (CI runs exactly this via .ci/run)
test: setup
	$(BIN)/python -m pytest -q test

demo-model: setup
	$(BIN)/python scripts/train_demo_model.py

## Backends x precisions side by side (latency, RSS, AbsRel), then the node over DDS per backend;
## reports in docs/bench/ (rerun after retraining the shipped model: it benchmarks that model)
bench: setup
	$(BIN)/dasp bench --size 192x640 --threads 2 --out docs/bench/runtime_cpu
	$(BIN)/python scripts/bench_node.py --out docs/bench/node

clean:
	rm -rf outputs build *.egg-info .pytest_cache
