"""Speed, memory and counted FLOPs of inversion and reference-guided editing, per configuration, on a CPU or a GPU.

Sizes (`--sizes`):

- tiny: the test suite's tiny CogVideoX-5B (2 layers, 2 heads of 16), 9 frames of 64x96;
- faithful: CogVideoX-5B's structure and head size (RoPE, heads of 64, text width 4096, patch 2) with 8 heads and
  2 layers, on 49 frames of 160x240 (1950 video + 226 text tokens);
- 2b, 5b, 5b-i2v, 1.5-5b, 1.5-5b-i2v: the transformer configurations of the public checkpoints (written out below,
  nothing is downloaded) at their native resolution, with random weights created on the device. They need a GPU.

Every configuration runs in its own process (fresh peak-memory statistics and compile caches) on pre-computed text
embeddings and latents, so only the denoising loop is timed: a 2-step warm-up call, then the measured call. On CUDA,
seconds come from CUDA events and memory from `torch.cuda.max_memory_allocated`; on a CPU from `time.perf_counter` and
the process's peak resident memory, so the same code path runs in the tests at tiny size.

FLOPs are counted, not modelled: `torch.utils.flop_counter.FlopCounterMode` over the transformer built on the meta
device (no weights, no data; seconds on a CPU), called with each configuration's batch layout. On the meta device
`scaled_dot_product_attention` runs its math path, whose matrix products the counter sees (checked at start-up; CPU's
fused attention kernel is invisible to it). Achieved TFLOPS = counted FLOPs per step / measured seconds per step;
utilisation divides by the device's dense bf16 peak (`BF16_DENSE_PEAK_TFLOPS`, or `--peak-tflops`).

The counted table also holds a long clip (`--long-clip-frames`, default 241: 30 s at 8 fps) inverted and edited in
overlapping windows of the native length (cogvideox_ddim_windows.py): every window is a native clip, so a step costs
windows = ceil((F - O) / (W - O)) times the native step (F, W, O in latent frames), counted on one window's layout.

`--e2e` times one whole edit (text encoding, VAE encoding, inversion, edit, tiled VAE decoding) with the real T5-XXL,
VAE and transformer configurations (random weights), without offloading and with `enable_model_cpu_offload` and
`enable_sequential_cpu_offload`.

`--context-parallel N` runs each configuration as N processes under `torchrun` with the transformer's video tokens
spread over them (cogvideox_ddim_context_parallel.py; one GPU each on CUDA, gloo on a CPU, where `BENCH_THREADS` is
shared out between the processes); process 0's seconds and memory are reported. The FLOPs columns stay those of the
whole step (all processes together).

Usage:
  python benchmarks/speed.py --sizes tiny faithful --steps 4 --repeats 2        # CPU, plus the counted real-size table
  python benchmarks/speed.py --sizes faithful --configs invert shared --context-parallel 2   # 2 processes, CPU
  python benchmarks/speed.py --device cuda --sizes 5b 1.5-5b --configs invert shared --context-parallel 8 --compile off
  python benchmarks/speed.py --flops-only                                       # only the counted table (five models)
  python benchmarks/speed.py --device cuda --dtype bf16 --sizes 2b 5b 1.5-5b --json speed_gpu.json
  python benchmarks/speed.py --device cuda --sizes 5b --compile off --e2e none --configs shared fp8-weights int8 \
      fp8-quantized group-offload group-leaf-offload first-block-cache taylorseer-cache     # memory rungs, caches
"""

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time

import torch


# What each configuration runs. Labels use N (`--batch-prompts`) and k (`--fixed-point-iterations`).
CONFIGS = {
    "plain": dict(label="plain generation (CFG)", kind="generate"),
    "plain-idle": dict(label="plain + idle processor installed", kind="generate", idle_processor=True),
    "invert": dict(label="invert, guidance 1", kind="invert", guidance_scale=1.0),
    "invert-published": dict(label="invert, published recipe (CFG 6 on '')", kind="invert", guidance_scale=6.0),
    "invert-fixed-point": dict(
        label="invert, guidance 1, {k} fixed-point iterations", kind="invert", guidance_scale=1.0, fixed_point=True
    ),
    "shared": dict(label="edit, shared", kind="edit", reference_mode="shared"),
    "paired": dict(label="edit, paired (published layout)", kind="edit", reference_mode="paired"),
    "shared-window": dict(
        label="edit, shared, 50% step window", kind="edit", reference_mode="shared", reference_steps=0.5
    ),
    "batch": dict(
        label="edit, {n} prompts batched, one shared reference row", kind="edit", reference_mode="shared", prompts=True
    ),
}
GUIDANCE = 6.0
# The memory rungs and step caches of `cogvideox_ddim_memory`, each on the shared edit (`--configs fp8-weights int8
# ...`; not run by default): seconds per step and peak memory per rung. Their FLOP counts are the shared edit's; a
# cache skips some of that work, and the label says which fraction of the block evaluations ran.
MEMORY_CONFIGS = {
    "fp8-weights": dict(label="edit, shared, --weights fp8", memory=dict(weights="fp8")),
    "int8": dict(label="edit, shared, --quantize int8", memory=dict(quantize="int8")),
    "fp8-quantized": dict(label="edit, shared, --quantize fp8 (CUDA 8.9+)", memory=dict(quantize="fp8")),
    "group-offload": dict(label="edit, shared, --offload group", memory=dict(offload="group")),
    "group-leaf-offload": dict(label="edit, shared, --offload group-leaf", memory=dict(offload="group-leaf")),
    "first-block-cache": dict(label="edit, shared, --cache first-block --cache-threshold 0.1",
                              memory=dict(cache="first-block", cache_threshold=0.1)),
    "taylorseer-cache": dict(label="edit, shared, --cache taylorseer --cache-interval 2",
                             memory=dict(cache="taylorseer", cache_interval=2)),
}
for _entry in MEMORY_CONFIGS.values():
    _entry.update(kind="edit", reference_mode="shared")


def config_spec(key: str) -> dict:
    """A configuration of `CONFIGS` or `MEMORY_CONFIGS`."""
    return CONFIGS[key] if key in CONFIGS else MEMORY_CONFIGS[key]

