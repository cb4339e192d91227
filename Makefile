# The two commands of the README: `make demo` and `make test`. Both set up everything a fresh machine
# lacks: the Debian packages (python3-venv, chromium, a C compiler; with apt-get when root and missing), the virtual
# environment in .venv, the Python packages in it, and the simulator's hot modules compiled (sim/native.py).

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
NATIVE := $(VENV)/des-native/stamp

.PHONY: demo test bench calibrate lint install system-deps clean-results

demo: install
	$(VENV)/bin/testbed run scenarios/full-fibre.yaml
	$(VENV)/bin/testbed run scenarios/baseline-2019.yaml
	$(VENV)/bin/testbed compare results/baseline-2019 results/full-fibre
	@echo
	@echo "Open in a browser (works offline): $$(ls -td results/baseline-2019/*/ | head -n 1)report.html"

# The tests that drive real packets in real time (marked `emulation`) run alone, after the rest has run on every
# core (pytest-xdist): nothing else of the suite competes with their links. Both parts run; either failing fails.
test: install
	@status=0; \
	$(PY) -m pytest --benchmark-disable -m "not emulation" -n auto || status=$$?; \
	$(PY) -m pytest --benchmark-disable -m emulation || status=$$?; \
	exit $$status

bench: install
	TESTBED_INTERPRETED=0 $(PY) -m pytest benchmarks --benchmark-only --benchmark-json=benchmarks/results/latest.json

# The calibration suite (root, ~11 minutes of real time): each case on one link in the emulation and the simulator;
# prints the table and writes it into docs/fidelity.md and benchmarks/results/calibration.json (sim/calibrate.py).
calibrate: install
	$(PY) -m sim.calibrate

lint: install
	$(VENV)/bin/ruff check .

install: system-deps $(STAMP) $(NATIVE)

# Debian packages: installed with apt-get only when missing, and only when running as root.
# python3-venv: virtual environments; chromium: PNG figures (kaleido) and the report's browser test;
# gcc and Python's headers (python3-dev): the compiled simulator;
# the emulation: mininet (mnexec), iperf3, irtt, iptables, ping, ethtool.
EMU_DEBS := mininet iperf3 irtt iptables iputils-ping ethtool
system-deps:
	@missing=""; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v gcc >/dev/null || missing="$$missing gcc"; \
	$(PYTHON) -c 'import os, sys, sysconfig; sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
	  || missing="$$missing python3-dev"; \
	for deb in $(EMU_DEBS); do \
	  dpkg-query -W -f='$${Status}' $$deb 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$deb"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing (install them as root; PNGs and the browser test need chromium)"; \
	    case "$$missing" in *python3-venv*) exit 1;; esac; fi; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,emu]'
	touch $(STAMP)

# The simulator's hot modules compiled by mypyc (sim/native.py), again whenever a source of sim/des changes; without a
# C compiler the simulator runs interpreted (the same tables, more slowly).
$(NATIVE): $(STAMP) $(wildcard sim/des/*.py) sim/native.py
	@if command -v gcc >/dev/null; then echo "compiling the simulator (mypyc, about a minute)"; $(PY) -m sim.native; \
	else echo "no C compiler (gcc): the simulator runs interpreted"; fi

clean-results:
	find results -mindepth 1 -maxdepth 1 -not -name '.gitkeep' -not -name 'README.md' -exec rm -rf {} +
