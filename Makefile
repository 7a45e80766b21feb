# plakar-azblob. The default target builds the plugin's files, exactly those
# manifest.yaml names: what `plakar pkg build` runs in its clone (needs only
# Python >= 3.10 with pip and access to PyPI). Development tasks below.
# Everything installs into ignored folders of the project (build/venv, .venv,
# .tools); nothing global is touched.

# The Python to build with: $(PYTHON) if set, else the first of python3,
# python3.13, python3.12, python3.11, python3.10 that is at least 3.10 (the
# project's requires-python).
ifndef PYTHON
PYTHON := $(or $(shell for p in python3 python3.13 python3.12 python3.11 python3.10; do \
    "$$p" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null \
    && { echo "$$p"; break; }; done),python3)
endif
VENV          := .venv
PY            := $(VENV)/bin/python
TOOLS         := .tools
# The plakar the tests run: the one place its version is pinned.
PLAKAR_VERSION := v1.1.4
PLAKAR        := $(TOOLS)/plakar-$(PLAKAR_VERSION)/bin/plakar
AZURITE_VERSION := 3.37.0
AZURITE       := $(TOOLS)/azurite/node_modules/.bin/azurite-blob

# h2spec, the HTTP/2 conformance suite the tests run against the connectors:
# its version and its dependencies' are pinned by tools/h2spec/go.mod (this
# release predates Go modules: `go install .../cmd/h2spec@v2.2.1+incompatible`
# would build it with whatever versions of its dependencies are latest).
H2SPEC_VERSION := $(shell sed -n 's|.*github.com/summerwind/h2spec \(v[0-9.]*\).*|\1|p' tools/h2spec/go.mod)
H2SPEC        := $(TOOLS)/h2spec-$(H2SPEC_VERSION)/h2spec

# rclone, which the tests run as users do to fill containers and to check
# restores (tests/rclone_tool.py): built from the Go module proxy at this
# version, its dependencies pinned by its own go.mod.
RCLONE_VERSION := v1.76.0
RCLONE        := $(TOOLS)/rclone-$(RCLONE_VERSION)/rclone

export PLAKAR_BIN := $(abspath $(PLAKAR))
export AZURITE_BIN := $(abspath $(AZURITE))
export H2SPEC_BIN := $(abspath $(H2SPEC))
export RCLONE_BIN := $(abspath $(RCLONE))

# The plugin's own build environment: runtime libraries + PyInstaller (the
# `package` extra), not the development set; `make build`/`package` use it too.
BUILD_VENV    := build/venv
BUILD_PY      := $(BUILD_VENV)/bin/python

.PHONY: all venv build-venv plakar azurite go-azblob h2spec rclone tools proto test fuzz lint bench build package demo clean

# Default target (plakar pkg build): dist/plugin/plakar-azblob (launcher) and
# dist/plugin/runtime.tar (the self-contained runtime), then nothing else is
# needed for `plakar pkg create manifest.yaml vX.Y.Z`. EXT (set to .exe by
# plakar on Windows) is not used: the package is for Linux and macOS.
all: build

build-venv: $(BUILD_VENV)/.installed
$(BUILD_VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || \
	    { echo "make: Python >= 3.10 is needed, $(PYTHON) is not (set PYTHON=...)" >&2; \
	      exit 1; }
	rm -rf $(BUILD_VENV)
	$(PYTHON) -m venv $(BUILD_VENV)
	$(BUILD_PY) -m pip install -q -e '.[package]'
	touch $@

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

# The official Go azblob package (tests/go_package.py), the reference of the
# interoperability tests and of make bench: built from
# ../shared/reference/integration-azblob ($$AZBLOB_GO_REFERENCE) into
# .tools/go-azblob-<hash>/ once per machine (Go and the module proxy).
go-azblob: venv plakar
	$(PY) tests/go_package.py

# From the Go module proxy, with the versions tools/h2spec/go.mod pins.
h2spec: $(H2SPEC)
$(H2SPEC): tools/h2spec/go.mod tools/h2spec/go.sum
	mkdir -p $(dir $@)
	cd tools/h2spec && go build -buildvcs=false -o $(abspath $@).tmp$$$$ \
	    github.com/summerwind/h2spec/cmd/h2spec && mv $(abspath $@).tmp$$$$ $(abspath $@)

# Once per machine (minutes the first time, seconds with Go's caches warm): go install
# into a temporary folder beside it, then moved into place, so that a build
# interrupted or run twice at once never leaves a partial binary.
rclone: $(RCLONE)
$(RCLONE):
	mkdir -p $(dir $@)
	tmp=$$(mktemp -d $(abspath $(dir $@)).build-XXXXXX) && \
	    { GOBIN=$$tmp go install github.com/rclone/rclone@$(RCLONE_VERSION) && \
	      mv $$tmp/rclone $(abspath $@); status=$$?; rm -rf $$tmp; exit $$status; }

tools: venv plakar azurite go-azblob h2spec rclone

proto: venv
	$(PY) tools/gen_proto.py

test: tools
	$(PY) -m pytest

# The HTTP/2 frame fuzzer's long run (make test runs a short one): FUZZ_SECONDS
# long, from a random seed (each failure prints the seed that replays it).
FUZZ_SECONDS ?= 600
fuzz: venv
	$(PY) tests/h2fuzz.py --seconds $(FUZZ_SECONDS)

# Benchmarks against a private Azurite (BENCH_SCALE scales the data, default 0.25):
# bench/results/latest.md and latest.json. `build` first: section 9 times the
# packaged connectors' cold start.
bench: tools build
	$(PY) bench/run.py

lint: venv
	$(VENV)/bin/ruff check src tests tools bench examples
	$(VENV)/bin/mypy

# The installable plakar package. `build` (the default target): the files
# manifest.yaml names, in dist/plugin/: runtime.tar (PyInstaller one-folder
# build of the three connectors, as one reproducible archive) and
# plakar-azblob (the launcher that extracts it on first run); rebuilt only
# when its inputs change. `package`: that build, then plakar pkg create
# manifest.yaml vX.Y.Z (X.Y.Z: pyproject.toml's version), the same steps as
# plakar pkg build -> dist/azblob_vX.Y.Z_OS_ARCH.ptar.
build: build-venv
	$(BUILD_PY) tools/plugin_package.py build

# `make package PLAKAR=/path/to/plakar` packages with that plakar, as is.
ifeq ($(origin PLAKAR),command line)
package: build
else
package: build plakar
endif
	$(BUILD_PY) tools/plugin_package.py package --plakar $(PLAKAR)

# Everything end to end on a private Azurite and plakar, then cleans up.
demo: venv plakar azurite package
	$(PY) tools/demo.py

clean:
	rm -rf dist build
