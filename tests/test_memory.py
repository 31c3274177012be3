"""cogvideox_ddim_memory: the offload rungs, fp8 storage, torchao quantization and step caches on tiny checkpoints
(CPU), the counted bytes of the real configurations, and every refusal."""

import dataclasses
import importlib.util
import json
import re

import numpy as np
import pytest
import torch
from conftest import SHARED, TEXT_LENGTH

from cogvideox_ddim_inversion.cogvideox_ddim_memory import (
    FAMILY_TRANSFORMERS,
    GiB,
    T5_XXL_CONFIG,
    BlockEvaluationCounter,
    MemoryOptions,
    apply_memory_options,
    cache_disabled,
    check_memory_options,
    choose_offload,
    counted_bytes,
    enable_fp8_storage,
    enable_group_offload,
    inversion_cache,
    quantization_config,
)
from cogvideox_ddim_inversion.cogvideox_ddim_errors import ParameterError, render
from cogvideox_ddim_inversion.testing.sample_clip import sample_clip_frames


STEPS = 6
CALL = dict(num_inference_steps=STEPS, max_sequence_length=TEXT_LENGTH)
LAYERS = 2  # transformer blocks of the tiny checkpoints
HAS_TORCHAO = importlib.util.find_spec("torchao") is not None
# Relative tolerances of the 8-bit rungs against the plain fp32 run (edit latents after STEPS steps, reference edit);
# measured on the tiny 5B-structure checkpoint: fp8 storage 0.027, int8 weight-only 0.0072 (loading it all in bf16
# instead: 0.052).
FP8_TOLERANCE = 0.05
INT8_TOLERANCE = 0.02
# bf16 weights of CogVideoX-5B's components: parameter counts of the real configurations built on the meta device
# (transformer 5,570,283,072, T5-XXL encoder 4,762,310,656, VAE 215,583,907), times 2 bytes.
COGVIDEOX_5B_BF16 = {"transformer": 11_140_566_144, "text_encoder": 9_524_621_312, "vae": 431_167_814}