# Transformer configurations of the public checkpoints (their transformer/config.json; structural facts as in
# testing/tiny_checkpoint.py's VARIANTS) and their native sizes. Shared by all: heads of 64, patch 2, T5-XXL text
# (4096 wide, 226 tokens), time embedding 512, 16 output channels.
_REAL_SHARED = dict(
    attention_head_dim=64,
    patch_size=2,
    text_embed_dim=4096,
    time_embed_dim=512,
    max_text_seq_length=226,
    out_channels=16,
    attention_bias=True,
    temporal_compression_ratio=4,
)
_COGVIDEOX_1_0 = dict(num_attention_heads=48, num_layers=42, patch_size_t=None, patch_bias=True, ofs_embed_dim=None)
_COGVIDEOX_1_5 = dict(num_attention_heads=48, num_layers=42, patch_size_t=2, patch_bias=False)
_SIZE_720 = dict(sample_frames=49, sample_height=60, sample_width=90)
_SIZE_1_5 = dict(sample_frames=81, sample_height=300, sample_width=300)
REAL_SIZES = {
    "2b": dict(
        label="CogVideoX-2b",
        variant="cogvideox-2b",
        height=480,
        width=720,
        num_frames=49,
        transformer=dict(
            _REAL_SHARED,
            **_COGVIDEOX_1_0 | dict(num_attention_heads=30, num_layers=30),
            **_SIZE_720,
            in_channels=16,
            use_rotary_positional_embeddings=False,
            use_learned_positional_embeddings=False,
        ),
    ),
    "5b": dict(
        label="CogVideoX-5b",
        variant="cogvideox-5b",
        height=480,
        width=720,
        num_frames=49,
        transformer=dict(
            _REAL_SHARED,
            **_COGVIDEOX_1_0,
            **_SIZE_720,
            in_channels=16,
            use_rotary_positional_embeddings=True,
            use_learned_positional_embeddings=False,
        ),
    ),
    "5b-i2v": dict(
        label="CogVideoX-5b-I2V",
        variant="cogvideox-5b-i2v",
        height=480,
        width=720,
        num_frames=49,
        transformer=dict(
            _REAL_SHARED,
            **_COGVIDEOX_1_0,
            **_SIZE_720,
            in_channels=32,
            use_rotary_positional_embeddings=True,
            use_learned_positional_embeddings=True,
        ),
    ),
    "1.5-5b": dict(
        label="CogVideoX1.5-5B",
        variant="cogvideox1.5-5b",
        height=768,
        width=1360,
        num_frames=81,
        transformer=dict(
            _REAL_SHARED,
            **_COGVIDEOX_1_5,
            **_SIZE_1_5,
            in_channels=16,
            ofs_embed_dim=None,
            use_rotary_positional_embeddings=True,
            use_learned_positional_embeddings=False,
        ),
    ),
    "1.5-5b-i2v": dict(
        label="CogVideoX1.5-5B-I2V",
        variant="cogvideox1.5-5b-i2v",
        height=768,
        width=1360,
        num_frames=81,
        transformer=dict(
            _REAL_SHARED,
            **_COGVIDEOX_1_5,
            **_SIZE_1_5,
            in_channels=32,
            ofs_embed_dim=512,
            use_rotary_positional_embeddings=True,
            use_learned_positional_embeddings=False,
        ),
    ),
}
SMALL_SIZES = {
    "tiny": dict(label="tiny CogVideoX-5B", variant="cogvideox-5b", height=64, width=96, num_frames=9),
    "faithful": dict(
        label="faithful CogVideoX-5B (8 heads, 2 layers)",
        variant="cogvideox-5b",
        height=160,
        width=240,
        num_frames=49,
        transformer=dict(
            _REAL_SHARED,
            **_COGVIDEOX_1_0 | dict(num_attention_heads=8, num_layers=2),
            sample_frames=49,
            sample_height=20,
            sample_width=30,
            in_channels=16,
            use_rotary_positional_embeddings=True,
            use_learned_positional_embeddings=False,
        ),
    ),
}
SIZES = {**SMALL_SIZES, **REAL_SIZES}

# The text encoder (T5 v1.1 XXL encoder) and VAE of the public checkpoints, for the end-to-end run (random weights).
T5_XXL = dict(
    vocab_size=32128,
    d_model=4096,
    d_kv=64,
    d_ff=10240,
    num_layers=24,
    num_heads=64,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    feed_forward_proj="gated-gelu",
    dropout_rate=0.0,
    layer_norm_epsilon=1e-6,
    pad_token_id=0,
    eos_token_id=1,
)
COGVIDEOX_VAE = dict(
    block_out_channels=(128, 256, 256, 512),
    layers_per_block=3,
    latent_channels=16,
    norm_num_groups=32,
    temporal_compression_ratio=4,
    sample_height=480,
    sample_width=720,
)

# Dense bf16 tensor-core peaks with fp32 accumulation, TFLOPS, by device name (first match wins). NVIDIA's datasheets
# list "with sparsity" figures; dense is half of them. `--peak-tflops` overrides; unknown devices get no utilisation.
BF16_DENSE_PEAK_TFLOPS = [
    (r"NVL", None, "NVL variants are not in this table: pass --peak-tflops"),
    (r"H100.*PCIe", 756, "NVIDIA H100 datasheet, PCIe: 1,513 with sparsity"),
    (r"H100", 989, "NVIDIA H100 datasheet, SXM: 1,979 with sparsity"),
    (r"H200", 989, "NVIDIA H200 datasheet, SXM: 1,979 with sparsity"),
    (r"A100\b", 312, "NVIDIA A100 datasheet: 624 with sparsity"),
    (r"L40S", 362, "NVIDIA L40S datasheet: 362.05, 733 with sparsity"),
    (r"\bL4\b", 121, "NVIDIA L4 datasheet: 242 with sparsity"),
    (r"RTX 4090", 165, "NVIDIA Ada Lovelace architecture whitepaper: 165.2 with fp32 accumulate"),
]

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def config_label(key, prompts, iterations):
    return config_spec(key)["label"].format(n=prompts, k=iterations)


# ---------------------------------------------------------------------------------------------------------------------
# Counting FLOPs on the meta device


def transformer_config(size: str) -> dict:
    """The `CogVideoXTransformer3DModel` configuration of `size` (tiny: the test suite's tiny checkpoint's)."""
    spec = SIZES[size]
    if "transformer" in spec:
        return dict(spec["transformer"])
    from cogvideox_ddim_inversion.testing.tiny_checkpoint import build_components

    config = build_components(spec["variant"])["transformer"].config
    return {key: value for key, value in config.items() if not key.startswith("_")}


def latent_frames(config: dict, num_frames: int) -> int:
    """Latent frames the transformer sees: (F - 1) / 4 + 1, padded in front to a multiple of `patch_size_t` (1.5)."""
    frames = (num_frames - 1) // config["temporal_compression_ratio"] + 1
    patch_size_t = config.get("patch_size_t") or 1
    return frames + (-frames) % patch_size_t


def video_tokens(config: dict, height: int, width: int, num_frames: int) -> int:
    patch, patch_size_t = config["patch_size"], config.get("patch_size_t") or 1
    return latent_frames(config, num_frames) // patch_size_t * (height // 8 // patch) * (width // 8 // patch)


def check_counter_sees_attention():
    """FlopCounterMode must count `scaled_dot_product_attention` on the meta device, or every count here is short."""
    from torch.utils.flop_counter import FlopCounterMode

    query = torch.empty(1, 2, 8, 4, device="meta")
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.scaled_dot_product_attention(query, query, query)
    if counter.get_total_flops() != 4 * 2 * 8 * 8 * 4:
        raise RuntimeError(
            f"torch {torch.__version__}'s FlopCounterMode counts {counter.get_total_flops()} FLOPs for an attention "
            f"of {4 * 2 * 8 * 8 * 4} on the meta device: the counts would miss attention. torch 2.13 counts it "
            "(the meta device runs attention's math path, whose matrix products the counter sees)."
        )


