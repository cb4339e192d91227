# The two commands of the README: `make demo` and `make test`. Both set up everything a fresh machine
# lacks: the Debian package for virtual environments (when root and missing), the virtual environment
# in .venv, and the Python packages in it.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
APT_PACKAGES := python3-venv

.PHONY: demo test bench lint install system-deps clean-results

demo: install
	$(VENV)/bin/testbed run scenarios/baseline-2019.yaml
	$(VENV)/bin/testbed run scenarios/full-fibre.yaml
	@echo "Results are in results/<scenario>/<timestamp>-des-s<seed>/ (verdicts.csv, records.parquet, meta.json)."

test: install
	$(PY) -m pytest --benchmark-disable

bench: install
	$(PY) -m pytest benchmarks --benchmark-only --benchmark-json=benchmarks/results/latest.json

lint: install
	$(VENV)/bin/ruff check .

install: system-deps $(STAMP)

# Debian packages: installed with apt-get only when missing, and only when running as root.
system-deps:
	@if ! $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); \
	  else echo "Python's venv module is missing: install $(APT_PACKAGES) (as root: apt-get install $(APT_PACKAGES))"; exit 1; fi; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

clean-results:
	find results -mindepth 1 -maxdepth 1 -not -name '.gitkeep' -not -name 'README.md' -exec rm -rf {} +