def relative_difference(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture(scope="module")
def clip():
    return np.stack(sample_clip_frames(num_frames=9))


def invert(pipe, clip, **kwargs):
    return pipe.invert(video=clip, prompt="a red circle", **CALL, **kwargs)


def edit(pipe, inv, reference=True, **kwargs):
    arguments = dict(prompt="a blue circle", latents=inv.trajectory[0], guidance_scale=6.0, output_type="latent",
                     **CALL)
    if reference:
        arguments.update(reference_latents=inv.trajectory, reference_prompt="a red circle")
    return pipe(**{**arguments, **kwargs}).frames


@pytest.fixture(scope="module")
def plain(tiny_checkpoint, clip):
    """The plain run's inversion and edit, the baseline of every rung."""
    from cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline

    pipe = CogVideoXDDIMInversionPipeline.from_pretrained(tiny_checkpoint("cogvideox-5b"))
    pipe.set_progress_bar_config(disable=True)
    inv = invert(pipe, clip)
    return inv, edit(pipe, inv)


# Offloading ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("level", ["block", "leaf"])
def test_group_offload_to_the_cpu_gives_the_plain_output_bit_for_bit(load_pipe, clip, plain, level):
    pipe = load_pipe()
    enable_group_offload(pipe, onload_device="cpu", offload_device="cpu", level=level)
    inv = invert(pipe, clip)
    assert torch.equal(inv.trajectory, plain[0].trajectory)
    assert torch.equal(edit(pipe, inv), plain[1])


# 8-bit weights -------------------------------------------------------------------------------------------------------

def test_fp8_storage_stays_within_tolerance_of_the_plain_run(load_pipe, clip, plain):
    pipe = load_pipe()
    enable_fp8_storage(pipe, text_encoder=True)
    assert pipe.transformer.transformer_blocks[0].ff.net[2].weight.dtype == torch.float8_e4m3fn
    assert pipe.text_encoder.encoder.block[0].layer[0].SelfAttention.q.weight.dtype == torch.float8_e4m3fn
    assert pipe.transformer.patch_embed.proj.weight.dtype == torch.float32  # diffusers' skip patterns stay exact
    inv = invert(pipe, clip)
    difference = relative_difference(edit(pipe, inv), plain[1])
    assert 0 < difference < FP8_TOLERANCE


def load_quantized(tiny_checkpoint, quantize="int8", variant="cogvideox-5b"):
    from cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline

    options = MemoryOptions(quantize=quantize, quantize_text_encoder=True, offload="none")
    # torchao loads the unquantized layers in bf16 unless told the dtype
    pipe = CogVideoXDDIMInversionPipeline.from_pretrained(tiny_checkpoint(variant), dtype=torch.float32,
                                                          quantization_config=quantization_config(options))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.skipif(not HAS_TORCHAO, reason='torchao is not installed: pip install "cogvideox-ddim-inversion['
                    'quantization]"')
def test_torchao_int8_weight_only_stays_within_tolerance_of_the_plain_run(tiny_checkpoint, clip, plain):
    pipe = load_quantized(tiny_checkpoint)
    weight = pipe.transformer.transformer_blocks[0].ff.net[2].weight
    assert "Int8" in type(weight).__name__, type(weight)  # torchao's int8 tensor
    inv = invert(pipe, clip)
    difference = relative_difference(edit(pipe, inv), plain[1])
    assert 0 < difference < INT8_TOLERANCE


@pytest.mark.skipif(not HAS_TORCHAO, reason="torchao is not installed")
def test_int8_keeps_the_patch_embedding_that_the_inversion_fingerprint_reads(tiny_checkpoint, clip):
    """1.5's patch embedding is a Linear: quantized, the fingerprint's digest of it fails (no view(dtype))."""
    pipe = load_quantized(tiny_checkpoint, variant="cogvideox1.5-5b")
    assert type(pipe.transformer.patch_embed.proj.weight.data) is torch.Tensor
    assert "Int8" in type(pipe.transformer.transformer_blocks[0].ff.net[2].weight).__name__
    inv = pipe.invert(video=clip, prompt="a red circle", num_inference_steps=2, max_sequence_length=TEXT_LENGTH)
    assert inv.trajectory.shape[0] == 2


# The reference survives every hook -----------------------------------------------------------------------------------

def with_group_offload(pipe):
    enable_group_offload(pipe, onload_device="cpu", offload_device="cpu", level="block")


def with_fp8(pipe):
    enable_fp8_storage(pipe, text_encoder=True)


def with_first_block_cache(pipe):
    apply_memory_options(pipe, MemoryOptions(offload="none", cache="first-block", cache_threshold=0.5), "cpu")


def with_taylorseer(pipe):
    apply_memory_options(pipe, MemoryOptions(offload="none", cache="taylorseer", cache_interval=2), "cpu")


@pytest.mark.parametrize("option", [with_group_offload, with_fp8, with_first_block_cache, with_taylorseer, "int8"])
def test_a_reference_edit_under_each_option_still_attends_to_the_reference(load_pipe, tiny_checkpoint, clip, option):
    if option == "int8":
        if not HAS_TORCHAO:
            pytest.skip("torchao is not installed")
        pipe = load_quantized(tiny_checkpoint)
    else:
        pipe = load_pipe()
        option(pipe)
    with inversion_cache(pipe.transformer):
        inv = invert(pipe, clip)
    guided, unguided = edit(pipe, inv), edit(pipe, inv, reference=False)
    assert relative_difference(guided, unguided) > 1e-2
    if option not in (with_first_block_cache, with_taylorseer):
        # Zero reference weight removes the reference rows' influence: what remains is the reference-free edit. Not
        # under a cache: its skip decisions read the whole batch, reference rows included, so they differ.
        ignored = edit(pipe, inv, attention_kwargs={"reference_weight": 0.0})
        assert relative_difference(ignored, unguided) < 1e-3


# Caches --------------------------------------------------------------------------------------------------------------

def cached_pipe(load_pipe, threshold=0.5, **options):
    pipe = load_pipe()
    apply_memory_options(pipe, MemoryOptions(offload="none", cache="first-block", cache_threshold=threshold,
                                             **options), "cpu")
    return pipe


@pytest.mark.parametrize("cache", [dict(cache="first-block", cache_threshold=0.5),
                                   dict(cache="taylorseer", cache_interval=2)])
def test_caches_skip_block_evaluations_on_an_edit(load_pipe, clip, plain, cache):
    pipe = load_pipe()
    apply_memory_options(pipe, MemoryOptions(offload="none", **cache), "cpu")
    with inversion_cache(pipe.transformer):
        inv = invert(pipe, clip)
    assert torch.equal(inv.trajectory, plain[0].trajectory)
    rows = []
    pipe.transformer.transformer_blocks[0].register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(kwargs["hidden_states"].shape[0]), with_kwargs=True)
    with BlockEvaluationCounter(pipe.transformer) as counter:
        cached = edit(pipe, inv)
    assert counter.evaluations < STEPS * LAYERS
    # A skip is decided per call, for the whole batch: sample and reference rows are computed, or skipped, together.
    assert rows == [3] * STEPS
    assert counter.evaluations >= 2 * LAYERS  # every block runs on the first steps at least
    assert 0 < relative_difference(cached, plain[1]) < 0.5