_transformers_on_meta, _counts = {}, {}


def count_layout_flops(
    config: dict,
    height: int,
    width: int,
    num_frames: int,
    sample_rows: int,
    reference_rows: int = 0,
    reference_processor: bool = False,
) -> dict:
    """FLOPs of one transformer call with `sample_rows` + `reference_rows` rows, counted on the meta device.

    The rows are laid out as the pipeline lays them out (latents padded for 1.5, image latents on the channels for
    image-to-video, `ofs` for 1.5-I2V, `reference_rows` passed through `attention_kwargs` to
    `CogVideoXRefAttnProcessor`). Returns `total`, `attention` (the matrix products of scaled_dot_product_attention,
    which on the meta device runs its math path as batched matmuls) and `linear` FLOPs (FLOPs = 2 x multiply-adds).
    """
    from diffusers import CogVideoXTransformer3DModel
    from torch.utils.flop_counter import FlopCounterMode

    from cogvideox_ddim_inversion import CogVideoXRefAttnProcessor

    layout = (json.dumps(config, sort_keys=True), height, width, num_frames, sample_rows, reference_rows)
    layout += (bool(reference_processor or reference_rows),)
    if layout in _counts:
        return _counts[layout]
    key = layout[0]
    if key not in _transformers_on_meta:
        with torch.device("meta"):
            _transformers_on_meta[key] = CogVideoXTransformer3DModel.from_config(config).eval()
    transformer = _transformers_on_meta[key]
    processor = CogVideoXRefAttnProcessor() if reference_processor or reference_rows else None
    transformer.set_attn_processor(processor if processor is not None else _default_processor())

    rows = sample_rows + reference_rows
    meta = dict(device="meta")
    hidden_states = torch.empty(
        rows, latent_frames(config, num_frames), config["in_channels"], height // 8, width // 8, **meta
    )
    text = torch.empty(rows, config["max_text_seq_length"], config["text_embed_dim"], **meta)
    kwargs = {}
    if config.get("use_rotary_positional_embeddings"):
        tokens = video_tokens(config, height, width, num_frames)
        kwargs["image_rotary_emb"] = tuple(torch.empty(tokens, config["attention_head_dim"], **meta) for _ in "cs")
    if config.get("ofs_embed_dim"):
        kwargs["ofs"] = torch.empty(1, **meta)  # one value for the batch, as the pipeline passes it
    if reference_rows:
        kwargs["attention_kwargs"] = {"reference_rows": reference_rows}
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        transformer(
            hidden_states=hidden_states,
            encoder_hidden_states=text,
            timestep=torch.empty(rows, dtype=torch.long, **meta),
            return_dict=False,
            **kwargs,
        )
    by_op = {str(op): flops for op, flops in counter.get_flop_counts()["Global"].items()}
    attention = by_op.get("aten.bmm", 0)
    total = counter.get_total_flops()
    _counts[layout] = {"total": total, "attention": attention, "linear": total - attention}
    return _counts[layout]


def _default_processor():
    from diffusers.models.attention_processor import CogVideoXAttnProcessor2_0

    return CogVideoXAttnProcessor2_0()


def step_layouts(key: str, steps: int, prompts: int, iterations: int) -> list[tuple[int, int, int, bool]]:
    """How configuration `key` spends `steps` denoising steps: (transformer calls, sample rows, reference rows,
    reference processor installed) for each batch layout it uses."""
    from cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline

    config = config_spec(key)
    if config["kind"] == "generate":
        return [(steps, 2, 0, bool(config.get("idle_processor")))]
    if config["kind"] == "invert":
        if config["guidance_scale"] > 1:
            return [(steps, 2, 0, False)]
        return [(steps * (1 + (iterations if config.get("fixed_point") else 0)), 1, 0, False)]
    if config.get("prompts"):  # N prompts editing one video: 2N sample rows read 1 reference row
        return [(steps, 2 * prompts, 1, True)]
    window = len(CogVideoXDDIMInversionPipeline.reference_step_window(config.get("reference_steps", 1.0), steps))
    reference_rows = 1 if config["reference_mode"] == "shared" else 2
    return [(window, 2, reference_rows, True), (steps - window, 2, 0, True)]


def count_config_flops(size: str, key: str, steps: int, prompts: int, iterations: int, config: dict | None = None):
    """Counted FLOPs per denoising (or inversion) step of configuration `key` at `size`, averaged over `steps`."""
    spec = SIZES[size]
    config = {k: v for k, v in (config or transformer_config(size)).items() if not k.startswith("_")}
    total = attention = rows = 0
    for calls, sample_rows, reference_rows, processor in step_layouts(key, steps, prompts, iterations):
        if calls == 0:
            continue
        flops = count_layout_flops(
            config, spec["height"], spec["width"], spec["num_frames"], sample_rows, reference_rows, processor
        )
        total += calls * flops["total"]
        attention += calls * flops["attention"]
        rows += calls * (sample_rows + reference_rows)
    return {
        "size": size,
        "config": key,
        "label": config_label(key, prompts, iterations),
        "rows_per_step": rows / steps,
        "flops_per_step": total / steps,
        "attention_flops_per_step": attention / steps,
        "video_tokens": video_tokens(config, spec["height"], spec["width"], spec["num_frames"]),
        "text_tokens": config["max_text_seq_length"],
    }


# A long clip in overlapping windows (cogvideox_ddim_windows.py): 30 s at 8 fps.
LONG_CLIP_FRAMES = 241
LONG_CLIP_CONFIGS = ("invert", "shared")  # what a long-clip edit runs: inversion, then the shared edit


def long_clip_windows(size: str, num_frames: int, config: dict | None = None):
    """The `WindowSchedule` a clip of `num_frames` runs in at `size` (default overlap), None on image-to-video
    checkpoints, which refuse long clips."""
    from cogvideox_ddim_inversion.cogvideox_ddim_checkpoint import is_image_to_video
    from cogvideox_ddim_inversion.cogvideox_ddim_windows import clip_windows

    config = config or transformer_config(size)
    temporal_compression = config["temporal_compression_ratio"]
    native = (config["sample_frames"] - 1) // temporal_compression + 1
    try:
        return clip_windows((num_frames - 1) // temporal_compression + 1, native, None, temporal_compression,
                            is_image_to_video(config))
    except ValueError:
        return None


def count_long_clip_flops(size: str, key: str, num_frames: int, steps: int, prompts: int, iterations: int,
                          config: dict | None = None) -> dict | None:
    """Counted FLOPs per step of configuration `key` on a clip of `num_frames` run in windows (None where refused).

    Every window is a native clip (the native latent frames, RoPE from 0, 1.5's padding frame per window) and the
    windows' calls are independent, so a step costs the windows' count times the native step: counted on one
    window's layout and multiplied (tests/test_speed_benchmark.py checks it against a real windowed run).
    """
    schedule = long_clip_windows(size, num_frames, config)
    if schedule is None:
        return None
    one_window = count_config_flops(size, key, steps, prompts, iterations, config)
    windows = schedule.num_windows
    return {
        **one_window,
        "num_frames": num_frames,
        "latent_frames": schedule.latent_frames,
        "window": schedule.window,
        "overlap": schedule.overlap,
        "windows": windows,
        "rows_per_step": windows * one_window["rows_per_step"],
        "flops_per_step": windows * one_window["flops_per_step"],
        "attention_flops_per_step": windows * one_window["attention_flops_per_step"],
    }


