"""Settings: YAML profiles deep-merged, then ``RAG_<SECTION>__<KEY>`` environment overrides.

Resolution order (later wins):

1. ``configs/base.yaml`` (every key, commented), then ``$RAG_CONFIG_DIR/base.yaml`` if any,
2. ``<profile>.yaml`` from ``$RAG_CONFIG_DIR`` (your own profiles: only the keys that differ),
   else from ``configs/``; the profile comes from the argument, else ``RAG_PROFILE``, else
   ``dev``,
3. environment variables ``RAG_<SECTION>__<KEY>=value`` (values parsed as YAML scalars, so
   ``8000``, ``true`` and ``[a, b]`` work),
4. explicit ``overrides`` passed by code (tests).

Relative paths (``paths.*``, ``store.path``, ``store.manifest``, ``retrieval.keyword_dir``)
are relative to one root, not the working directory: ``RAG_HOME`` when set, else the
checkout that holds ``configs/`` (:func:`project_root`). ``rag-ingest`` run from another
folder then uses the same store, state and assets as ``rag-serve``.

Every model forbids unknown keys, so a typo in a YAML file or an environment variable is an
error that names the key, not a silently ignored setting. pydantic-settings' own env source
ignores unknown variables, which is why the merge is done here by hand.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from rag.errors import ConfigError, how_to_run

ENV_PREFIX = "RAG_"
PROFILE_ENV = "RAG_PROFILE"
CONFIG_DIR_ENV = "RAG_CONFIG_DIR"
HOME_ENV = "RAG_HOME"
DEFAULT_PROFILE = "dev"
OLLAMA_DEFAULT_URL = "http://127.0.0.1:11434"
CRASH_ENV = "RAG_TEST_CRASH_AT"  # a test hook of the ingest pipeline, not a setting
DEFAULT_IDENTITY_AUDIENCE = "kb-widget"
_NOT_SETTINGS = {PROFILE_ENV, CONFIG_DIR_ENV, HOME_ENV, CRASH_ENV}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PathsSettings(_Section):
    data_dir: Path = Field(Path("var"), description="Where the service keeps its state.")
    assets_dir: Path = Field(
        Path("var/assets"),
        description="Offline assets: o200k vocabulary, converted local models.",
    )


class StoreSettings(_Section):
    mode: Literal["embedded", "http"] = Field("embedded", description="Chroma mode.")
    path: Path = Field(Path("var/kb/chroma"), description="Embedded Chroma directory.")
    collection: str = Field(
        "knowledge", pattern=r"^[A-Za-z0-9._-]{3,60}$", description="Collection name."
    )
    host: str = Field("127.0.0.1", description="Chroma server host (mode: http).")
    port: int = Field(8001, ge=1, le=65535, description="Chroma server port (mode: http).")
    ssl: bool = Field(False, description="Use HTTPS to reach the Chroma server (mode: http).")
    tenant: str = Field("default_tenant", min_length=1, description="Chroma tenant (mode: http).")
    database: str = Field(
        "default_database", min_length=1, description="Chroma database (mode: http)."
    )
    auth_header: str = Field(
        "Authorization",
        pattern=r"^[A-Za-z0-9-]+$",
        description="Header carrying the token: Authorization (sent as 'Bearer <token>') "
        "or X-Chroma-Token (sent as is).",
    )
    auth_token_env: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Name of the environment variable holding the Chroma token; null: no "
        "auth header. The token itself never goes into YAML.",
    )
    hnsw_ef_construction: int = Field(200, ge=16, description="HNSW build breadth.")
    hnsw_ef_search: int = Field(200, ge=10, description="HNSW search breadth.")
    hnsw_max_neighbors: int = Field(32, ge=4, description="HNSW graph degree.")
    manifest: Path | None = Field(
        None,
        description="SQLite ingest manifest; default: <store.path>-manifest.sqlite beside it.",
    )

    def manifest_path(self) -> Path:
        """Where the ingest manifest (documents, hashes, the active collection) lives."""
        if self.manifest is not None:
            return self.manifest
        return self.path.parent / f"{self.path.name}-manifest.sqlite"


class EmbeddingSettings(_Section):
    model: str = Field(
        "builtin:use-multilingual-v3",
        description="builtin:use-multilingual-v3 (Chinese and English), "
        "builtin:all-minilm-l6-v2 (English), builtin:multilingual-e5-small (one language at a "
        "time: poor across languages), or a local sentence-transformers folder.",
    )
    device: str = Field("cpu", description="torch device for embeddings.")
    batch_size: int = Field(
        16,
        ge=1,
        le=1024,
        description="Chunks per embedding batch (torch; ONNX embeds each text alone).",
    )
    backend: Literal["torch", "onnx"] = Field(
        "onnx", description="onnx (onnxruntime, CPU) or torch (sentence-transformers)."
    )
    onnx_precision: Literal["fp32", "int8"] = Field(
        "int8", description="ONNX weights: int8 (faster) or fp32 (same vectors as torch)."
    )
    onnx_streams: int = Field(
        0,
        ge=0,
        le=64,
        description="ONNX: batches run side by side, one core each (0 = one per CPU core).",
    )
    languages: list[Literal["en", "zh"]] = Field(
        ["en", "zh"],
        min_length=1,
        description="Languages the model's vectors read (all-MiniLM-L6-v2: en only). Hybrid "
        "search gives a question in another language retrieval.unread_dense_weight.",
    )


GroupName = Annotated[str, StringConstraints(pattern=r"^[\w.:@-]{1,64}$")]


class GroupRule(_Section):
    pattern: str = Field(
        description="Glob on the path relative to the folder given to add/sync, or absolute."
    )
    groups: list[GroupName] = Field(min_length=1, description="Access groups of matching files.")


class OcrSettings(_Section):
    enabled: bool = Field(
        True,
        description="Read PDF pages without a text layer, and image files (PNG, JPEG, TIFF, "
        "WebP), with Tesseract (Debian's tesseract-ocr; make setup installs it as root).",
    )
    languages: str = Field(
        "chi_sim+eng",
        pattern=r"^[A-Za-z_]+(\+[A-Za-z_]+)*$",
        description="Tesseract language packs, joined with + (chi_sim+eng reads Chinese and "
        "English; the first listed wins ties: keep chi_sim first or Chinese comes out spaced).",
    )
    dpi: int = Field(300, ge=100, le=600, description="Resolution PDF pages are rendered at.")
    min_confidence: float = Field(
        60.0,
        ge=0,
        le=100,
        description="Pages OCR reads with a lower mean word confidence (0-100) are reported "
        "and not indexed.",
    )
    page_timeout_s: float = Field(
        60.0, gt=0, le=3600, description="Time limit of OCR on one page (reported, not indexed)."
    )


class UrlGroupRule(_Section):
    prefix: str = Field(
        pattern=r"^https?://", description="URL prefix (scheme, host, path) the rule covers."
    )
    groups: list[GroupName] = Field(min_length=1, description="Access groups of those pages.")


class CrawlSettings(_Section):
    rate_per_s: float = Field(
        2.0,
        ge=0,
        description="Requests per second to one site (0: no pause; robots.txt's "
        "Crawl-delay wins when longer).",
    )
    max_pages: int = Field(1000, ge=1, description="Pages and files fetched per site and run.")
    max_page_mb: float = Field(
        20.0, gt=0, description="A page or file larger than this is skipped and reported."
    )
    max_total_mb: float = Field(2000.0, gt=0, description="The run stops after this much.")
    timeout_s: float = Field(30.0, gt=0, description="Time limit of one request.")
    group_rules: list[UrlGroupRule] = Field(
        default_factory=list,
        description="Access groups by URL prefix; all matches add; none: ingest.default_groups.",
    )
    auth_header_env: str = Field(
        "",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$|^$",
        description="Name of an environment variable whose value is sent as the "
        "Authorization header to the crawled site (e.g. 'Bearer ...'); empty: none.",
    )
    user_agent: str = Field(
        "rag-ingest-crawler/1", min_length=1, description="User-Agent, and the robots.txt name."
    )


class IngestSettings(_Section):
    chunk_tokens: int = Field(
        128,
        ge=32,
        le=8192,
        description="Target chunk size in embedding-model tokens (USE: SentencePiece pieces; "
        "chosen with MiniLM, trained on 128-token inputs: SciFact dense nDCG@10 0.691 at 128 "
        "vs 0.671 at 200).",
    )
    chunk_overlap: int = Field(32, ge=0, description="Overlap between split chunks, tokens.")
    max_file_mb: float = Field(50.0, gt=0, description="Files larger than this are refused.")
    pdf_strategy: Literal["text", "fast", "ocr_only"] = Field(
        "text",
        description="PDF parsing: text (the text layer with pypdfium2; pages without one go "
        "through OCR), ocr_only (OCR every page), fast (unstructured, no OCR).",
    )
    ocr: OcrSettings = Field(default_factory=OcrSettings)
    crawl: CrawlSettings = Field(default_factory=CrawlSettings)
    default_groups: list[GroupName] = Field(
        default_factory=lambda: ["everyone"],
        min_length=1,
        description="Groups of documents by default.",
    )
    group_rules: list[GroupRule] = Field(
        default_factory=list,
        description="Path glob -> access groups; every matching rule adds its groups.",
    )
    workers: int = Field(
        0, ge=0, le=64, description="Parsing processes: 0 = one per CPU core, 1 = in-process."
    )
    embed_batch_chunks: int = Field(
        256, ge=1, le=5000, description="Chunks gathered across files per embed+store round."
    )
    max_unzipped_mb: float = Field(
        500.0, gt=0, description="Office files (zip) declaring more uncompressed data are refused."
    )
    max_zip_ratio: float = Field(
        200.0, gt=1, description="Office files whose zip expands more than this are refused."
    )


class LanguageWeights(_Section):
    dense: float = Field(ge=0, description="Fusion weight of dense search.")
    keyword: float = Field(ge=0, description="Fusion weight of BM25 search.")
    cross: float = Field(
        1.0,
        gt=0,
        description="convex fusion: the dense cosine of a chunk in another language than the "
        "question (both read by the embedding model) counts this many times (1 = as it is).",
    )
    translated: float = Field(
        0.0,
        ge=0,
        description="convex fusion: BM25 of the question translated word by word (CC-CEDICT) "
        "scores a chunk in the other language this many times, on the keyword side; 0 = off.",
    )


Language = Literal["en", "zh"]


def _language_weights() -> dict[Language, LanguageWeights]:
    """Chosen on train questions by bench/fusion_language.py (docs/BENCHMARKS.md)."""
    return {
        "en": LanguageWeights(dense=0.45, keyword=0.55, cross=1.1, translated=1.5),
        "zh": LanguageWeights(dense=0.5, keyword=0.5, cross=1.3, translated=1.0),
    }


class RetrievalSettings(_Section):
    top_k: int = Field(9, ge=1, le=200, description="Chunks retrieved per question.")
    min_score: float = Field(
        0.15,
        ge=-1.0,
        le=1.0,
        description="Best cosine similarity below which the service declines to answer.",
    )
    mode: Literal["hybrid", "dense", "keyword"] = Field(
        "hybrid", description="hybrid (dense + BM25 fused), dense or keyword only."
    )
    fusion: Literal["convex", "rrf"] = Field(
        "convex",
        description="How hybrid search fuses the rankers: convex (weighted sum of normalised "
        "scores, see fusion_scale) or rrf (reciprocal rank fusion).",
    )
    fusion_scale: Literal["max", "minmax"] = Field(
        "max",
        description="convex: each ranker's scores divided by its best (max) or mapped "
        "best..worst to 1..0 (minmax).",
    )
    candidates: int = Field(
        50, ge=1, le=1000, description="Candidates each ranker returns before fusion."
    )
    rrf_k: float = Field(60.0, gt=0, description="Reciprocal rank fusion constant k.")
    dense_weight: float = Field(0.65, ge=0, description="Fusion weight of dense search.")
    keyword_weight: float = Field(0.35, ge=0, description="Fusion weight of BM25 search.")
    unread_dense_weight: float = Field(
        0.0,
        ge=0,
        description="Fusion weight of dense search for a question in a language the embedding "
        "model does not read (embedding.languages): its vectors of such text are noise.",
    )
    language_weights: dict[Language, LanguageWeights] = Field(
        default_factory=_language_weights,
        description="Per question language: dense/keyword fusion weights and the "
        "cross-language weight, instead of dense_weight/keyword_weight (and no cross-language "
        "fusion).",
    )
    bm25_k1: float = Field(1.2, gt=0, description="BM25 term-frequency saturation.")
    bm25_b: float = Field(0.75, ge=0, le=1, description="BM25 length normalisation.")
    stemming: bool = Field(True, description="Light English stemming for BM25 terms.")
    keyword_window: int = Field(
        1,
        ge=0,
        le=4,
        description="BM25 reads each chunk (its own text twice) with this many neighbouring "
        "chunks of the same document and access groups each side (what context packing "
        "shows around a hit); 0: the chunk alone.",
    )
    keyword_dir: Path | None = Field(
        None, description="BM25 index folder; default: keyword/<collection> beside the store."
    )
    overfetch_min_share: float = Field(
        0.2,
        ge=0,
        le=1,
        description="When a caller may read at least this share of chunks, dense search "
        "over-fetches unfiltered and drops other groups' chunks (fast); below it, Chroma "
        "filters by group (slower at scale).",
    )
    exact_max_chunks: int = Field(
        20_000,
        ge=0,
        description="A caller below overfetch_min_share who may read at most this many chunks "
        "gets exact in-memory search over their chunks' vectors (2 KB each at 512-d, "
        "kept for a few group sets); above it, Chroma's group filter. 0 turns it off.",
    )
    anonymous_groups: list[str] = Field(
        default_factory=lambda: ["everyone"],
        description="Groups an unauthenticated caller may read.",
    )
    reranker: Literal["none"] = Field("none", description="Optional reranking stage.")


class ContextSettings(_Section):
    max_tokens: int | None = Field(
        None,
        ge=256,
        description="Cap on source tokens in the prompt; null = the model's window minus "
        "the answer (max_tokens) and the rest of the prompt.",
    )
    expand: Literal["none", "neighbours", "section", "document"] = Field(
        "document",
        description="How far to grow around the best hits while the budget allows: "
        "neighbouring chunks, then whole sections, then whole documents.",
    )
    neighbours: int = Field(1, ge=0, le=10, description="Chunks each side of a hit.")
    expand_hits: int = Field(3, ge=0, description="How many of the best hits are expanded.")
    whole_kb: bool = Field(
        True, description="Give the model the whole permitted knowledge base when it fits."
    )
    whole_kb_max_chunks: int = Field(
        5000, ge=0, description="Do not try whole-knowledge-base mode above this many chunks."
    )
    order: Literal["canonical", "score"] = Field(
        "canonical",
        description="Source order: canonical (by document and position: consecutive "
        "questions share prompt prefixes, so vLLM reuses its cache) or score.",
    )
    history_tokens: int = Field(
        1024, ge=0, description="Token budget for earlier turns of a conversation."
    )
    history_turns: int = Field(10, ge=0, description="Most earlier turns kept.")
    min_support: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Grounding: share of a sentence's key terms a source must contain.",
    )
    quote_fallback: bool = Field(
        True,
        description="When no sentence of the model's answer is supported by a source, show "
        "the source passage that best answers the question, quoted and cited, under a "
        "'could not verify' notice (false: decline instead).",
    )


class AnswerSettings(_Section):
    mode: Literal["generative", "extractive", "hybrid"] = Field(
        "generative",
        description="generative: the model writes the answer (streamed once a sentence is "
        "verified); extractive: the source sentences or table rows that answer the question, "
        "quoted and cited, no model call; hybrid: the model writes, and its answer is shown "
        "only when every claim is verified, else the extractive answer.",
    )
    min_score: float = Field(
        0.65,
        ge=0,
        le=1,
        description="Extractive choice: the weighted share of the question's terms a source "
        "unit must hold; below it the service declines (chosen on data, see docs/BENCHMARKS.md).",
    )
    max_quotes: int = Field(
        2, ge=1, le=5, description="Extractive answers quote at most this many units."
    )


class EffortScale(_Section):
    """max_tokens multipliers per gpt-oss reasoning effort."""

    low: float = Field(1.0, ge=1, description="At low effort.")
    medium: float = Field(2.0, ge=1, description="At medium effort.")
    high: float = Field(4.0, ge=1, description="At high effort.")


class LLMSettings(_Section):
    backend: Literal["vllm", "openai", "ollama"] = Field(
        "vllm",
        description="Engine: vllm (in-process), openai (any OpenAI-compatible server) or "
        "ollama (Ollama's native chat API).",
    )
    model: str = Field(
        "builtin:smollm2-135m-instruct",
        description="vllm: a model folder or builtin:<name>. openai/ollama: the name the "
        "server serves the model under, or auto (the first model the server lists).",
    )
    family: Literal["auto", "gpt-oss", "chat"] = Field(
        "auto",
        description="Prompt format: gpt-oss uses harmony, chat uses the model's chat template.",
    )
    tokenizer: str | None = Field(None, description="Tokenizer folder if not the model's.")
    dtype: str = Field("auto", description="Weights dtype: auto, float32, bfloat16, float16.")
    max_model_len: int = Field(8192, ge=256, description="Context window in tokens.")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs per model replica.")
    pipeline_parallel_size: int = Field(
        1, ge=1, description="Pipeline stages (layers split across GPUs or nodes)."
    )
    distributed_executor_backend: Literal["mp", "ray"] | None = Field(
        None, description="vLLM executor for several GPUs: mp (one node) or ray (several)."
    )
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"] = Field(
        "auto",
        description="KV cache dtype: auto (the model's) or fp8 (half the memory; gpt-oss: "
        "Blackwell only, per vLLM's recipe; FlashAttention takes fp8/fp8_e4m3, not fp8_e5m2).",
    )
    kv_cache_dtype_skip_layers: list[str] = Field(
        default_factory=list,
        description="Layers kept in the model's dtype when kv_cache_dtype is fp8: indices or "
        "attention types (sliding_window).",
    )
    max_num_batched_tokens: int | None = Field(
        None, ge=256, description="Tokens per engine step (prefill chunk); null: vLLM's."
    )
    max_num_seqs: int | None = Field(
        None, ge=1, description="Sequences in flight at once; null: vLLM's default."
    )
    gpu_memory_gib: float | None = Field(
        None, gt=0, description="Memory of one GPU in GiB, for `rag-serve --check` only."
    )
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="GPU memory share.")
    enforce_eager: bool = Field(True, description="Disable CUDA graphs (required on CPU).")
    enable_prefix_caching: bool = Field(True, description="Reuse KV blocks across requests.")
    kv_cache_space_gib: float = Field(
        2.0, gt=0, description="CPU KV cache size (VLLM_CPU_KVCACHE_SPACE); CPU only."
    )
    reasoning_effort: Literal["low", "medium", "high"] = Field(
        "low", description="gpt-oss reasoning effort (system message)."
    )
    max_tokens: int = Field(
        512,
        ge=1,
        description="Answer length limit in tokens (gpt-oss: reasoning included, at low "
        "effort; effort_max_tokens_scale multiplies it for medium and high).",
    )
    effort_max_tokens_scale: EffortScale = Field(
        default_factory=lambda: EffortScale(),
        description="gpt-oss: max_tokens times this for each reasoning effort (reasoning and "
        "answer share the budget; more effort, more reasoning).",
    )
    temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature (0: greedy).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling (1: off).")
    seed: int | None = Field(0, description="Sampling seed; null for random.")
    stream_interval: int | None = Field(
        None, ge=1, description="Tokens per streamed engine output; null: vLLM's default (1)."
    )
    log_stats_interval_s: float = Field(
        0.0,
        ge=0,
        description="Log vLLM's engine stats (KV cache usage, prefix-cache hits) every this "
        "many seconds; 0: off.",
    )
    # Remote backends (openai, ollama): where the model server is and how to talk to it.
    base_url: str | None = Field(
        None,
        description="Remote server address: openai e.g. http://host:8000/v1, ollama e.g. "
        "http://host:11434 (its default when unset).",
    )
    api_key_env: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Name of the environment variable holding the server's API key "
        "(openai); the key itself never goes in a config file.",
    )
    connect_timeout_s: float = Field(5.0, gt=0, description="Remote: connect timeout.")
    timeout_s: float = Field(
        120.0, gt=0, description="Remote: longest wait for the next piece of the answer."
    )
    retries: int = Field(
        2, ge=0, le=10, description="Remote: retries on connect errors and 5xx (never 4xx)."
    )
    retry_backoff_s: float = Field(
        0.5, ge=0, description="Remote: first retry delay, doubled on each retry."
    )

    def describe(self) -> str:
        """One line naming the backend, the model and (for remote servers) the address."""
        if self.backend == "vllm":
            return f"backend vllm (in-process), model {self.model}, family {self.family}"
        if self.backend == "ollama":
            url = self.base_url or OLLAMA_DEFAULT_URL
            return (
                f"backend ollama at {url}, model {self.model}, family {self.family}, "
                f"num_ctx {self.max_model_len}"
            )
        key = (
            f"api key from ${self.api_key_env}"
            + ("" if os.environ.get(self.api_key_env) else " (NOT SET)")
            if self.api_key_env
            else "no api key"
        )
        return (
            f"backend openai at {self.base_url or '(llm.base_url not set)'}, "
            f"model {self.model}, family {self.family}, {key}"
        )


class ServerSettings(_Section):
    host: str = Field("127.0.0.1", description="Bind address.")
    port: int = Field(8000, ge=1, le=65535, description="Bind port.")
    max_question_chars: int = Field(4000, ge=1, description="Longest accepted question.")
    max_concurrent_answers: int = Field(
        48, ge=1, description="Answers in flight at once; more get 503 with Retry-After."
    )
    model_name: str = Field(
        "knowledge-base",
        min_length=1,
        description="Model id of the OpenAI-compatible API (GET /v1/models).",
    )
    sse_keepalive_s: float = Field(
        15,
        ge=0,
        description="A streamed answer sends a ': keep-alive' comment after this many silent "
        "seconds, so proxies keep the connection through a long prefill (0: never).",
    )
    upload_wait_s: float = Field(
        120,
        gt=0,
        description="How long an upload waits for the one being indexed before it gets 409.",
    )
    header_timeout_s: float = Field(
        10,
        gt=0,
        le=300,
        description="A connection whose request line and headers are not all in this many "
        "seconds after it opened (or after its previous response) is closed (slow clients).",
    )
    public_docs: bool = Field(
        True,
        description="Serve /docs and /openapi.json without a key; false: not served "
        "at all (404). Open without a key either way: /healthz, /readyz, /v1/models, "
        "/widget.js (and /widget/demo when widget.demo_page is on).",
    )
    forwarded_allow_ips: list[str] = Field(
        default_factory=list,
        description="Addresses of reverse proxies whose X-Forwarded-For/-Proto are trusted "
        "(uvicorn's forwarded_allow_ips). Empty: proxy headers are ignored and a caller is "
        "its TCP peer, so a client cannot pick the address its rate limit is kept under.",
    )
    public_metrics: bool = Field(
        False,
        description="Serve /metrics without a key. false: while auth.required, /metrics needs "
        "a key with the metrics or admin scope (its counts cover every group's documents).",
    )


class OidcSettings(_Section):
    issuer: str | None = Field(
        None,
        description="The OpenID provider's issuer URL (https://sso.example.com/realms/staff); "
        "its /.well-known/openid-configuration and keys are fetched from there. null: off.",
    )
    audience: str | None = Field(
        None,
        description="The aud a token must carry: the client id registered for this service "
        "(required with issuer).",
    )
    groups_claim: str = Field(
        "groups",
        min_length=1,
        description="The claim holding the user's groups; a dotted path for a nested one "
        "(realm_access.roles, resource_access.kb.roles).",
    )
    group_map: dict[str, str] = Field(
        default_factory=dict,
        description='Claim values renamed to access groups ("cn=HR,ou=Groups,dc=corp": hr); '
        "values not listed are used as they are.",
    )
    scope_map: dict[str, list[str]] = Field(
        default_factory=lambda: {"ask": ["*"]},
        description="Which claim values (after group_map) grant each scope: ask, ingest, "
        'admin, metrics. "*": every signed-in user.',
    )
    subject_claim: str = Field(
        "sub", min_length=1, description="The claim naming the user in records (sub, email)."
    )
    algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "ES256", "EdDSA"],
        min_length=1,
        description="Signature algorithms accepted (asymmetric only: never none or HS*).",
    )
    leeway_s: float = Field(60, ge=0, le=600, description="Clock skew allowed on exp and nbf.")
    refresh_min_s: float = Field(
        60,
        ge=0,
        description="A token signed by an unknown key fetches the provider's keys again (key "
        "rotation), at most this often.",
    )

    @model_validator(mode="after")
    def _complete(self) -> OidcSettings:
        if self.issuer and not self.audience:
            raise ValueError("auth.oidc.audience is required with auth.oidc.issuer")
        bad = [a for a in self.algorithms if a not in _OIDC_ALGORITHMS]
        if bad:
            raise ValueError(
                f"auth.oidc.algorithms {bad} are not allowed: use {sorted(_OIDC_ALGORITHMS)}"
            )
        unknown = set(self.scope_map) - {"ask", "ingest", "admin", "metrics"}
        if unknown:
            raise ValueError(f"auth.oidc.scope_map names unknown scopes {sorted(unknown)}")
        return self


_OIDC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class AuthSettings(_Section):
    required: bool = Field(
        True,
        description="Require an API key or a widget token on every knowledge-base route. "
        "false needs allow_keyless: true as well.",
    )
    allow_keyless: bool = Field(
        False,
        description="Allow required: false (anyone who reaches the port asks, anonymously). "
        "Set only in the dev and test profiles; a profile's name grants nothing.",
    )
    rate_per_minute: float = Field(
        30,
        ge=0,
        description="Requests per minute per key, user or anonymous visitor: questions, "
        "/v1/retrieve, document sources and uploads (0: unlimited).",
    )
    burst: int = Field(10, ge=1, description="Requests a caller may make at once.")
    max_body_kb: int = Field(256, ge=1, description="Largest accepted JSON request body.")
    oidc: OidcSettings = Field(
        default_factory=OidcSettings,
        description="Bearer tokens from the company's OpenID provider, beside API keys.",
    )


class FeedbackSettings(_Section):
    store_questions: bool = Field(
        True, description="Keep question text for the helpdesk report (off: only metadata)."
    )
    retention_days: float = Field(
        90, gt=0, description="Answers and feedback older than this are deleted."
    )


class CuratedSettings(_Section):
    enabled: bool = Field(
        True,
        description="Serve curated answers (written by admins: rag-ingest curate, "
        "/v1/curated) to questions that mean the same, before any generated answer; "
        "false: they are kept and managed but not served.",
    )
    threshold: float = Field(
        0.9,
        ge=0,
        le=1,
        description="Least cosine similarity of the caller's question and a curated "
        "question (the same words always match); numbers, negation, language or a rare "
        "word (cache.distinctive_share) that differ never match. The answer cache's rule: "
        "a false match gives a wrong answer.",
    )
    review_days: int = Field(
        180,
        ge=1,
        le=3650,
        description="The review date of a curated answer added without one: this many "
        "days from the day it is added. Past its review date an answer is still served, "
        "marked stale.",
    )
    check_interval_s: float = Field(
        1.0,
        gt=0,
        le=300,
        description="How often each replica checks whether curated answers were added, "
        "edited or retired (through the state database).",
    )


class CacheSettings(_Section):
    enabled: bool = Field(
        True,
        description="Answer a repeated question (or a close paraphrase) from someone with the "
        "same access groups at once from an earlier answer, while every document it cited is "
        "unchanged (rag/answering/cache.py). false: every question is answered afresh.",
    )
    threshold: float = Field(
        0.75,
        ge=0,
        le=1,
        description="Least cosine similarity of two questions' embeddings for one's answer to "
        "serve the other (the same normalized text always matches); chosen on a labelled set "
        "of paraphrases and near misses by bench/answer_cache.py.",
    )
    distinctive_share: float = Field(
        0.05,
        ge=0,
        le=1,
        description="A word in one question only makes two questions different when fewer "
        "than this share of the caller's BM25 passages hold it (a rare word names a thing: "
        "'Madrid', 'engineering'); a word the knowledge base does not know always does.",
    )
    ttl_hours: float = Field(
        168, gt=0, description="A cached answer older than this is not served (and deleted)."
    )
    max_entries_per_scope: int = Field(
        500,
        ge=1,
        description="Cached answers kept per group set (the oldest go first); also how many "
        "a question is compared with.",
    )


class AuditSettings(_Section):
    enabled: bool = Field(
        True,
        description="Record who did what (ask, retrieve, upload, delete, key changes, failed "
        "sign-ins, refusals) in the state database, hash-chained (rag-ingest audit).",
    )
    store_text: bool = Field(
        False, description="Keep the question text in audit records (never the answer)."
    )
    retention_days: float = Field(
        365,
        gt=0,
        description="Audit records older than this are deleted (the chain's anchor "
        "moves to the last one deleted).",
    )


class WebhookSettings(_Section):
    url: str | None = Field(
        None,
        description="Where hand-offs are POSTed as JSON (your ticketing system's inbound "
        "webhook, http or https); null: no webhook.",
    )
    secret_env: str = Field(
        "KB_HANDOFF_WEBHOOK_SECRET",
        description="The environment variable holding the HMAC-SHA256 key that signs each "
        "body (X-Rag-Signature); required when url is set.",
    )
    ticket_field: str = Field(
        "ticket_id",
        description="The field of the receiver's JSON reply that holds its ticket id (shown "
        "to the user); a dotted path such as ticket.id reads a nested field.",
    )
    timeout_s: float = Field(10, gt=0, description="Per-delivery HTTP timeout in seconds.")


class EmailSettings(_Section):
    to: list[str] = Field(
        default_factory=list,
        description="Where hand-offs are e-mailed (the helpdesk's address); empty: no e-mail.",
    )
    sender: str = Field("helpdesk-assistant@localhost", description="The From address.")
    host: str = Field("localhost", description="The SMTP server.")
    port: int = Field(587, ge=1, le=65535, description="Its port (587: submission).")
    starttls: bool = Field(
        True,
        description="Upgrade to TLS with STARTTLS before sending (and before any login); a "
        "server that does not offer it fails the delivery rather than send in clear.",
    )
    ca_file: Path | None = Field(
        None,
        description="A CA bundle (PEM) to trust for the SMTP server's certificate, e.g. the "
        "company's own CA; null: the system's.",
    )
    username_env: str | None = Field(
        "KB_HANDOFF_SMTP_USER",
        description="The environment variable with the SMTP login (unset or empty: no login).",
    )
    password_env: str | None = Field(
        "KB_HANDOFF_SMTP_PASSWORD",
        description="The environment variable with the SMTP password.",
    )
    timeout_s: float = Field(10, gt=0, description="Per-delivery SMTP timeout in seconds.")


class HandoffSettings(_Section):
    enabled: bool = Field(
        True,
        description="Offer 'Ask a person' (POST /v1/handoff, the widget's button) when a "
        "channel is configured (handoff.webhook.url or handoff.email.to).",
    )
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    email: EmailSettings = Field(default_factory=EmailSettings)
    poll_interval_s: float = Field(
        2, gt=0, description="How often each replica looks for deliveries that are due."
    )
    retry_base_s: float = Field(
        5, gt=0, description="The first retry's delay; each later one doubles (with jitter)."
    )
    retry_max_s: float = Field(600, gt=0, description="The longest delay between two tries.")
    max_attempts: int = Field(
        20,
        ge=1,
        description="Tries per channel before a delivery is marked failed (an admin can "
        "retry it: POST /v1/handoffs/{id}/retry).",
    )
    wait_s: float = Field(
        3,
        ge=0,
        description="How long POST /v1/handoff waits for the first delivery, so the reply can "
        "carry the receiver's ticket id; later, GET /v1/handoff/{id} has it.",
    )
    transcript_turns: int = Field(
        20, ge=0, description="The newest conversation turns sent with a hand-off."
    )
    lease_extra_s: float = Field(
        30,
        gt=0,
        description="How long past its channel's timeout a try may run before another "
        "replica takes the delivery over (a replica killed mid-send holds it that long).",
    )


class StateSettings(_Section):
    url: str | None = Field(
        None,
        min_length=1,
        description="SQLAlchemy URL of the state database (API keys, answers, feedback, "
        "conversations, the audit log; with a server also rate limits, the ingest manifest, "
        "the store's version and the ingest writer lock). null: "
        "sqlite:///<paths.data_dir>/state.sqlite3 (one machine). "
        "postgresql+psycopg://user@host/db: several replicas share it. A password belongs "
        "in the environment (RAG_STATE__URL), never in YAML.",
    )
    poll_interval_s: float = Field(
        1.0,
        gt=0,
        le=300,
        description="With a state database server: how often a replica checks whether an "
        "ingest on another machine changed the store, then brings its BM25 index in step.",
    )
    conversation_idle_hours: float = Field(
        24.0,
        gt=0,
        description="A conversation idle this long is forgotten (its turns are deleted from "
        "the state database).",
    )


class WidgetToken(_Section):
    token: str = Field(
        ...,
        min_length=16,
        description="The public widget token put in the page (data-token). Not a secret: it "
        "grants only its own groups, and only from its origins.",
    )
    name: str = Field("widget", description="Who the token is for (shown in logs).")
    origins: list[str] = Field(
        ...,
        min_length=1,
        description="Page origins allowed to use it, e.g. https://intranet.example. 'self' "
        "stands for the service's own origins, derived from server.host and server.port "
        "(the demo page's token).",
    )
    groups: list[str] = Field(
        default_factory=lambda: ["everyone"], description="Access groups of anonymous visitors."
    )
    identity_secret_env: str | None = Field(
        None,
        description="Environment variable holding the HMAC secret (HS256 JWT) the site signs "
        "user identities with; unset: signed identities are refused.",
    )
    identity_audience: str = Field(
        DEFAULT_IDENTITY_AUDIENCE,
        min_length=1,
        description="The aud claim a signed identity must carry (identities minted for "
        "another service are refused).",
    )
    identity_issuer: str | None = Field(
        None,
        min_length=1,
        description="The iss claim a signed identity must carry; null: not checked.",
    )
    identity_groups: list[str] = Field(
        default_factory=list,
        description="Groups a signed identity from this token may claim (besides the token's "
        "own groups); an identity claiming any other group is refused (403). Empty: "
        "identities carry only the token's groups.",
    )


class WidgetSettings(_Section):
    tokens: list[WidgetToken] = Field(
        default_factory=list, description="Widget tokens; none: the widget is disabled."
    )
    demo_page: bool = Field(False, description="Serve the demo host page at /widget/demo.")


SELF_ORIGIN = "self"
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def service_origins(host: str, port: int) -> list[str]:
    """The page origins a browser has when it loads a page from a service bound to
    ``host:port``: loopback by address and by name; on every interface (0.0.0.0) also this
    machine's host name. No DNS look-up (an air-gapped host may have no resolver)."""
    if host in LOOPBACK_HOSTS:
        names = ["127.0.0.1", "localhost"]
    elif host in WILDCARD_HOSTS:
        full = socket.gethostname()
        names = ["127.0.0.1", "localhost", full, full.split(".")[0]]
    else:
        names = [host]
    return [
        f"http://[{n}]:{port}" if ":" in n else f"http://{n}:{port}"
        for n in dict.fromkeys(n.lower() for n in names if n)
    ]


