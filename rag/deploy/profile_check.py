"""``rag-serve --check``: validate a profile without loading weights.

Resolves the settings as :func:`rag.engines.start_engine` would, prints the exact vLLM engine
arguments, and judges the memory estimate of :mod:`rag.deploy.memory_model` against the GPUs given
(``llm.gpu_memory_gib`` or ``--gpu-memory-gib``; on CPU against ``llm.kv_cache_space_gib``).
Impossible settings are refused with what to change (e.g. gpt-oss-120b on one 24 GB card:
use 4 GPUs of that size). Imports no vLLM and reads no weights.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rag.config import LLMSettings, Settings
from rag.deploy.memory_model import (
    DEFAULT_BATCHED_TOKENS,
    TYPICAL_RAG_TOKENS,
    MemoryEstimate,
    ModelShape,
    effective_shape,
    estimate_memory,
    gib,
    is_gpt_oss,
    kv_bytes_per_sequence,
    kv_dtype_bytes,
    load_shape,
    parameter_count,
    safetensors_bytes,
)


@dataclass
class CheckResult:
    ok: bool
    target: str  # gpu, cpu or remote
    shape: ModelShape | None
    shape_source: str
    estimate: MemoryEstimate | None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "target": self.target,
            "shape": asdict(self.shape) if self.shape else None,
            "shape_source": self.shape_source,
            "estimate": asdict(self.estimate) if self.estimate else None,
            "problems": self.problems,
            "warnings": self.warnings,
        }


def smallest_parallel_size(
    llm: LLMSettings,
    shape: ModelShape,
    gpu_memory_gib: float,
    measured_weights: int | None,
) -> int | None:
    """The smallest tensor_parallel_size (1, 2, 4, 8) with which one full sequence fits."""
    for tp in (1, 2, 4, 8):
        if shape.num_attention_heads % tp:
            continue
        trial = llm.model_copy(update={"tensor_parallel_size": tp})
        est = estimate_memory(
            trial, shape, gpu_memory_gib=gpu_memory_gib, measured_weights=measured_weights
        )
        if est.full_length_sequences is not None and est.full_length_sequences >= 1:
            return tp
    return None


def largest_model_len(est: MemoryEstimate, shape: ModelShape, llm: LLMSettings) -> int:
    """The longest context (multiple of 1,024) one sequence can have in the KV budget."""
    if not est.kv_budget_per_gpu or est.kv_budget_per_gpu <= 0:
        return 0
    kv_bytes = kv_dtype_bytes(llm, effective_shape(llm, shape))
    low, high = 0, max(llm.max_model_len, 1024) // 1024
    while low < high:
        mid = (low + high + 1) // 2
        need = math.ceil(
            kv_bytes_per_sequence(shape, mid * 1024, kv_bytes, est.kv_layout) / est.gpus
        )
        if need <= est.kv_budget_per_gpu:
            low = mid
        else:
            high = mid - 1
    return low * 1024


def fp8_problems(llm: LLMSettings, shape: ModelShape) -> list[str]:
    """fp8_e5m2 on gpt-oss: vLLM 0.33's FlashAttention backend (gpt-oss's on Hopper and
    Blackwell) lists only fp8/fp8_e4m3 among its KV cache dtypes; the engine would refuse."""
    if llm.kv_cache_dtype == "fp8_e5m2" and is_gpt_oss(shape):
        return [
            "llm.kv_cache_dtype fp8_e5m2 is not a KV cache dtype of FlashAttention, gpt-oss's "
            "attention backend on Hopper and Blackwell (it takes fp8 = fp8_e4m3). Use "
            "kv_cache_dtype: auto (bf16, what vLLM's recipe uses on H100/H200) or fp8."
        ]
    return []


def fp8_warnings(llm: LLMSettings, shape: ModelShape) -> list[str]:
    """An fp8 KV cache halves the memory per token, at a cost for gpt-oss."""
    if not is_gpt_oss(shape):
        return ["FP8 KV cache: half the memory per token; needs a GPU with FP8 (Hopper+)."]
    skip = (
        ""
        if "sliding_window" in llm.kv_cache_dtype_skip_layers
        else (
            " Keep the sliding-window layers in bf16 with llm.kv_cache_dtype_skip_layers: "
            "[sliding_window]."
        )
    )
    return [
        "FP8 KV cache with gpt-oss: vLLM's gpt-oss recipe uses it on Blackwell only "
        "(GPT-OSS_Blackwell.yaml); its Hopper config (H100/H200) keeps bf16. Crashes "
        "(vllm-project/vllm#23832) and accuracy loss were reported; measure answers before "
        f"serving with it.{skip}"
    ]


def check_llm(
    llm: LLMSettings,
    shape: ModelShape | None,
    *,
    shape_source: str,
    gpu_memory_gib: float | None,
    measured_weights: int | None = None,
    concurrency: int = 1,
    context_tokens: int | None = None,
) -> CheckResult:
    """Judge whether ``llm`` can run: on GPUs of ``gpu_memory_gib`` each, or on CPU (KV cache
    in ``kv_cache_space_gib``) when no GPU memory is given."""
    cpu = gpu_memory_gib is None
    result = CheckResult(True, "cpu" if cpu else "gpu", shape, shape_source, None)
    if shape is None:
        result.ok = False
        result.problems.append(
            f"Cannot estimate memory: {shape_source}, and {llm.model!r} is not a known "
            "gpt-oss model. Put the checkpoint (at least its config.json) in that folder."
        )
        return result
    _check_shape(llm, shape, cpu, result.problems, result.warnings)
    est = estimate_memory(
        llm, shape, gpu_memory_gib=gpu_memory_gib, measured_weights=measured_weights, cpu=cpu
    )
    result.estimate = est
    if est.kv_budget_per_gpu is None or est.budget_per_gpu is None:
        result.ok = not result.problems
        return result
    _check_memory(
        llm, shape, est, gpu_memory_gib, measured_weights, concurrency, context_tokens, result
    )
    result.ok = not result.problems
    return result


def _check_shape(
    llm: LLMSettings, shape: ModelShape, cpu: bool, problems: list[str], warnings: list[str]
) -> None:
    """What the settings ask of the model's shape and the parallelism."""
    if shape.max_position_embeddings and llm.max_model_len > shape.max_position_embeddings:
        problems.append(
            f"llm.max_model_len {llm.max_model_len} is longer than the model's "
            f"{shape.max_position_embeddings} positions. Set llm.max_model_len <= "
            f"{shape.max_position_embeddings}."
        )
    tp, pp = llm.tensor_parallel_size, llm.pipeline_parallel_size
    if shape.num_attention_heads % tp:
        problems.append(
            f"tensor_parallel_size {tp} does not divide the model's "
            f"{shape.num_attention_heads} attention heads. Use 1, 2, 4 or 8."
        )
    if pp > shape.num_layers:
        problems.append(
            f"pipeline_parallel_size {pp} is more than the model's {shape.num_layers} layers."
        )
    if cpu and tp * pp > 1:
        warnings.append(
            "No GPU memory given (llm.gpu_memory_gib or --gpu-memory-gib): judged as a CPU "
            "engine, where tensor/pipeline parallelism is not used. Give the GPU size."
        )
    if pp > 1 and llm.distributed_executor_backend != "ray":
        warnings.append(
            "pipeline_parallel_size > 1 across several nodes needs "
            "llm.distributed_executor_backend: ray (and a running Ray cluster); on one node "
            "mp works."
        )
    if llm.kv_cache_dtype.startswith("fp8") and not cpu:
        problems.extend(fp8_problems(llm, shape))
        warnings.extend(fp8_warnings(llm, shape))