# ---------------------------------------------------------------------------------------------------------------------
# Measuring on the device


class DeviceTimer:
    """Seconds of device work: CUDA events on a GPU (queued work included), `time.perf_counter` on a CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.kind = "cuda events" if self.cuda else "perf_counter"

    def start(self):
        if self.cuda:
            self._start = torch.cuda.Event(enable_timing=True)
            self._start.record()
        else:
            self._start = time.perf_counter()

    def stop(self) -> float:
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            end.synchronize()
            return self._start.elapsed_time(end) / 1000
        return time.perf_counter() - self._start


def reset_peak_memory(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device: torch.device) -> float:
    """Peak allocated GPU memory since the last reset; on a CPU the process's peak resident memory (never reset)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_kind(device: torch.device) -> str:
    return "torch.cuda.max_memory_allocated" if device.type == "cuda" else "peak RSS of the process"


def build_transformer(size: str, device: torch.device, dtype: torch.dtype):
    """A randomly initialised transformer of `size`, created directly on `device` (nothing is downloaded)."""
    from diffusers import CogVideoXTransformer3DModel

    torch.manual_seed(0)
    with torch.device(device):
        transformer = CogVideoXTransformer3DModel.from_config(transformer_config(size))
    return transformer.to(dtype).eval().requires_grad_(False)


def build_pipeline(size: str, device: torch.device, dtype: torch.dtype, full: bool = False):
    """The pipeline with a `size` transformer. Text encoder and VAE are the tiny ones (unused by the step timings),
    or with `full` at a real size, T5-XXL and the CogVideoX VAE with random weights."""
    from diffusers import AutoencoderKLCogVideoX
    from transformers import T5Config, T5EncoderModel

    from cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline
    from cogvideox_ddim_inversion.testing.tiny_checkpoint import VARIANTS, build_components

    spec = SIZES[size]
    components = build_components(spec["variant"], seed=0)
    if full and size in REAL_SIZES:
        torch.manual_seed(0)
        with torch.device(device):  # cast one by one: T5-XXL and the transformer are ~20 GB each in fp32
            components["text_encoder"] = T5EncoderModel(T5Config(**T5_XXL)).to(dtype)
            components["vae"] = AutoencoderKLCogVideoX(
                **COGVIDEOX_VAE,
                scaling_factor=VARIANTS[spec["variant"]]["vae_scaling_factor"],
                invert_scale_latents=size.startswith("1.5"),  # as the 1.5 VAE configs set it
            ).to(dtype)
    components["transformer"] = build_transformer(size, device, dtype)
    for name in ("text_encoder", "vae", "transformer"):
        components[name].to(device=device, dtype=dtype).eval().requires_grad_(False)
    pipe = CogVideoXDDIMInversionPipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def apply_memory_config(pipe, memory: dict, device: torch.device, steps: int):
    """A `MEMORY_CONFIGS` entry's options on the built pipeline, with the memory module's own functions (torchao's
    `quantize_` stands in for loading with `quantization_config`: the transformer is built, not loaded)."""
    from cogvideox_ddim_inversion.cogvideox_ddim_memory import (
        TORCHAO_KEEP,
        MemoryOptions,
        cache_config,
        check_memory_options,
        enable_fp8_storage,
        enable_group_offload,
    )

    options = MemoryOptions(**{"offload": "none", **memory})
    try:
        check_memory_options(options, str(device))
    except ValueError as error:  # a row's error names the options as this script's flags
        raise ValueError(flag_message(error)) from None
    if options.weights == "fp8":
        enable_fp8_storage(pipe)
    if options.quantize is not None:
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, Int8WeightOnlyConfig, quantize_

        config = Int8WeightOnlyConfig() if options.quantize == "int8" else Float8DynamicActivationFloat8WeightConfig()
        quantize_(pipe.transformer, config, filter_fn=lambda module, name: isinstance(module, torch.nn.Linear)
                  and not any(name.startswith(keep) for keep in TORCHAO_KEEP))
    if options.offload.startswith("group"):
        pipe.to("cpu")  # offloaded: the weights live in host memory, onloaded a group at a time
        enable_group_offload(pipe, device, level="block" if options.offload == "group" else "leaf",
                             use_stream=device.type == "cuda")
    if options.cache is not None:
        pipe.transformer.enable_cache(cache_config(options, steps))


def compile_transformer(pipe, args):
    """`torch.compile` the whole transformer, or each of its blocks (regional compilation: one compiled graph reused
    by every block, so it compiles in a fraction of the time)."""
    options = {"backend": args.compile_backend, **({"mode": args.compile_mode} if args.compile_mode else {})}
    if args.compile_scope == "model":
        pipe.transformer.compile(**options)
    else:
        for block in pipe.transformer.transformer_blocks:
            block.compile(**options)


