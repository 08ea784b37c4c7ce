# Two entry points, both self-installing and idempotent:
#   make demo   set up, then run the main job end-to-end on the built-in example
#   make test   set up, then run the whole test suite
#   make fuzz   the hostile-input suite at full size (EEDGE_FUZZ_CASES, default 5000)
#   make bench  speed and memory figures (bench/results.json)
SHELL := /bin/bash
PYTHON ?= python3
# PYTHON may name a pyenv version that is not selected (python3.13): resolve it to an
# interpreter, and give every Python other than the default its own venv so that
# switching PYTHON never reuses another version's packages.
PYTHON_FOUND := $(shell scripts/find_python.sh '$(PYTHON)')
PYTHON_EXE := $(firstword $(PYTHON_FOUND))
PYTHON_VERSION := $(lastword $(PYTHON_FOUND))
VENV := $(if $(filter file,$(origin PYTHON)),.venv,.venv-py$(PYTHON_VERSION))
PY := $(VENV)/bin/python
# torch is pinned: pip's find-links hold the CPU wheel (here for Python 3.11 only); for
# other Pythons pip finds PyPI's CUDA build (several GB), as an unpinned torch would.
TORCH := torch==2.13.0
# named after the Python: a venv left from another version is never taken as set up
STAMP := $(VENV)/.eedge-setup-done-py$(PYTHON_VERSION)
PYTEST_WORKERS ?= 2
# The Arm toolchain and QEMU build and run the generated C runtime; sshd stands in for a
# Raspberry Pi in the profiler's tests; the aarch64 cross gcc links TVM libraries for the
# Pi (Debian packages).
SYSTEM_PACKAGES := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm openssh-server \
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system demo test fuzz bench clean

setup: $(STAMP)

system:
	@if ! scripts/check_system.sh; then \
	  echo "installing $(SYSTEM_PACKAGES)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install \
	    -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; \
	  scripts/check_system.sh; \
	fi

$(STAMP): pyproject.toml setup.py eedge/runtime/_rowdecide.c Makefile | system
	@if [ -z "$(PYTHON_EXE)" ]; then \
	  echo "no Python interpreter for PYTHON=$(PYTHON): give a name on PATH, a path, or an" \
	    "installed pyenv version's name (pyenv install 3.13)"; exit 1; fi
	@if [ -x $(PY) ] && [ "$$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
	    != "$(PYTHON_VERSION)" ]; then \
	  echo "$(VENV) is not Python $(PYTHON_VERSION): recreating it"; rm -rf $(VENV); fi
	@test -x $(PY) || $(PYTHON_EXE) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(TORCH)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP) system
	$(VENV)/bin/eedge demo --out demo-out

test: $(STAMP) system
	$(PY) -m pytest -n $(PYTEST_WORKERS) -q --durations=25

# The hostile-input suite at full size (make test runs a bounded, seeded subset of it).
fuzz: $(STAMP) system
	EEDGE_FUZZ_CASES=$${EEDGE_FUZZ_CASES:-5000} $(PY) -m pytest -n $(PYTEST_WORKERS) -q -s \
	  -m fuzz tests/fuzz

bench: $(STAMP) system
	$(PY) bench/run_bench.py

clean:
	rm -rf demo-out .pytest_cache build