def _check_memory(
    llm: LLMSettings,
    shape: ModelShape,
    est: MemoryEstimate,
    gpu_memory_gib: float | None,
    measured_weights: int | None,
    concurrency: int,
    context_tokens: int | None,
    result: CheckResult,
) -> None:
    """Whether the weights, the runtime and the KV cache fit the budget."""
    cpu, pp = gpu_memory_gib is None, llm.pipeline_parallel_size
    problems, warnings = result.problems, result.warnings
    assert est.kv_budget_per_gpu is not None and est.budget_per_gpu is not None
    where = (
        f"llm.kv_cache_space_gib {llm.kv_cache_space_gib:g}"
        if cpu
        else f"{est.gpus} GPU(s) of {gpu_memory_gib:g} GiB at gpu_memory_utilization "
        f"{llm.gpu_memory_utilization:g} ({gib(est.budget_per_gpu)} each)"
    )
    if not cpu and est.weights_per_gpu + est.runtime_per_gpu >= est.budget_per_gpu:
        need = smallest_parallel_size(llm, shape, gpu_memory_gib or 0, measured_weights)
        if need is None:
            hint = "No tensor_parallel_size up to 8 fits on this GPU: use larger GPUs."
        elif pp > 1:
            hint = (
                f"Use llm.tensor_parallel_size {need} ({need * pp} GPUs of this size with "
                f"pipeline_parallel_size {pp}) or larger GPUs."
            )
        else:
            hint = (
                f"Use {need} GPUs of this size (llm.tensor_parallel_size {need}) or a larger GPU."
            )
        problems.append(
            f"The weights ({gib(est.weights_per_gpu)} per GPU) and the runtime "
            f"(~{gib(est.runtime_per_gpu)}) do not fit on {where}. {hint}"
        )
    elif est.kv_budget_per_gpu < est.kv_one_sequence_per_gpu:
        longest = largest_model_len(est, shape, llm)
        fp8 = "" if llm.kv_cache_dtype.startswith("fp8") or cpu else ", llm.kv_cache_dtype: fp8"
        more = "raise llm.kv_cache_space_gib" if cpu else "use more or larger GPUs"
        per_gpu = "" if cpu else " per GPU"
        problems.append(
            f"One {llm.max_model_len}-token sequence needs {gib(est.kv_one_sequence_per_gpu)} "
            f"of KV cache{per_gpu}, but only {gib(max(est.kv_budget_per_gpu, 0))} is left on "
            f"{where}. "
            + (
                f"Set llm.max_model_len <= {longest}{fp8}, or {more}."
                if longest >= 1024
                else f"Not even a 1024-token context fits: {more}."
            )
        )
    else:
        tokens = context_tokens or llm.max_model_len
        kv_bytes = kv_dtype_bytes(llm, effective_shape(llm, shape))
        need = concurrency * math.ceil(
            kv_bytes_per_sequence(shape, tokens, kv_bytes, est.kv_layout) / est.gpus
        )
        if concurrency > 1 and need > est.kv_budget_per_gpu:
            fits = est.kv_budget_per_gpu // max(1, need // concurrency)
            problems.append(
                f"{concurrency} concurrent sequences of {tokens} tokens need {gib(need)} of "
                f"KV cache{'' if cpu else ' per GPU'}; {gib(est.kv_budget_per_gpu)} is left "
                f"on {where}, enough "
                f"for {fits}. Lower the concurrency or the context, use llm.kv_cache_dtype: "
                "fp8, or add GPUs."
            )
        if llm.max_num_seqs and concurrency > llm.max_num_seqs:
            warnings.append(
                f"llm.max_num_seqs {llm.max_num_seqs} is below the concurrency {concurrency}: "
                "the rest wait in vLLM's queue."
            )


