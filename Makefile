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

.PHONY: install train test test-all sweep sync dashboard bench bench-gpu clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c requirements.lock -e '.[dev]'
	touch $@

# The root config's model is two_st (the Moodstocks network); ARGS="experiment=compact seed=1" is the CPU recipe.
train: $(STAMP)
	$(PY) src/train.py $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" $(ARGS)

test-all: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

sweep: $(STAMP)
	$(PY) src/sweep.py sweep=$(SWEEP) $(ARGS)

# Upload every finished offline W&B run (training, multirun, trials, eval, robustness, reports);
# ARGS="dry_run=true" lists them first.
sync: $(STAMP)
	$(PY) src/sync.py $(ARGS)

dashboard: $(STAMP)
	$(PY) -m stnlab.sweeps.dashboard $(STUDY)

bench: $(STAMP)
	$(PY) src/bench.py $(ARGS)

# On a GPU machine as it comes (torch, lightning, torchmetrics, PyYAML; no venv, nothing installed):
# every preset at 48 px, then whole GTSRB-sized epochs of two_st at 48 px, eager and torch.compile'd
# (3-4 minutes on an H100; the report is rewritten after each row). More: ARGS="--image-size 48 32",
# ARGS="--models --epoch-variants base host_data nchw fp32 progress_bar" (one switch off per run).
bench-gpu:
	$(PYTHON) src/bench.py --device cuda --image-size 48 --epoch --epoch-variants base compile compile_cudagraphs $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
