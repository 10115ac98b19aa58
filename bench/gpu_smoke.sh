#!/usr/bin/env bash
# GPU smoke check: the real service with a gpt-oss profile, on a GPU host.
#
#   bench/gpu_smoke.sh [PROFILE] [MODEL_DIR]        # defaults: gpu-20b, the profile's llm.model
#   e.g. bench/gpu_smoke.sh gpu-120b /models/gpt-oss-120b
#
# Needs: the GPU environment (pip install -e '.[gpu]'), the weights in MODEL_DIR, the offline
# assets (python -m rag.deploy.assets --dir var/assets), and a free port (PORT, default 8011).
#
# 1. `rag-serve --check` for the profile: refuses before loading when it cannot fit;
# 2. ingests examples/kb into a temporary store, starts the service, waits for /readyz;
# 3. one question of ~120K prompt tokens, sent twice (the second reuses the prefix cache),
#    then 32 concurrent short questions;
# 4. prints time to first token, tokens/s and prefix-cache hits (the service's per-request
#    engine log lines, plus what the client saw).
#
# It has not run on the project's CI machine (no GPU); README, "GPU hosts", says where and
# with what result it has run.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=${1:-gpu-20b}
MODEL=${2:-}
PORT=${PORT:-8011}
PY=${PYTHON:-python}
READY_TIMEOUT=${READY_TIMEOUT:-1800}
WORK=$(mktemp -d)

export RAG_PROFILE="$PROFILE"
export RAG_PATHS__DATA_DIR="$WORK" RAG_STORE__PATH="$WORK/kb/chroma"
export RAG_SERVER__MAX_QUESTION_CHARS=2000000   # the long question is ~0.5 MB of text
[ -n "$MODEL" ] && export RAG_LLM__MODEL="$MODEL"

PID=""
cleanup() {
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

echo "== profile check"
"$PY" -m serving.cli --check ${GPU_MEMORY_GIB:+--gpu-memory-gib "$GPU_MEMORY_GIB"}

echo "== ingest examples/kb into $WORK"
"$PY" -m ingest.cli add examples/kb >/dev/null

echo "== start the service (log: $WORK/service.log)"
"$PY" -m serving.cli --host 127.0.0.1 --port "$PORT" >"$WORK/service.log" 2>&1 &
PID=$!
t0=$(date +%s)
until curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; do
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "the service exited while loading:"; tail -n 40 "$WORK/service.log"; exit 1
  fi
  if [ $(( $(date +%s) - t0 )) -gt "$READY_TIMEOUT" ]; then
    echo "not ready after $READY_TIMEOUT s:"; tail -n 40 "$WORK/service.log"; exit 1
  fi
  sleep 5
done
echo "ready after $(( $(date +%s) - t0 )) s"

echo "== questions"
"$PY" bench/gpu_smoke_client.py --url "http://127.0.0.1:$PORT" --log "$WORK/service.log" \
  --prompt-tokens "${PROMPT_TOKENS:-120000}" --concurrency "${CONCURRENCY:-32}"
