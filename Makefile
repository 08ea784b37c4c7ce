# Two entry points, both self-installing and idempotent:
#   make demo   set up, then run the main job end-to-end on the built-in example
#   make test   set up, then run the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch is pinned to the CPU wheel; an unpinned torch pulls a multi-GB CUDA build.
TORCH := torch==2.13.0
STAMP := $(VENV)/.eedge-setup-done
PYTEST_WORKERS ?= 2

.PHONY: setup demo test clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/eedge demo --out demo-out

test: $(STAMP)
	$(PY) -m pytest -n $(PYTEST_WORKERS) -q

clean:
	rm -rf demo-out .pytest_cache build