# --- a whole profile ------------------------------------------------------------------------


@dataclass
class ProfileReport:
    """What ``rag-serve --check`` prints: the engine arguments and the memory verdict."""

    profile: str
    backend: str
    model: str
    model_dir: str
    weights_here: bool
    engine_args: dict[str, Any] | None
    engine_env: dict[str, str]
    remote: dict[str, Any]
    result: CheckResult | None

    @property
    def ok(self) -> bool:
        return self.result is None or self.result.ok

    def as_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k != "result"}
        data["ok"] = self.ok
        data["check"] = self.result.as_dict() if self.result else None
        return data


def check_profile(
    settings: Settings,
    *,
    gpu_memory_gib: float | None = None,
    concurrency: int = 1,
    context_tokens: int | None = None,
) -> ProfileReport:
    """Resolve ``settings`` as :func:`rag.engines.start_engine` would and judge the memory
    (``gpu_memory_gib`` overrides ``llm.gpu_memory_gib``). Loads no weights, imports no vLLM."""
    from rag.engines import resolve_model_dir
    from rag.engines.vllm_engine import engine_arguments, engine_environment
    from rag.errors import AssetError

    llm = settings.llm
    remote = {
        k: v
        for k, v in llm.model_dump().items()
        if any(w in k for w in ("url", "host", "endpoint")) and v is not None
    }
    if llm.backend != "vllm":
        return ProfileReport(
            settings.profile, llm.backend, llm.model, "", False, None, {}, remote, None
        )
    try:
        model_dir = resolve_model_dir(settings)
        here = True
    except AssetError:
        model_dir = Path(llm.model).expanduser()
        here = False
    shape, source = load_shape(model_dir, llm.model)
    result = check_llm(
        llm,
        shape,
        shape_source=source,
        gpu_memory_gib=gpu_memory_gib if gpu_memory_gib is not None else llm.gpu_memory_gib,
        measured_weights=safetensors_bytes(model_dir),
        concurrency=concurrency,
        context_tokens=context_tokens,
    )
    return ProfileReport(
        profile=settings.profile,
        backend=llm.backend,
        model=llm.model,
        model_dir=str(model_dir),
        weights_here=here,
        engine_args=engine_arguments(llm, model_dir),
        engine_env=engine_environment(llm),
        remote=remote,
        result=result,
    )