class Settings(_Section):
    profile: str = Field(DEFAULT_PROFILE, description="Name of the profile that was loaded.")
    paths: PathsSettings = Field(default_factory=PathsSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    context: ContextSettings = Field(default_factory=ContextSettings)
    answer: AnswerSettings = Field(default_factory=AnswerSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    widget: WidgetSettings = Field(default_factory=WidgetSettings)
    feedback: FeedbackSettings = Field(default_factory=FeedbackSettings)
    curated: CuratedSettings = Field(default_factory=CuratedSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    handoff: HandoffSettings = Field(default_factory=HandoffSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    state: StateSettings = Field(default_factory=StateSettings)

    @model_validator(mode="before")
    @classmethod
    def _self_origins(cls, data: Any) -> Any:
        """``self`` in a widget token's origins -> where the service listens."""
        try:
            tokens = data["widget"]["tokens"]
            server = data.get("server") or {}
            host = str(server.get("host", ServerSettings().host))
            port = int(server.get("port", ServerSettings().port))
        except (KeyError, TypeError, ValueError, AttributeError):
            return data
        if not isinstance(tokens, list) or not any(
            isinstance(t, dict) and SELF_ORIGIN in (t.get("origins") or []) for t in tokens
        ):
            return data
        own = service_origins(host, port)
        fixed = []
        for token in tokens:
            if isinstance(token, dict) and isinstance(token.get("origins"), list):
                origins = [o for o in token["origins"] if o != SELF_ORIGIN]
                if len(origins) < len(token["origins"]):
                    origins = list(dict.fromkeys([*own, *origins]))
                token = {**token, "origins": origins}
            fixed.append(token)
        return {**data, "widget": {**data["widget"], "tokens": fixed}}

    @model_validator(mode="after")
    def _auth_off_only_for_development(self) -> Settings:
        # An explicit setting, not the profile's name: a site profile called "dev" in
        # RAG_CONFIG_DIR must not run keyless by its name alone (issue 19).
        if not self.auth.required and not self.auth.allow_keyless:
            raise ValueError(
                f"auth.required is false in the {self.profile!r} profile, but "
                "auth.allow_keyless is not true; only a laptop or test profile may run without "
                "API keys (the shipped dev and test profiles set both). Remove "
                "auth.required: false and create keys "
                f"({how_to_run('rag-ingest keys create')}), or, on a machine only you can "
                "reach, set auth.allow_keyless: true as well."
            )
        return self


STATE_FILE = "state.sqlite3"


def state_url(settings: Settings) -> str:
    """``state.url``, or the SQLite file ``state.sqlite3`` in ``paths.data_dir``."""
    if settings.state.url:
        return settings.state.url
    return f"sqlite:///{(settings.paths.data_dir / STATE_FILE).resolve()}"


def shipped_config_dir() -> Path:
    """``configs/`` beside the package: base.yaml and the shipped profiles."""
    return Path(__file__).resolve().parent.parent / "configs"


def config_folders(environ: Mapping[str, str], config_dir: Path | None = None) -> list[Path]:
    """Where profiles are looked up, first match wins: ``config_dir`` alone when given (tests);
    else ``RAG_CONFIG_DIR`` (your own profiles) before the shipped ``configs/``. Each folder's
    ``base.yaml`` is merged, shipped first, so your folder needs only what differs."""
    if config_dir is not None:
        return [config_dir]
    folders: list[Path] = []
    extra = environ.get(CONFIG_DIR_ENV, "").strip()
    if extra:
        folders.append(Path(extra).expanduser())
    shipped = shipped_config_dir()
    if shipped.is_dir() and all(f.resolve() != shipped for f in folders):
        folders.append(shipped)
    return folders


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``top`` into ``base``: mappings recursively, anything else replaced."""
    merged = dict(base)
    for key, value in top.items():
        old = merged.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(old, value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}. Fix the file.") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of sections at the top level.")
    return data


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Turn ``RAG_SECTION__KEY=value`` variables into a nested mapping."""
    result: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name in _NOT_SETTINGS:
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        if len(parts) < 2 or not all(parts):
            raise ConfigError(
                f"Environment variable {name} is not of the form RAG_<SECTION>__<KEY>; "
                "rename or unset it."
            )
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = result
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return result


def load_settings(
    profile: str | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    config_dir: Path | None = None,
) -> Settings:
    """Build the settings for ``profile`` (see the module docstring for the order)."""
    env = os.environ if environ is None else environ
    name = profile or env.get(PROFILE_ENV) or DEFAULT_PROFILE
    folders = config_folders(env, config_dir)
    data: dict[str, Any] = {}
    for folder in reversed(folders):  # the shipped base first, yours over it
        if (folder / "base.yaml").is_file():
            data = deep_merge(data, _read_yaml(folder / "base.yaml"))
    prof = next((f / f"{name}.yaml" for f in folders if (f / f"{name}.yaml").is_file()), None)
    if prof is None or name == "base":
        known = sorted({p.stem for f in folders for p in f.glob("*.yaml") if p.stem != "base"})
        where = " or ".join(str(f) for f in folders) or "no config folder"
        raise ConfigError(
            f"Unknown profile {name!r}: no {name}.yaml in {where}. Choose one of "
            f"{', '.join(known) or 'none'}, or add {name}.yaml to the folder RAG_CONFIG_DIR "
            "names (only the keys that differ from configs/base.yaml)."
        )
    data = deep_merge(data, _read_yaml(prof))
    data = deep_merge(data, env_overrides(env))
    if overrides:
        data = deep_merge(data, overrides)
    data["profile"] = name
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, name)) from exc
    rooted: Settings = _rooted(settings, project_root(env))
    return rooted


def project_root(environ: Mapping[str, str]) -> Path:
    """Where relative paths in the settings point: ``$RAG_HOME``, else the checkout (the
    folder holding ``configs/`` and ``rag/``), else the working directory (an installed
    package without its checkout)."""
    home = environ.get(HOME_ENV, "").strip()
    if home:
        return Path(home).expanduser().resolve()
    shipped = shipped_config_dir()
    return shipped.parent if shipped.is_dir() else Path.cwd()


def _rooted(model: BaseModel, root: Path) -> Any:
    """``model`` with every relative ``Path`` field (nested sections too) under ``root``."""
    updates: dict[str, Any] = {}
    for name, value in model:
        if isinstance(value, Path) and not value.is_absolute():
            updates[name] = root / value
        elif isinstance(value, BaseModel):
            rooted = _rooted(value, root)
            if rooted is not value:
                updates[name] = rooted
    return model.model_copy(update=updates) if updates else model


def _describe(exc: ValidationError, profile: str) -> str:
    lines = [f"Invalid settings for profile {profile!r}:"]
    for err in exc.errors():
        msg = str(err["msg"]).removeprefix("Value error, ")
        if not err["loc"]:  # a rule across settings: its message names the keys
            lines.append(f"  {msg}")
            continue
        loc = ".".join(str(p) for p in err["loc"])
        env = ENV_PREFIX + "__".join(str(p).upper() for p in err["loc"])
        lines.append(f"  {loc}: {msg} (set in configs/*.yaml or {env})")
    return "\n".join(lines)
