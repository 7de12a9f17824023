# jes — developer entry points. Only python3 and make are needed; everything else is installed here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TOOLS  := .tools
STAMP  := $(VENV)/.installed

.PHONY: help install tools test test-browser lint typecheck unit demo demo-regions demo-integration bench bench-quick scan clean

help:
	@echo "make demo   - install and run the embedded hello-world (control plane + jes + local runner)"
	@echo "make demo-integration - an integration (examples/integration) served by jes distributor"
	@echo "make test   - lint (ruff, import-linter layers), type-check (mypy) and run the test suite"
	@echo "make test-browser - the control plane's web page in headless Chromium (needs: apt-get install chromium)"
	@echo "make bench  - benchmarks; prints a table, writes bench/results.json and bench/scale.png (~15 min)"
	@echo "make bench-quick - the benchmarks at small sizes (under 2 minutes; not a measurement)"
	@echo "make scan   - slow scanners: checkov on the rendered chart, pinned image requirements"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

$(TOOLS)/helm3/helm $(TOOLS)/helm4/helm: scripts/get-helm.sh
	sh scripts/get-helm.sh $(TOOLS)

tools: $(TOOLS)/helm3/helm $(TOOLS)/helm4/helm

lint: install
	$(BIN)/ruff check --output-format concise jes fakes tests bench
	$(BIN)/lint-imports --no-cache

typecheck: install
	$(BIN)/mypy

unit: install tools
	JES_HELM3=$(abspath $(TOOLS)/helm3/helm) JES_HELM4=$(abspath $(TOOLS)/helm4/helm) \
	  $(BIN)/pytest -q -p no:cacheprovider -n 2

test: lint typecheck unit

BROWSER_STAMP := $(VENV)/.browser-installed

$(BROWSER_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install -q -e '.[test,browser]'
	touch $(BROWSER_STAMP)

# Debian's chromium (JES_CHROMIUM=/path for another); Playwright's own browser download is not used
test-browser: $(BROWSER_STAMP)
	$(BIN)/pytest -q -p no:cacheprovider tests/browser

demo: install
	$(BIN)/jes demo

demo-regions: install
	$(BIN)/jes demo --regions

demo-integration: install
	$(BIN)/python -m jes.devtools.integration_demo

$(VENV)/.bench-installed: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	touch $(VENV)/.bench-installed

bench: install $(VENV)/.bench-installed
	$(BIN)/python -m bench --readme README.md

bench-quick: install $(VENV)/.bench-installed
	$(BIN)/python -m bench --quick

scan: install tools
	sh scripts/scan.sh

clean:
	rm -rf $(VENV) $(TOOLS) .mypy_cache .ruff_cache .pytest_cache
