# Two commands on a fresh machine: `make train` and `make test`.
# Both create .venv and install the pinned dependencies on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stnlab-installed
# Real-data runs read the GTSRB archives from a mirror; the shared folder
# beside the checkout serves as one when it exists.
GTSRB_MIRROR ?= $(firstword $(wildcard ../shared/gtsrb))
export GTSRB_MIRROR
ARGS ?=
SWEEP ?= smoke
STUDY ?=

.PHONY: install train lint test test-e2e test-all sweep sync dashboard bench bench-gpu wheels clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c requirements.lock -e '.[dev]'
	touch $@

# The root config's model is two_st (the Moodstocks network); ARGS="experiment=compact seed=1" is the CPU recipe.
train: $(STAMP)
	$(PY) src/train.py $(ARGS)

# ruff's lint and format check ([tool.ruff] in pyproject.toml); `ruff format src tests` fixes the format.
lint: $(STAMP)
	$(PY) -m ruff check src tests
	$(PY) -m ruff format --check src tests

# The fast suite (a few minutes); test-e2e the whole runs (trainings, sweeps, apps in a subprocess), which CI
# (.ci/run) runs after it; test-all adds the slow ones. pytest-xdist runs them on one process a core
# (TEST_WORKERS=0: in this process, e.g. for pdb); each worker keeps to one torch thread (tests/conftest.py).
TEST_WORKERS ?= auto
PYTEST := $(PY) -m pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS))

test: lint
	$(PYTEST) -m "not slow and not e2e" $(ARGS)

test-e2e: $(STAMP)
	$(PYTEST) -m "e2e and not slow" $(ARGS)

test-all: $(STAMP)
	$(PYTEST) $(ARGS)

sweep: $(STAMP)
	$(PY) src/sweep.py sweep=$(SWEEP) $(ARGS)

# Upload every finished offline W&B run (training, multirun, trials, eval, robustness, reports);
# ARGS="dry_run=true" lists them first.
sync: $(STAMP)
	$(PY) src/sync.py $(ARGS)

dashboard: $(STAMP)
	$(PY) src/dashboard.py $(if $(STUDY),study=$(STUDY)) $(ARGS)

bench: $(STAMP)
	$(PY) src/bench.py $(ARGS)

# On a GPU machine as it comes (torch, lightning, torchmetrics, PyYAML; no venv, no network, no hydra-core):
# `make wheels` beforehand, on a machine with network, puts Hydra's wheels into .whl/, which travels with the
# checkout; they are installed into $(SITE) when hydra is missing, and src/ goes on PYTHONPATH (nothing is
# installed). Then every preset at 48 px and whole GTSRB-sized epochs of two_st at 48 px, eager and
# torch.compile'd (3-4 minutes on an H100; the report is rewritten after each row). More: ARGS="'image_size=[48,32]'",
# ARGS="'models=[]' 'epoch_variants=[base,host_data,nchw,fp32,progress_bar]'" (one switch off per run).
SITE ?= /tmp/stnlab-site
bench-gpu:
	$(PYTHON) -c "import hydra" 2>/dev/null || $(PYTHON) -m pip install -q --no-index --no-deps --no-compile \
		--no-cache-dir --upgrade --target $(SITE) .whl/*.whl
	PYTHONPATH=$(SITE):src $(PYTHON) src/bench.py device=cuda 'image_size=[48]' epoch=true \
		'epoch_variants=[base,compile,compile_cudagraphs]' $(ARGS)

# Hydra's wheels (hydra-core, omegaconf, antlr4-python3-runtime, PyYAML at requirements.lock's versions) for
# Python 3.12 on x86-64 Linux, into .whl/ (ignored by git). antlr4-python3-runtime 4.9.3 has no wheel on PyPI:
# pip builds its pure-Python one from the source archive.
WHEELS := $(shell grep -iE '^(hydra-core|omegaconf|PyYAML)==' requirements.lock)
ANTLR := $(shell grep -i '^antlr4-python3-runtime==' requirements.lock)
wheels:
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d .whl $(WHEELS)
	$(PYTHON) -m pip wheel -q --no-deps -w .whl $(ANTLR)

clean:
	rm -rf $(VENV) .pytest_cache
