# The two commands of the README: `make demo` and `make test`. Both do all set-up first.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DO_NOT_TRACK := 1
export VLLM_NO_USAGE_STATS := 1
export ANONYMIZED_TELEMETRY := False

.PHONY: setup browser widget demo test lint lock serve ingest clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(BIN)/rag-ingest add examples/kb
	$(BIN)/rag-serve --host 127.0.0.1 --port 8000

browser:
	@bash scripts/browser.sh

# Rebuild the widget bundle (serving/widget/dist/widget.js, committed) after editing src/.
widget:
	cd serving/widget && npm ci --no-audit --no-fund --ignore-scripts && node build.mjs

test: setup browser
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check rag ingest serving tests scripts
	$(BIN)/ruff format --check rag ingest serving tests scripts
	$(BIN)/mypy

# Freeze .venv into requirements/lock.txt; refuses (writing nothing) when a package came from a
# local wheel, a path or a VCS URL, which no other machine could install.
lock:
	$(BIN)/python scripts/lock.py write

clean:
	rm -rf var/kb var/serve