def test_invert_never_runs_with_the_cache_unless_asked(load_pipe, clip, plain):
    pipe = cached_pipe(load_pipe, threshold=10.0)  # skip whenever allowed to
    with BlockEvaluationCounter(pipe.transformer) as counter, inversion_cache(pipe.transformer):
        inv = invert(pipe, clip, fixed_point_iterations=2)
    assert counter.evaluations == STEPS * 3 * LAYERS  # one evaluation per fixed-point iteration and one per step
    assert pipe.transformer.is_cache_enabled  # the cache is back for the edit
    pipe.cache_inversion = True  # invert() reads it (MemoryOptions.cache_inversion): inversion_cache(allowed=True)
    with BlockEvaluationCounter(pipe.transformer) as counter:
        cached = invert(pipe, clip, fixed_point_iterations=2)
    assert counter.evaluations < STEPS * 3 * LAYERS
    assert not torch.equal(cached.trajectory, inv.trajectory)
    pipe.transformer.disable_cache()
    assert torch.equal(invert(pipe, clip, fixed_point_iterations=2).trajectory, inv.trajectory)


def test_the_pipeline_inverts_without_the_cache_and_edits_with_it(load_pipe, clip, plain):
    """From Python, with no context manager: `invert()` (wrapped in `without_step_cache`) is the uncached inversion
    bit for bit, `__call__` skips, and `cache_inversion` lets the cache into the inversion."""
    pipe = cached_pipe(load_pipe, threshold=10.0)
    uncached = load_pipe()
    with BlockEvaluationCounter(pipe.transformer) as counter:
        inv = invert(pipe, clip, fixed_point_iterations=2)
    assert counter.evaluations == STEPS * 3 * LAYERS
    assert torch.equal(inv.trajectory, invert(uncached, clip, fixed_point_iterations=2).trajectory)
    assert pipe.transformer.is_cache_enabled
    with BlockEvaluationCounter(pipe.transformer) as counter:
        edit(pipe, inv)
    assert counter.evaluations < STEPS * LAYERS
    # diffusers' own API enables a cache the same way: the inversion still runs without it
    fresh = load_pipe()
    fresh.transformer.enable_cache(pipe.transformer._cache_config)
    assert torch.equal(invert(fresh, clip).trajectory, plain[0].trajectory)

    allowed = load_pipe()
    apply_memory_options(allowed, MemoryOptions(offload="none", cache="first-block", cache_threshold=10.0,
                                                cache_inversion=True), "cpu")
    with BlockEvaluationCounter(allowed.transformer) as counter:
        cached = invert(allowed, clip, fixed_point_iterations=2)
    assert counter.evaluations < STEPS * 3 * LAYERS
    assert not torch.equal(cached.trajectory, inv.trajectory)