def dynamo_graphs() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def run_one(size: str, key: str, compiled: bool, args):
    """Measure configuration `key` in this process; print one JSON line."""
    from cogvideox_ddim_inversion import CogVideoXRefAttnProcessor

    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    rank = 0
    if args.context_parallel > 1:  # one of the processes torchrun started (`child`)
        from cogvideox_ddim_inversion.cogvideox_ddim_context_parallel import init_process_group_from_env

        rank, _, own_device = init_process_group_from_env("gloo" if device.type == "cpu" else None)
        device = device if device.type == "cpu" else own_device
    if device.type == "cpu":
        torch.set_num_threads(max(1, int(os.environ.get("BENCH_THREADS", "2")) // args.context_parallel))
    spec, config = SIZES[size], config_spec(key)
    pipe = build_pipeline(size, device, dtype)
    if args.context_parallel > 1:
        pipe.enable_context_parallel(args.context_parallel)
    steps = args.steps
    if config.get("memory"):
        apply_memory_config(pipe, config["memory"], device, steps)
    generator = torch.Generator().manual_seed(0)
    frames = (spec["num_frames"] - 1) // 4 + 1
    text_shape = (1, pipe.transformer.config.max_text_seq_length, pipe.transformer.config.text_embed_dim)

    def random(*shape):
        return torch.randn(*shape, generator=generator).to(device=device, dtype=dtype)

    latents = random(1, frames, 16, spec["height"] // 8, spec["width"] // 8)
    empty = random(*text_shape)
    prompt_rows = random(args.batch_prompts, *text_shape[1:])  # a different prompt in each row
    trajectory = random(steps, *latents.shape)
    image_latents = random(*latents.shape) if pipe.is_image_to_video else None
    image = {} if image_latents is None else {"image_latents": image_latents}
    rows = []
    pipe.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(kwargs["hidden_states"].shape[0]), with_kwargs=True
    )
    if config.get("idle_processor"):
        pipe.transformer.set_attn_processor(CogVideoXRefAttnProcessor())
    if compiled:
        compile_transformer(pipe, args)

    def call(num_steps):
        if config["kind"] == "invert":
            pipe.invert(
                latents=latents,
                prompt_embeds=empty,
                negative_prompt_embeds=empty,
                guidance_scale=config["guidance_scale"],
                num_inference_steps=num_steps,
                fixed_point_iterations=args.fixed_point_iterations if config.get("fixed_point") else 0,
                fixed_point_tolerance=None,  # always run the k iterations
                **image,
            )
        else:
            extra = {}
            if config["kind"] == "edit":
                extra = dict(
                    reference_latents=trajectory[:num_steps],
                    reference_prompt_embeds=empty,
                    reference_mode=config["reference_mode"],
                    reference_steps=config.get("reference_steps", 1.0),
                )
            prompts = args.batch_prompts if config.get("prompts") else 1  # N prompts, one video
            pipe(
                prompt_embeds=prompt_rows[:prompts],
                negative_prompt_embeds=empty.expand(prompts, -1, -1),
                latents=latents,
                guidance_scale=GUIDANCE,
                num_inference_steps=num_steps,
                output_type="latent",
                **image,
                **extra,
            )

    timer = DeviceTimer(device)
    from cogvideox_ddim_inversion.cogvideox_ddim_memory import BlockEvaluationCounter

    with torch.no_grad():
        call(2)  # warm-up: both layouts of a step window, compilation, kernel selection
        rows.clear()
        graphs = dynamo_graphs()
        reset_peak_memory(device)
        with BlockEvaluationCounter(pipe.transformer) as blocks:
            timer.start()
            call(steps)
            elapsed = timer.stop()
    label = config_label(key, args.batch_prompts, args.fixed_point_iterations)
    blocks_run = blocks.evaluations / (steps * len(blocks.blocks) * (1 + args.fixed_point_iterations
                                                                      if config.get("fixed_point") else 1))
    if config.get("memory", {}).get("cache"):
        label += f" ({100 * blocks_run:.0f}% of block evaluations run)"
    result = {
        "size": size,
        "config": key,
        "label": label,
        "blocks_run_fraction": blocks_run,
        "compiled": compiled,
        "steps": steps,
        "rows_per_step": sum(rows) / steps,
        "seconds_per_step": elapsed / steps,
        "peak_memory_mib": peak_memory_mib(device),
        "memory_kind": memory_kind(device),
        "timer": timer.kind,
    }
    if compiled:
        result["graphs_compiled_in_measured_call"] = dynamo_graphs() - graphs
    result["context_parallel"] = args.context_parallel
    if rank == 0:
        print(json.dumps(result))
    if args.context_parallel > 1:
        torch.distributed.destroy_process_group()


def flag_message(error: Exception) -> str:
    """The error's message; a `ParameterError` (a memory option's) names the options as the command line's flags
    (`--quantize`), as the edit command does."""
    from cogvideox_ddim_inversion.cogvideox_ddim_errors import ParameterError, render

    if isinstance(error, ParameterError):
        return render(error.template, lambda name: "--" + name.replace("_", "-"))
    return str(error)


def describe(error: Exception) -> str:
    """The error's type and first line, for a table cell (options named as flags: `flag_message`)."""
    message = flag_message(error)
    return f"{type(error).__name__}: {message.strip().splitlines()[0] if message.strip() else ''}"[:200]


def run_end_to_end(size: str, offload: str, args):
    """One whole edit in this process: text encoding, VAE encoding, inversion, edit, tiled VAE decoding."""
    import numpy as np

    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    if device.type == "cpu":
        torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    spec = SIZES[size]
    steps = args.e2e_steps if offload == "none" else args.offload_steps
    result = {"size": size, "offload": offload, "steps": steps, "memory_kind": memory_kind(device)}
    pipe = build_pipeline(size, device, dtype, full=True)
    try:
        if offload == "model":
            pipe.to("cpu")
            pipe.enable_model_cpu_offload(device=device)
        elif offload == "sequential":
            pipe.to("cpu")
            pipe.enable_sequential_cpu_offload(device=device)
    except Exception as error:  # e.g. an offload mode that needs an accelerator, on a CPU
        result["error"] = describe(error)
        print(json.dumps(result))
        return
    pipe.vae.enable_tiling()
    frames = np.random.default_rng(0).integers(0, 256, (spec["num_frames"], spec["height"], spec["width"], 3))
    frames = frames.astype(np.uint8)
    timer, phases = DeviceTimer(device), {}

    def phase(name, function):
        timer.start()
        output = function()
        phases[name] = timer.stop()
        return output

    reset_peak_memory(device)
    try:
        with torch.no_grad():
            prompt_embeds, negative_embeds = phase(
                "text encoding",
                lambda: pipe.encode_prompt(
                    "a zebra running across a field",
                    "",
                    do_classifier_free_guidance=True,
                    max_sequence_length=pipe.transformer.config.max_text_seq_length,
                    device=device,
                    dtype=dtype,
                ),
            )

            def encode():
                video, _ = pipe.preprocess_source_video(frames, spec["height"], spec["width"], spec["num_frames"])
                latents = pipe.prepare_video_latents(video, dtype, device)
                image_latents = None
                if pipe.is_image_to_video:
                    image_latents = pipe.prepare_image_latents(video[:, :, 0], latents.shape[1], dtype, device)
                return latents, image_latents

            latents, image_latents = phase("VAE encoding", encode)
            image = {} if image_latents is None else {"image_latents": image_latents}
            inversion = phase(
                "inversion",
                lambda: pipe.invert(
                    latents=latents, prompt_embeds=negative_embeds, num_inference_steps=steps, **image
                ),
            )
            edited = phase(
                "edit",
                lambda: (
                    pipe(
                        prompt_embeds=prompt_embeds,
                        negative_prompt_embeds=negative_embeds,
                        latents=inversion.trajectory[0],
                        reference_latents=inversion.trajectory,
                        reference_prompt_embeds=negative_embeds,
                        num_inference_steps=steps,
                        guidance_scale=GUIDANCE,
                        output_type="latent",
                        **image,
                    ).frames
                ),
            )
            video = phase(
                "tiled VAE decoding",
                lambda: pipe.video_processor.postprocess_video(pipe.decode_latents(edited), output_type="np"),
            )
    except Exception as error:
        result["error"] = describe(error)
        print(json.dumps(result))
        return
    result.update(
        seconds=phases,
        total_seconds=sum(phases.values()),
        peak_memory_mib=peak_memory_mib(device),
        frames=int(video.shape[1]),
        timer=timer.kind,
    )
    print(json.dumps(result))


# ---------------------------------------------------------------------------------------------------------------------
# Orchestration and tables


def device_peak(args) -> tuple[float | None, str]:
    """Dense bf16 peak TFLOPS of the device and where the figure comes from."""
    if args.peak_tflops:
        return args.peak_tflops, "--peak-tflops"
    if not args.device.startswith("cuda"):
        return None, "no peak for CPUs: pass --peak-tflops"
    name = torch.cuda.get_device_name(torch.device(args.device))
    for pattern, peak, source in BF16_DENSE_PEAK_TFLOPS:
        if re.search(pattern, name):
            return peak, source
    return None, f"{name} is not in BF16_DENSE_PEAK_TFLOPS: pass --peak-tflops"


def child(args, *extra) -> dict:
    launcher = [sys.executable]
    if args.context_parallel > 1 and extra[0] == "--one":  # the end-to-end runs stay on one process
        launcher = [os.path.join(os.path.dirname(sys.executable), "torchrun"), "--nproc_per_node",
                    str(args.context_parallel), "--master_port", str(free_port())]
    command = [
        *launcher,
        os.path.abspath(__file__),
        *extra,
        "--context-parallel",
        str(args.context_parallel if extra[0] == "--one" else 1),
        "--device",
        args.device,
        "--dtype",
        args.dtype,
        "--steps",
        str(args.steps),
        "--batch-prompts",
        str(args.batch_prompts),
        "--fixed-point-iterations",
        str(args.fixed_point_iterations),
        "--compile-backend",
        args.compile_backend,
        "--compile-scope",
        args.compile_scope,
        *(["--compile-mode", args.compile_mode] if args.compile_mode else []),
        "--e2e-steps",
        str(args.e2e_steps),
        "--offload-steps",
        str(args.offload_steps),
    ]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:  # e.g. out of memory: report it in the table and go on with the others
        print(completed.stderr[-3000:], file=sys.stderr)
        last_line = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit code {completed.returncode}: {last_line}"[:200]}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure(args) -> list[dict]:
    """Every configuration x size x compile mode, `repeats` times round robin; the fastest run of each is kept."""
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    jobs = [(size, key, compiled) for size in args.sizes for compiled in modes for key in args.configs]
    best = {}
    for repeat in range(args.repeats):
        for index, (size, key, compiled) in enumerate(jobs):
            result = child(args, "--one", size, key, "on" if compiled else "off")
            result = {"size": size, "config": key, "compiled": compiled, **result}
            result.setdefault("label", config_label(key, args.batch_prompts, args.fixed_point_iterations))
            outcome = result.get("error") or (  # the log keeps each row even if a later one stops the run
                f"{result['seconds_per_step']:.3f} s/step, {result['rows_per_step']:g} rows/step, "
                f"peak {result['peak_memory_mib']:.0f} MiB")
            print(
                f"[{repeat + 1}/{args.repeats} {index + 1}/{len(jobs)}] {size} {key}"
                f"{' compiled' if compiled else ''}: {outcome}",
                file=sys.stderr,
                flush=True,
            )
            job = (size, key, compiled)
            if (
                job not in best
                or "error" in best[job]
                or result.get("seconds_per_step", 1e300) < best[job].get("seconds_per_step", 1e300)
            ):
                best[job] = result
    return [best[job] for job in jobs]


def attach_flops(results, counted, peak):
    """Counted FLOPs per step, achieved TFLOPS and utilisation of each measured configuration."""
    by_key = {(c["size"], c["config"]): c for c in counted}
    for result in results:
        if "error" in result:
            continue
        count = by_key[(result["size"], result["config"])]
        if abs(count["rows_per_step"] - result["rows_per_step"]) > 1e-9:
            result["error"] = (
                f"the pipeline ran {result['rows_per_step']} rows per step, the FLOP count assumes "
                f"{count['rows_per_step']}: update step_layouts()"
            )
            continue
        result["flops_per_step"] = count["flops_per_step"]
        result["tflops"] = count["flops_per_step"] / result["seconds_per_step"] / 1e12
        devices = result.get("context_parallel", 1)  # the step's FLOPs over its time: all devices' throughput
        result["utilisation"] = None if peak is None else result["tflops"] / (peak * devices)


RATIOS = [
    ("invert g1 / published invert", "invert", "invert-published"),
    ("shared / paired", "shared", "paired"),
    ("50% window / plain", "shared-window", "plain"),
    ("idle processor / plain", "plain-idle", "plain"),
]


def measured_table(results, environment) -> list[str]:
    lines = [
        f"Measured on {environment['device_name']} ({environment['dtype']}, torch {environment['torch']}), "
        f"{environment['steps']} steps per configuration after a 2-step warm-up, fastest of {environment['repeats']} "
        f"run(s); seconds from {environment['timer']}, memory = {environment['memory_kind']}; utilisation against "
        f"{environment['peak_tflops']} TFLOPS ({environment['peak_source']})"
        + (f"; the transformer on {environment['context_parallel']} processes (context parallelism), process 0's "
           "seconds and memory, utilisation of all devices together."
           if environment.get("context_parallel", 1) > 1 else "."),
        "",
        "| size | configuration | compiled | rows/step | s/step | x plain | TFLOP/step | TFLOPS | utilisation "
        "| peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        if "error" in result:
            lines.append(
                f"| {result['size']} | {result['label']} | {'yes' if result['compiled'] else 'no'} | "
                f"failed: {result['error']} |"
            )
            continue
        base = next(
            (
                r
                for r in results
                if (r["size"], r["config"], r["compiled"]) == (result["size"], "plain", result["compiled"])
                and "error" not in r
            ),
            None,
        )
        relative = f"{result['seconds_per_step'] / base['seconds_per_step']:.2f}" if base else "-"
        utilisation = "-" if result["utilisation"] is None else f"{100 * result['utilisation']:.1f}%"
        lines.append(
            f"| {result['size']} | {result['label']} | {'yes' if result['compiled'] else 'no'} | "
            f"{result['rows_per_step']:g} | {result['seconds_per_step']:.3f} | {relative} | "
            f"{result['flops_per_step'] / 1e12:.4g} | {result['tflops']:.3g} | {utilisation} | "
            f"{result['peak_memory_mib']:.0f} |"
        )
    for size, compiled in dict.fromkeys((r["size"], r["compiled"]) for r in results):
        get = {
            r["config"]: r["seconds_per_step"]
            for r in results
            if (r["size"], r["compiled"]) == (size, compiled) and "error" not in r
        }
        ratios = [f"{name} = {get[a] / get[b]:.2f}" for name, a, b in RATIOS if a in get and b in get]
        if "batch" in get and "shared" in get:
            prompts = environment["prompts"]
            ratios.append(
                f"{prompts} prompts batched / {prompts} shared edits = {get['batch'] / (prompts * get['shared']):.2f}"
            )
        if ratios:
            lines += ["", f"{size}{', compiled' if compiled else ''}, time ratios: " + "; ".join(ratios)]
    return lines


def end_to_end_table(results, environment) -> list[str]:
    lines = [
        "",
        f"End to end, one edit ({environment['dtype']}, memory = {environment['memory_kind']}):",
        "",
        "| size | offload | steps | text encoding s | VAE encoding s | inversion s | edit s | tiled VAE decoding s "
        "| total s | peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        if "error" in result:
            lines.append(f"| {result['size']} | {result['offload']} | {result['steps']} | failed: {result['error']} |")
            continue
        lines.append(
            f"| {result['size']} | {result['offload']} | {result['steps']} | "
            + " | ".join(f"{seconds:.2f}" for seconds in result["seconds"].values())
            + f" | {result['total_seconds']:.2f} | {result['peak_memory_mib']:.0f} |"
        )
    return lines


def counted_table(counted, sizes, prompts, iterations, long_clip=None) -> list[str]:
    """Rows: configurations; columns: sizes. TFLOP per step, then the ratios the goals use, then `long_clip`
    (`count_long_clip_flops` of `LONG_CLIP_CONFIGS` at each size) when given."""
    get = {(c["size"], c["config"]): c for c in counted}
    keys = list(dict.fromkeys(c["config"] for c in counted))
    first = [get[(s, keys[0])] for s in sizes]
    lines = [
        "",
        "Counted FLOPs per step, TFLOP (torch.utils.flop_counter.FlopCounterMode on the meta device; 50 steps; "
        "FLOPs = 2 x multiply-adds):",
        "",
        "| configuration | rows/step | " + " | ".join(SIZES[s]["label"] for s in sizes) + " |",
        "|---|---|" + "---|" * len(sizes),
        "| frames x width x height (video + text tokens per row) | | "
        + " | ".join(
            f"{SIZES[c['size']]['num_frames']}x{SIZES[c['size']]['width']}x{SIZES[c['size']]['height']} "
            f"({c['video_tokens']} + {c['text_tokens']})"
            for c in first
        )
        + " |",
    ]
    for key in keys:
        cells = [get[(s, key)]["flops_per_step"] / 1e12 for s in sizes]
        lines.append(
            f"| {get[(sizes[0], key)]['label']} | {get[(sizes[0], key)]['rows_per_step']:g} | "
            + " | ".join(f"{c:.0f}" if c >= 1000 else f"{c:.4g}" for c in cells)
            + " |"
        )

    def ratio(name, numerator, denominator, scale=1):
        if all((s, numerator) in get and (s, denominator) in get for s in sizes):
            cells = [
                get[(s, numerator)]["flops_per_step"] / (scale * get[(s, denominator)]["flops_per_step"])
                for s in sizes
            ]
            lines.append(f"| {name} | | " + " | ".join(f"{c:.3f}" for c in cells) + " |")

    if "plain" in keys:
        shares = [get[(s, "plain")]["attention_flops_per_step"] / get[(s, "plain")]["flops_per_step"] for s in sizes]
        lines.append("| attention share of plain generation | | " + " | ".join(f"{c:.2f}" for c in shares) + " |")
    for name, numerator, denominator in RATIOS[:3]:
        ratio(f"ratio: {name}", numerator, denominator)
    ratio(f"ratio: {prompts} prompts batched / {prompts} shared edits", "batch", "shared", scale=prompts)
    ratio("ratio: shared edit / plain", "shared", "plain")
    ratio(f"ratio: {iterations} fixed-point iterations / invert", "invert-fixed-point", "invert")
    memory = []
    for s in sizes:
        spec, config = SIZES[s], transformer_config(s)
        frames = (spec["num_frames"] - 1) // 4 + 1
        latent_bytes = frames * 16 * (spec["height"] // 8) * (spec["width"] // 8) * 2
        tokens = get[(s, keys[0])]["video_tokens"] + config["max_text_seq_length"]
        hidden = config["num_attention_heads"] * config["attention_head_dim"]
        kv_bytes = config["num_layers"] * 2 * tokens * hidden * 2 * 50
        memory.append(f"{50 * latent_bytes / 2**20:.0f} MiB / {kv_bytes / 2**30:.0f} GiB")
    lines.append("| reference of 50 steps, bf16: trajectory / K,V cache instead | | " + " | ".join(memory) + " |")
    if long_clip:
        lines += long_clip_rows(long_clip, get, sizes)
    return lines


def long_clip_rows(long_clip, get, sizes) -> list[str]:
    """The counted table's rows for a long clip in windows: its windows, the inversion and shared edit per step, and
    a 50-step inversion + edit against the native clip's (image-to-video checkpoints refuse long clips)."""
    long = {(c["size"], c["config"]): c for c in long_clip if c is not None}
    frames = next(c["num_frames"] for c in long.values()) if long else LONG_CLIP_FRAMES
    refused = "refused (I2V)"

    def cells(function):
        return " | ".join(function(s) if (s, "invert") in long else refused for s in sizes)

    def run_flops(s, table):  # a 50-step inversion + a 50-step shared edit, PFLOP
        return 50 * sum(table[(s, key)]["flops_per_step"] for key in LONG_CLIP_CONFIGS) / 1e15

    lines = [f"| {frames} frames ({(frames - 1) / 8:g} s at 8 fps) in windows: latent frames, windows of W "
             "overlapping by O, windows = ceil((F - O) / (W - O)) | | "
             + cells(lambda s: f"{long[(s, 'invert')]['latent_frames']}: {long[(s, 'invert')]['windows']} of "
                     f"{long[(s, 'invert')]['window']} by {long[(s, 'invert')]['overlap']}") + " |"]
    for key in LONG_CLIP_CONFIGS:
        label = get[(sizes[0], key)]["label"]
        rows = get[(sizes[0], key)]["rows_per_step"]
        lines.append(f"| {label}, {frames} frames in windows | {rows:g} x windows | "
                     + cells(lambda s: f"{long[(s, key)]['flops_per_step'] / 1e12:.0f}") + " |")
    lines.append(f"| invert + shared edit, 50 steps each, PFLOP: native clip / {frames} frames | | "
                 + cells(lambda s: f"{run_flops(s, get):.1f} / {run_flops(s, long):.1f}") + " |")
    lines.append(f"| ratio: {frames} frames / native clip (= windows) | | "
                 + cells(lambda s: f"{run_flops(s, long) / run_flops(s, get):.3f}") + " |")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", default=None, choices=list(SIZES),
                        help="sizes to measure (none: only the end-to-end edit and the counted table)")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=[*CONFIGS, *MEMORY_CONFIGS],
                        help="default: every configuration of CONFIGS; the memory rungs and caches on request: "
                        + ", ".join(MEMORY_CONFIGS))
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--dtype", default=None, choices=list(DTYPES), help="default: bf16 on CUDA, fp32 on a CPU")
    parser.add_argument(
        "--steps", type=int, default=4, help="measured steps per configuration (after a 2-step warm-up)"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="runs per configuration, fastest kept (CPU 2, GPU 1)"
    )
    parser.add_argument(
        "--compile", choices=["off", "on", "both"], default=None, help="default: both on CUDA, off on CPU"
    )
    parser.add_argument("--compile-backend", default="inductor")
    parser.add_argument("--compile-mode", default=None, help="torch.compile mode, e.g. max-autotune")
    parser.add_argument(
        "--compile-scope",
        choices=["blocks", "model"],
        default="blocks",
        help="compile each transformer block (regional, fast to compile) or the whole transformer",
    )
    parser.add_argument("--batch-prompts", type=int, default=4, help="N of the batched-prompts configuration")
    parser.add_argument("--fixed-point-iterations", type=int, default=2, help="k of the fixed-point configuration")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's dense peak, for utilisation")
    parser.add_argument(
        "--context-parallel", type=int, default=1, metavar="N",
        help="run each measured configuration on N processes (torchrun), the video tokens spread over them",
    )
    parser.add_argument(
        "--e2e",
        default=None,
        choices=["none", "tiny", *REAL_SIZES],
        help="end-to-end edit size (5b on CUDA, else tiny)",
    )
    parser.add_argument("--e2e-steps", type=int, default=50)
    parser.add_argument(
        "--offload",
        nargs="+",
        default=None,
        choices=["none", "model", "sequential"],
        help="end-to-end edits to run: without offloading (--e2e-steps), with enable_model_cpu_offload and with "
        "enable_sequential_cpu_offload (--offload-steps). Default: all three on CUDA; none and model on a CPU, where "
        "diffusers' sequential offload fails (for CogVideoXPipeline too)",
    )
    parser.add_argument("--offload-steps", type=int, default=2, help="steps of the offloaded end-to-end edits")
    parser.add_argument(
        "--count-sizes",
        nargs="*",
        default=list(REAL_SIZES),
        choices=list(SIZES),
        help="sizes of the counted FLOP table (none: no values)",
    )
    parser.add_argument(
        "--long-clip-frames", type=int, default=LONG_CLIP_FRAMES, metavar="F",
        help="count an inversion and a shared edit of a clip of F frames in windows too, in the counted table "
        "(default %(default)s: 30 s at 8 fps; 0: none)",
    )
    parser.add_argument("--flops-only", action="store_true", help="only print the counted FLOP table")
    parser.add_argument("--json", default=None, help="write every result to this JSON file")
    parser.add_argument("--markdown", default=None, help="also write the printed tables to this file")
    parser.add_argument("--one", nargs=3, metavar=("SIZE", "CONFIG", "COMPILE"), help=argparse.SUPPRESS)
    parser.add_argument("--e2e-one", nargs=2, metavar=("SIZE", "OFFLOAD"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    cuda = args.device.startswith("cuda")
    args.dtype = args.dtype or ("bf16" if cuda else "fp32")
    if args.one:
        run_one(args.one[0], args.one[1], args.one[2] == "on", args)
        return
    if args.e2e_one:
        run_end_to_end(*args.e2e_one, args)
        return

    # Check everything that can be wrong before any long work.
    if args.steps < 2 or args.steps % 2:
        parser.error(f"--steps {args.steps}: pass an even number >= 2 (the 50% step window needs whole halves).")
    if args.batch_prompts < 1 or args.fixed_point_iterations < 1:
        parser.error("--batch-prompts and --fixed-point-iterations must be >= 1.")
    if args.long_clip_frames and (args.long_clip_frames < 1 or (args.long_clip_frames - 1) % 4):
        parser.error(f"--long-clip-frames {args.long_clip_frames}: pass 4k + 1 frames (e.g. 241), or 0 for none.")
    if not args.device.startswith(("cpu", "cuda")):
        parser.error(f"--device {args.device}: use cpu, cuda or cuda:N.")
    if cuda and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch {torch.__version__} sees no CUDA device; use --device cpu.")
    if args.context_parallel < 1:
        parser.error(f"--context-parallel {args.context_parallel}: pass a number of processes >= 1.")
    if args.context_parallel > 1 and cuda and torch.cuda.device_count() < args.context_parallel:
        parser.error(f"--context-parallel {args.context_parallel} needs a GPU per process; "
                     f"{torch.cuda.device_count()} are visible.")
    default_sizes = ["5b"] if cuda else ["tiny", "faithful"]
    sizes = [] if args.flops_only else (default_sizes if args.sizes is None else args.sizes)
    e2e = None if args.flops_only else (args.e2e or ("5b" if cuda else "tiny"))
    e2e = None if e2e == "none" else e2e
    if not cuda and any(size in REAL_SIZES for size in sizes + [e2e]):
        parser.error("the real sizes need a GPU: pass --device cuda, or measure --sizes tiny faithful on a CPU.")
    args.repeats = args.repeats or (1 if cuda else 2)
    args.compile = args.compile or ("both" if cuda else "off")
    args.offload = args.offload or (["none", "model", "sequential"] if cuda else ["none", "model"])
    args.sizes, args.configs = sizes, args.configs
    check_counter_sees_attention()

    peak, peak_source = device_peak(args)
    environment = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name(torch.device(args.device)) if cuda else "CPU",
        "dtype": args.dtype,
        "torch": torch.__version__,
        "steps": args.steps,
        "repeats": args.repeats,
        "prompts": args.batch_prompts,
        "fixed_point_iterations": args.fixed_point_iterations,
        "peak_tflops": peak,
        "peak_source": peak_source,
        "timer": DeviceTimer(torch.device(args.device)).kind,
        "memory_kind": memory_kind(torch.device(args.device)),
        "threads": None if cuda else int(os.environ.get("BENCH_THREADS", "2")),
        "context_parallel": args.context_parallel,
    }

    measured = measure(args) if sizes else []
    end_to_end = []
    for offload in args.offload if e2e else []:
        steps = args.e2e_steps if offload == "none" else args.offload_steps
        end_to_end.append({"size": e2e, "offload": offload, "steps": steps, **child(args, "--e2e-one", e2e, offload)})
        print(f"[end to end] {e2e}, offload {offload}: {json.dumps(end_to_end[-1])}", file=sys.stderr, flush=True)
    prompts, iterations = args.batch_prompts, args.fixed_point_iterations
    attach_flops(
        measured,
        [count_config_flops(r["size"], r["config"], args.steps, prompts, iterations) for r in measured],
        peak,
    )
    counted = [count_config_flops(s, key, 50, prompts, iterations) for s in args.count_sizes for key in CONFIGS]
    long_clip = [count_long_clip_flops(s, key, args.long_clip_frames, 50, prompts, iterations)
                 for s in args.count_sizes for key in LONG_CLIP_CONFIGS] if args.long_clip_frames else []

    lines = []
    if measured:
        lines += measured_table(measured, environment)
    if end_to_end:
        lines += end_to_end_table(end_to_end, environment)
    if counted:
        lines += counted_table(counted, args.count_sizes, prompts, iterations, long_clip)
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as f:
            results = {"environment": environment, "measured": measured, "end_to_end": end_to_end, "counted": counted,
                       "long_clip": [c for c in long_clip if c is not None]}
            json.dump(results, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(lines) + "\n")
    failed = [r for r in measured + end_to_end if "error" in r]
    if failed:
        sys.exit(f"{len(failed)} measurement(s) failed (see the tables); the others are in the outputs.")


if __name__ == "__main__":
    main()
