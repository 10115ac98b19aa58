#!/usr/bin/env bash
# GPU smoke check: the real service with a gpt-oss profile, on a GPU host. Its output is the
# report of a first GPU run: paste all of it (or at least the REPORT lines) into the issue.
#
#   bench/gpu_smoke.sh [PROFILE] [MODEL_DIR]        # defaults: gpu-20b, the profile's llm.model
#   e.g. bench/gpu_smoke.sh gpu-120b /models/gpt-oss-120b
#
# Needs: the GPU environment (scripts/setup-gpu.sh, then . .venv-gpu/bin/activate; or run it
# in the GPU image), the weights in MODEL_DIR, and a free port (PORT, default 8011).
#
# 1. the host and the environment: GPU, driver and its CUDA version, the driver check,
#    glibc, Python, and the versions of vLLM, torch (its CUDA, the device and its memory),
#    flashinfer, triton, harmony, transformers; `pip check`;
# 2. `rag-serve --check` for the profile: refuses before loading when it cannot fit;
# 3. ingests examples/kb into a temporary store, starts the service, waits for /readyz, and
#    prints vLLM's start-up lines (attention backend, weights, KV cache size and the maximum
#    concurrency it measured, CUDA graphs) next to what --check estimated;
# 4. bench/gpu_smoke_client.py: a conversation (follow-ups reuse the prefix), one question
#    per reasoning effort, /metrics (harmony faults survived), one question of ~120K prompt
#    tokens twice (the second from the prefix cache), then 32 concurrent short questions;
# 5. vLLM's periodic engine stats (KV cache usage, prefix-cache hit rate), warnings and
#    errors from the service log, and every figure as REPORT key=value lines.
#
# README, "GPU hosts", says where and with what result it has run (nowhere yet on a GPU).
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

echo "== host"
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader 2>&1 \
  || echo "nvidia-smi failed: no NVIDIA driver?"
nvidia-smi 2>/dev/null | grep -o "CUDA Version: [0-9.]*" | head -1 || true
"$PY" -m rag.deploy.cuda_driver || true
echo "glibc $(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}'), $("$PY" --version 2>&1), $(uname -r)"

echo "== environment"
"$PY" - <<'PYEOF' || true
import importlib.metadata as md
for name in ("vllm", "torch", "flashinfer-python", "triton", "oss-harmony", "transformers",
             "nvidia-cuda-runtime", "nvidia-nccl-cu13", "xgrammar"):
    try:
        print(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name} (not installed)")
import torch
print(f"torch.version.cuda {torch.version.cuda}, cuda available {torch.cuda.is_available()}")
for i in range(torch.cuda.device_count()):
    free, total = torch.cuda.mem_get_info(i)
    print(f"cuda:{i} {torch.cuda.get_device_name(i)} capability "
          f"{torch.cuda.get_device_capability(i)} memory {total / 2**30:.2f} GiB "
          f"({free / 2**30:.2f} free): llm.gpu_memory_gib should be {total / 2**30:.1f}")
PYEOF
"$PY" -m pip check 2>&1 | tail -5 || true

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
  if curl -sS "http://127.0.0.1:$PORT/readyz" 2>/dev/null | grep -q '"status":"failed"'; then
    echo "the engine failed to start:"; curl -sS "http://127.0.0.1:$PORT/readyz"; echo
    grep -E "ERROR|Error" "$WORK/service.log" | tail -n 20 | cut -c1-300
    exit 1
  fi
  if [ $(( $(date +%s) - t0 )) -gt "$READY_TIMEOUT" ]; then
    echo "not ready after $READY_TIMEOUT s:"; tail -n 40 "$WORK/service.log"; exit 1
  fi
  sleep 5
done
ready_s=$(( $(date +%s) - t0 ))
echo "ready after $ready_s s"
echo "== vLLM start-up (from the service log)"
grep -E "attention backend|Using .*backend|Loading weights took|Model loading took|KV cache size|Maximum concurrency|hybrid|Graph capturing finished|init engine|torch.compile takes|non-default args" \
  "$WORK/service.log" | sed -e 's/^/  /' | cut -c1-240 || true

echo "== questions"
status=0
"$PY" bench/gpu_smoke_client.py --url "http://127.0.0.1:$PORT" --log "$WORK/service.log" \
  --prompt-tokens "${PROMPT_TOKENS:-120000}" --concurrency "${CONCURRENCY:-32}" || status=$?

echo "== vLLM engine stats (last lines) and problems in the service log"
grep -E "Avg prompt throughput|KV cache usage|Prefix cache hit rate" "$WORK/service.log" \
  | tail -n 5 | sed -e 's/^/  /' | cut -c1-240 || true
echo "  warnings: $(grep -c -E "WARNING" "$WORK/service.log" || true), errors: $(grep -c -E "ERROR|Traceback" "$WORK/service.log" || true)"
grep -E "ERROR|Traceback|HarmonyError|out of memory" "$WORK/service.log" | head -n 20 | sed -e 's/^/  /' | cut -c1-240 || true
echo "REPORT profile=$PROFILE"
echo "REPORT ready_s=$ready_s"
grep -oE "KV cache size: [0-9,]+ tokens" "$WORK/service.log" | head -1 | sed -e 's/KV cache size: /REPORT vllm_kv_cache_tokens=/; s/ tokens//; s/,//g' || true
exit "$status"