def test_cache_disabled_restores_the_same_cache(load_pipe):
    pipe = cached_pipe(load_pipe)
    config = pipe.transformer._cache_config
    with cache_disabled(pipe.transformer):
        assert not pipe.transformer.is_cache_enabled
    assert pipe.transformer._cache_config is config


def test_masks_and_multi_prompt_batches_work_under_the_cache(load_pipe, clip):
    pipe = cached_pipe(load_pipe)
    with inversion_cache(pipe.transformer):
        inv = invert(pipe, clip)
    mask = np.zeros((9, 64, 96), dtype=bool)
    mask[:, 16:48, 24:72] = True
    with BlockEvaluationCounter(pipe.transformer) as counter:
        masked = edit(pipe, inv, mask=mask, source_latents=inv.latents, mask_latent_dilation=0)
    assert counter.evaluations < STEPS * LAYERS
    inside = torch.zeros_like(masked, dtype=torch.bool)
    inside[:, :, :, 2:6, 3:9] = True  # the mask's latent cells (8x spatial compression)
    assert torch.equal(masked[~inside], inv.latents[~inside])
    assert not torch.equal(masked[inside], inv.latents[inside])

    with BlockEvaluationCounter(pipe.transformer) as counter:
        both = edit(pipe, inv, prompt=["a blue circle", "a green circle"])
    assert both.shape[0] == 2 and counter.evaluations < STEPS * LAYERS
    assert relative_difference(both[0], both[1]) > 1e-3


# Counted bytes -------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def configs_5b():
    return {"transformer": FAMILY_TRANSFORMERS["cogvideox-5b"], "text_encoder": T5_XXL_CONFIG}


def test_family_configs_are_the_shared_reference_facts():
    path = SHARED / "reference" / "cogvideox_family.json"
    if not path.exists():
        pytest.skip("../shared/reference/cogvideox_family.json is absent")
    family = json.loads(path.read_text())
    for name, model in (("cogvideox-5b", "THUDM/CogVideoX-5b"), ("cogvideox1.5-5b", "THUDM/CogVideoX1.5-5B")):
        facts = {**family["common"]["transformer_shared"], **family["models"][model]["transformer"]}
        assert {key: FAMILY_TRANSFORMERS[name].get(key, 1) for key in facts} == facts


def test_counted_bytes_of_cogvideox_5b_are_its_parameter_counts(configs_5b):
    counted = counted_bytes(configs_5b)
    assert counted.stored == COGVIDEOX_5B_BF16
    assert counted.resident["none"] == sum(COGVIDEOX_5B_BF16.values())
    assert counted.resident["model"] == COGVIDEOX_5B_BF16["transformer"]
    embedding = 32128 * 4096 * 2  # T5's vocabulary embedding: the largest single layer
    assert counted.resident["sequential"] == embedding and counted.resident["group-leaf"] == 2 * embedding
    # group: T5's embedding, final norm and two of its 24 blocks (attention 4 x 4096^2, gated FF 3 x 4096 x 10240,
    # two norms; the first block also holds the relative position bias, 32 buckets x 64 heads)
    t5_block = (4 * 4096 * 4096 + 3 * 4096 * 10240 + 2 * 4096) * 2
    assert counted.resident["group"] == embedding + 4096 * 2 + 2 * t5_block + 32 * 64 * 2


def test_eight_bit_storage_halves_the_linear_weights(configs_5b):
    plain = counted_bytes(configs_5b)
    fp8 = counted_bytes(configs_5b, MemoryOptions(weights="fp8"))
    int8 = counted_bytes(configs_5b, MemoryOptions(quantize="int8", quantize_text_encoder=True))
    assert fp8.stored["text_encoder"] == plain.stored["text_encoder"]  # T5 only when asked
    assert 0.5 < fp8.stored["transformer"] / plain.stored["transformer"] < 0.6
    assert 0.45 < int8.stored["text_encoder"] / plain.stored["text_encoder"] < 0.55
    assert int8.stored["vae"] == plain.stored["vae"]


