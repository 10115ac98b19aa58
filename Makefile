# The two commands of the README: `make demo` and `make test`. Both do all set-up first.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DO_NOT_TRACK := 1
export VLLM_NO_USAGE_STATS := 1
export ANONYMIZED_TELEMETRY := False

.PHONY: setup setup-gpu browser servers widget demo test lint lock gpu-lock gpu-lock-check serve ingest clean

setup:
	@bash scripts/setup.sh

# A GPU host's environment (.venv-gpu): requirements/gpu-lock.txt, vLLM's CUDA build. Never CI.
setup-gpu:
	@bash scripts/setup-gpu.sh

# `make demo PORT=18600 HOST=0.0.0.0`: the demo widget's token follows (origins: [self]).
HOST := 127.0.0.1
PORT := 8000
demo: setup
	$(BIN)/rag-ingest add examples/kb
	$(BIN)/rag-serve --host $(HOST) --port $(PORT)

browser:
	@bash scripts/browser.sh

# PostgreSQL and haproxy for the multi-replica tests (Debian packages; started by the tests only).
servers:
	@bash scripts/servers.sh

# Rebuild the widget bundle (serving/widget/dist/widget.js, committed) after editing src/.
widget:
	cd serving/widget && npm ci --no-audit --no-fund --ignore-scripts && node build.mjs

test: setup browser servers
	$(BIN)/python -m pytest

# The GPU lock check waits on the package index (~50 s on a fresh machine): it runs beside
# ruff and mypy, and its output follows theirs.
lint: setup
	@mkdir -p var/cache; log=var/cache/gpu-lock-check.log; \
	$(BIN)/python scripts/gpu_lock.py check > $$log 2>&1 & gpu=$$!; \
	status=0; \
	for step in "ruff check rag ingest serving tests scripts" \
		"ruff format --check rag ingest serving tests scripts" "mypy"; do \
		echo "$(BIN)/$$step"; $(BIN)/$$step || status=1; \
	done; \
	echo "$(BIN)/python scripts/gpu_lock.py check"; wait $$gpu || status=1; cat $$log; \
	exit $$status

# Resolve requirements/gpu.in for linux x86_64 CPython 3.11 into requirements/gpu-lock.txt
# (pip --dry-run --report: metadata only, nothing installed); gpu-lock-check re-resolves it
# (part of lint; needs the package index, RAG_SKIP_GPU_LOCK_CHECK=1 skips it, saying so).
gpu-lock:
	$(BIN)/python scripts/gpu_lock.py write

gpu-lock-check:
	$(BIN)/python scripts/gpu_lock.py check

# Freeze .venv into requirements/lock.txt; refuses (writing nothing) when a package came from a
# local wheel, a path or a VCS URL, which no other machine could install.
lock:
	$(BIN)/python scripts/lock.py write

clean:
	rm -rf var/kb var/serve