def render_report(report: ProfileReport, llm: LLMSettings) -> str:
    """The report as text for a terminal."""
    lines = [f"profile {report.profile}: backend {report.backend}, model {report.model}"]
    if report.remote:
        lines += [f"  {k}: {v}" for k, v in report.remote.items()]
    if report.result is None:
        lines.append("The engine runs elsewhere: no local memory to check.")
        return "\n".join(lines)
    if not report.weights_here:
        lines.append(f"  weights: not on this machine ({report.model_dir})")
    lines.append("engine arguments (vllm AsyncEngineArgs):")
    lines += [f"  {k}: {v!r}" for k, v in (report.engine_args or {}).items()]
    lines += [
        f"environment default: {k}={v} (read by the CPU build only)"
        for k, v in report.engine_env.items()
    ]
    res, shape, est = report.result, report.result.shape, report.result.estimate
    if shape is not None:
        sliding = (
            f", {shape.sliding_layers} with a {shape.sliding_window}-token window"
            if shape.sliding_layers
            else ""
        )
        experts = f", {shape.num_experts} experts ({shape.experts_per_token} active)"
        lines.append(
            f"model shape ({res.shape_source}): {shape.num_layers} layers{sliding}, "
            f"{shape.num_kv_heads} KV heads x {shape.head_dim}"
            f"{experts if shape.num_experts else ''}, "
            f"{parameter_count(shape) / 1e9:.1f}B parameters"
        )
    if est is not None:
        per = "CPU" if res.target == "cpu" else f"per GPU, {est.gpus} GPU(s)"
        lines.append(f"memory estimate ({per}):")
        lines.append(
            f"  weights       {gib(est.weights_total)} in all ({est.weights_source})"
            + ("" if res.target == "cpu" else f", {gib(est.weights_per_gpu)} per GPU")
        )
        if res.target == "gpu":
            lines.append(
                f"  runtime       ~{gib(est.runtime_per_gpu)} (CUDA context and graphs, "
                f"activations of {llm.max_num_batched_tokens or DEFAULT_BATCHED_TOKENS} "
                "batched tokens, sampler)"
            )
        lines.append(
            f"  KV cache      {est.kv_per_token / 1024:.0f} KiB per token of context; one "
            f"{llm.max_model_len}-token sequence {gib(est.kv_one_sequence_per_gpu)}"
            + ("" if res.target == "cpu" or est.gpus == 1 else " per GPU")
        )
        if shape is not None and shape.sliding_layers:
            layout = est.kv_layout
            lines.append(
                f"                sliding-window layers hold {est.sliding_tokens:,} tokens each "
                f"(window {shape.sliding_window} + {layout.in_flight_tokens:,} in flight, "
                f"{layout.block_tokens}-token blocks: vLLM's hybrid KV cache manager)"
            )
        if est.budget_per_gpu is None:
            lines.append(
                "  no GPU memory given (llm.gpu_memory_gib or --gpu-memory-gib): fit not judged"
            )
        else:
            kind = "KV space" if res.target == "cpu" else "usable"
            left = est.kv_budget_per_gpu or 0
            typical = min(TYPICAL_RAG_TOKENS, llm.max_model_len)
            fits = (
                f"{est.kv_capacity_tokens or 0:,} tokens: "
                f"{est.full_length_sequences or 0:.1f} x {llm.max_model_len}-token"
                + (
                    f" or {est.typical_sequences or 0:.1f} x {typical}-token"
                    if typical < llm.max_model_len
                    else ""
                )
                + " sequences at once"
            )
            lines.append(
                f"  {kind:<13} {gib(est.budget_per_gpu)}; "
                + (
                    f"left for KV cache {gib(left)}, {fits}"
                    if left > 0
                    else "nothing left for KV cache"
                )
            )
    lines += [f"warning: {w}" for w in res.warnings]
    if res.ok:
        lines.append("OK: the profile fits (an estimate; vLLM logs the measured KV cache size).")
    else:
        lines += [f"REFUSED: {p}" for p in res.problems]
    return "\n".join(lines)