@pytest.mark.parametrize("free_gib, expected", [(None, "none"), (79.0, "none"), (40.0, "none"), (23.5, "model"),
                                                (15.5, "group"), (11.0, "group"), (10.5, "group-leaf"),
                                                (10.1, "sequential"), (7.5, "sequential")])
def test_auto_fits_a_5b_edit_to_the_card(configs_5b, free_gib, expected):
    """A 12 GB card (about 11 GiB free) gets block-level group offload at 5B; 24 GB model offload; 40 and 80 GB
    none. The CPU (no free-memory reading) none."""
    free = None if free_gib is None else int(free_gib * GiB)
    assert choose_offload(free, counted_bytes(configs_5b)) == expected


# Refusals ------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("options, device, message", [
    (dict(quantize="fp8"), "cpu", "--quantize fp8 computes in fp8 on a GPU; on cpu use --quantize int8"),
    (dict(offload="model"), "cpu", "--offload model moves weights to a GPU; on cpu use --offload none"),
    (dict(offload="sequential"), "cpu", "--offload sequential moves weights to a GPU"),
    (dict(offload="none", offload_streams=True), "cpu", "CUDA streams prefetch offloaded weights onto a GPU"),
    (dict(offload="group", offload_streams=True), "cpu", "CUDA streams prefetch offloaded weights onto a GPU"),
    (dict(offload="model", offload_streams=True), "cuda", "Streams apply to group offloading only"),
    (dict(cache="faster"), "cpu", r"FasterCache splits the transformer's batch with chunk\(2\)"),
    (dict(cache="pab"), "cpu", "PyramidAttentionBroadcast reads the pipeline's current timestep"),
    (dict(cache="tea"), "cpu", "Unknown --cache 'tea'; choose one of first-block, mag, taylorseer"),
    (dict(cache="mag"), "cpu", "--cache mag needs magnitude ratios calibrated for this checkpoint"),
    (dict(cache="first-block", cache_threshold=0.0), "cpu", "--cache-threshold must be positive"),
    (dict(cache="taylorseer", cache_threshold=0.1), "cpu", "--cache taylorseer has no threshold"),
    (dict(cache="taylorseer", cache_interval=0), "cpu", "--cache-interval must be at least 1"),
    (dict(cache_inversion=True), "cpu", "Caching during inversion was asked for without a cache"),
    (dict(weights="fp8", quantize="int8"), "cpu", "--weights fp8 and --quantize int8 both change"),
    (dict(weights="fp4"), "cpu", "Unknown --weights 'fp4'; choose one of bf16, fp8"),
    (dict(offload="disk"), "cpu", "Unknown --offload 'disk'"),
])
def test_impossible_options_are_refused_with_the_fix(options, device, message):
    """Each refusal is a `ParameterError` whose template names the options; rendered with the command line's flags
    it reads as `message`, and Python's rendering names the `MemoryOptions` fields."""
    with pytest.raises(ParameterError) as refused:
        check_memory_options(MemoryOptions(**options), device)
    assert re.search(message, render(refused.value.template, lambda name: "--" + name.replace("_", "-")))
    assert "--" not in str(refused.value)  # Python's rendering: `quantize`, never a flag


def test_fp8_compute_is_refused_on_a_gpu_without_fp8():
    with pytest.raises(ValueError, match=r"fp8 support \(compute capability 8.9 or more.*this one has 8.0"):
        check_memory_options(MemoryOptions(quantize="fp8"), "cuda", compute_capability=(8, 0))


