# Two commands do all the set-up: `make demo` and `make test` (see README.md).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   := data/demo
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) -m data_pipeline synth --out $(DEMO)/rxrx1 --classes 10 --experiments 2 --test-experiments 1 --wells 60
	$(PY) -m data_pipeline build --root $(DEMO)/rxrx1 --out $(DEMO)/shards --val-experiments U2OS-02 --include-test --shard-size 64
	$(PY) -m data_pipeline inspect $(DEMO)/shards/manifest.json
	$(PY) -m data_pipeline show --root $(DEMO)/rxrx1 --id-code U2OS-01_1_B02 --out $(DEMO)/site_U2OS-01_1_B02.png
	$(PY) -m benchmarks.pipeline --work-dir $(DEMO)/pipeline-bench --json $(DEMO)/pipeline.json

clean:
	rm -rf data reports
