# plakar-azblob — development tasks. Everything installs into ignored folders
# of the project (.venv, .tools); nothing global is touched.

PYTHON        ?= python3
VENV          := .venv
PY            := $(VENV)/bin/python
TOOLS         := .tools
# The plakar the tests run: the one place its version is pinned.
PLAKAR_VERSION := v1.1.4
PLAKAR        := $(TOOLS)/plakar-$(PLAKAR_VERSION)/bin/plakar
AZURITE_VERSION := 3.37.0
AZURITE       := $(TOOLS)/azurite/node_modules/.bin/azurite-blob

export PLAKAR_BIN := $(abspath $(PLAKAR))
export AZURITE_BIN := $(abspath $(AZURITE))

.PHONY: all venv plakar azurite tools proto test lint bench build package demo clean

all: venv

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

plakar: $(PLAKAR)
$(PLAKAR): tools/build-plakar.sh tools/ttlmap/ttlmap.go
	tools/build-plakar.sh $(PLAKAR_VERSION) $(TOOLS)

azurite: $(AZURITE)
$(AZURITE):
	npm install --silent --no-audit --no-fund --prefix $(TOOLS)/azurite azurite@$(AZURITE_VERSION)

tools: venv plakar azurite

proto: venv
	$(PY) tools/gen_proto.py

test: tools
	$(PY) -m pytest

# Benchmarks against a private Azurite (BENCH_SCALE scales the data, default 0.25):
# bench/results/latest.md and latest.json.
bench: tools
	$(PY) bench/run.py

lint: venv
	$(VENV)/bin/ruff check src tests tools
	$(VENV)/bin/mypy

# The installable plakar package. `build`: one self-contained PyInstaller
# folder for the three connectors in dist/plugin/ (executable, runtime,
# validators, generated manifest.yaml); rebuilt only when its inputs change.
# `package`: plakar pkg create dist/plugin/manifest.yaml vX.Y.Z, X.Y.Z being
# pyproject.toml's version -> dist/azblob_vX.Y.Z_OS_ARCH.ptar.
build: venv
	$(PY) tools/plugin_package.py build

package: build plakar
	$(PY) tools/plugin_package.py package --plakar $(PLAKAR)

# Everything end to end on a private Azurite and plakar, then cleans up.
demo: venv plakar azurite package
	$(PY) tools/demo.py

clean:
	rm -rf dist build