def test_missing_torchao_names_the_extra(monkeypatch):
    from cogvideox_ddim_inversion import cogvideox_ddim_memory

    monkeypatch.setattr(cogvideox_ddim_memory, "torchao_version", lambda: None)
    with pytest.raises(ValueError, match=r'needs torchao.*pip install "cogvideox-ddim-inversion\[quantization\]"'):
        check_memory_options(MemoryOptions(quantize="int8"), "cpu")
    monkeypatch.setattr(cogvideox_ddim_memory, "torchao_version", lambda: "0.12.0")
    with pytest.raises(ValueError, match="torchao >= 0.15.0"):
        check_memory_options(MemoryOptions(quantize="int8"), "cpu")


def test_options_are_recorded_for_run_json(load_pipe):
    pipe = load_pipe()
    chosen = apply_memory_options(pipe, MemoryOptions(weights="fp8", cache="first-block"), "cpu")
    assert chosen == {**dataclasses.asdict(MemoryOptions(weights="fp8", cache="first-block")), "offload": "none",
                      "offload_streams": False, "free_gpu_memory_gib": None}
    json.dumps(chosen)


# The speed benchmark's memory configurations -------------------------------------------------------------------------

@pytest.mark.slow
def test_the_speed_benchmark_measures_rungs_and_caches(tmp_path):
    """`benchmarks/speed.py --configs` takes the memory rungs and caches; on a CPU the tiny rows run (group offload
    onto the CPU) and fp8 compute is refused in its row with the memory module's message. (Each child's run, in
    process: test_speed_benchmark.py::test_memory_rungs_and_caches_of_each_child_run_on_a_cpu.)"""
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "speed.json"
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py"
    completed = subprocess.run(
        [sys.executable, str(script), "--device", "cpu", "--sizes", "tiny", "--steps", "4", "--repeats", "1",
         "--e2e", "none", "--count-sizes", "--json", str(out), "--configs", "group-offload",
         "taylorseer-cache", "fp8-quantized"], capture_output=True, text=True)
    assert completed.returncode == 1, completed.stderr[-3000:]  # the fp8 row failed, as it must on a CPU
    measured = {r["config"]: r for r in json.loads(out.read_text())["measured"]}
    assert "--quantize fp8 computes in fp8 on a GPU" in measured["fp8-quantized"]["error"]
    for key in ("group-offload", "taylorseer-cache"):
        assert "error" not in measured[key] and measured[key]["rows_per_step"] == 3
    assert measured["group-offload"]["blocks_run_fraction"] == 1
    assert measured["taylorseer-cache"]["blocks_run_fraction"] < 1  # predicted between full steps
    assert "% of block evaluations run)" in measured["taylorseer-cache"]["label"]


def test_block_level_group_offload_onloads_t5_one_block_at_a_time(load_pipe, monkeypatch):
    """Block level offloading must find T5's blocks, under `encoder`: offloading the T5 model itself onloads the whole
    encoder in one group, the same output on a CPU but T5-XXL's 9.5 GB at once on a GPU."""
    from diffusers.hooks.group_offloading import ModuleGroup

    pipe = load_pipe()
    enable_group_offload(pipe, onload_device="cpu", offload_device="cpu", level="block")
    blocks = list(pipe.text_encoder.encoder.block)
    assert len(blocks) > 1
    onloaded = []  # per onload: the T5 blocks its group holds (a block, or a module holding blocks)
    original = ModuleGroup.onload_

    def recording_onload(group):
        held = {id(module) for member in group.modules for module in member.modules()}
        onloaded.append([index for index, block in enumerate(blocks) if id(block) in held])
        return original(group)

    monkeypatch.setattr(ModuleGroup, "onload_", recording_onload)
    with torch.no_grad():
        pipe.encode_prompt("a red circle", do_classifier_free_guidance=False, max_sequence_length=TEXT_LENGTH,
                           device="cpu")
    t5_onloads = [held for held in onloaded if held]
    assert t5_onloads, "no group holding a T5 block was onloaded while encoding the prompt"
    assert all(len(held) == 1 for held in t5_onloads), f"groups onloaded T5 blocks {t5_onloads} together"
    assert sorted({held[0] for held in t5_onloads}) == list(range(len(blocks)))
