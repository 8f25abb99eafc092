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

.PHONY: install train test test-all sweep dashboard bench bench-gpu clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c requirements.lock -e '.[dev]'
	touch $@

train: $(STAMP)
	$(PY) src/train.py model=two_st $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" $(ARGS)

test-all: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

sweep: $(STAMP)
	$(PY) src/sweep.py sweep=$(SWEEP) $(ARGS)

dashboard: $(STAMP)
	$(PY) -m stnlab.sweeps.dashboard $(STUDY)

bench: $(STAMP)
	$(PY) src/bench.py $(ARGS)

bench-gpu: $(STAMP)
	$(PY) src/bench.py --device cuda $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
