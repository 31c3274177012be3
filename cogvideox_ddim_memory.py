"""Fitting a CogVideoX pipeline into memory and making its steps cheaper, with diffusers' and torchao's own machinery.

The entry points build one `MemoryOptions`, call `check_memory_options` before any weights load, pass
`quantization_config(options)` to `from_pretrained`, then `apply_memory_options(pipe, options, device)` after loading.
The pipeline wraps `invert()` in `inversion_cache(transformer, options.cache_inversion)`: a step cache decides to skip
from how much the first block's output changed since the last call, and the fixed-point refinement of inversion calls
the transformer repeatedly at one timestep with inputs that barely change, so a cache would skip exactly the
evaluations that make the round trip exact.

Rungs, from the most to the least resident weights: `none` (all on the GPU), `model` (one model at a time),
`group` (block-level group offloading: one transformer block and the next one prefetched on CUDA streams),
`group-leaf` (leaf-level group offloading: one layer and the next), `sequential` (accelerate's one layer at a time,
no prefetch). `counted_bytes` counts what each rung keeps on the GPU from the checkpoint's configs built on the meta
device; `choose_offload` picks the first rung that fits beside the activations.

The step caches around inversion (`without_step_cache`, ...) live in `cogvideox_ddim_step_cache`, the record of the
weights' 8-bit storage (`weights_storage`, `check_weights_storage`) in `cogvideox_ddim_weights_storage`; both are
re-exported here. Messages name `MemoryOptions` fields as `{field}` templates (`ParameterError`), which each front end
renders in its own words (the command line as its flags).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import re
from collections.abc import Mapping

from .cogvideox_ddim_choices import CACHES, OFFLOAD_MODES, OFFLOAD_RUNGS, QUANTIZE, WEIGHTS  # noqa: F401
from .cogvideox_ddim_errors import ParameterError
from .cogvideox_ddim_step_cache import (  # noqa: F401  (re-exported: callers import them from here)
    BlockEvaluationCounter,
    cache_context,
    cache_disabled,
    calibrate_mag_ratios,
    inversion_cache,
    match_cache_to_steps,
    without_step_cache,
)
from .cogvideox_ddim_weights_storage import (  # noqa: F401  (re-exported)
    STORAGE_OPTIONS,
    check_weights_storage,
    expected_weights_storage,
    weights_storage,
)


GiB = 1024**3
# What `offload="auto"` keeps free beside the weights on the GPU: the CogVideoX-5b model card reports a 20.7 GB peak
# with model offload and VAE tiling, of which the bf16 transformer is about 11 GB, so about 10 GB is activations and
# the VAE's tiled decode (editing.ACTIVATION_HEADROOM_BYTES, the same reasoning).
ACTIVATION_HEADROOM_BYTES = 10 * GiB
# Tokens the transformer attends over at each family's native size, the headroom above is CogVideoX-5B's (13 latent
# frames of 30x45 patches); 1.5-5B at 1360x768, 81 frames has 11 frame patches of 48x85: its headroom is scaled by the
# token ratio (an estimate: no peak for it is documented).
NATIVE_TOKENS = {"cogvideox-5b": 13 * 30 * 45, "cogvideox1.5-5b": 11 * 48 * 85}

TAYLORSEER_BLOCKS = r"transformer_blocks\.\d+"  # the modules TaylorSeer predicts between full steps
DEFAULT_CACHE_THRESHOLDS = {"first-block": 0.05, "mag": 0.06}  # diffusers' defaults
# Caches diffusers has that cannot serve this pipeline, and why.
REFUSED_CACHES = {
    "faster": (
        "FasterCache splits the transformer's batch with chunk(2) assuming [unconditional, conditional] halves; this "
        "pipeline's batch is [sample rows, reference rows], so it would mix the source's rows into the guidance. "
        "Use {cache} first-block, mag or taylorseer."
    ),
    "pab": (
        "PyramidAttentionBroadcast reads the pipeline's current timestep, which the ascending inversion pass and the "
        "reference rows' own timesteps do not follow. Use {cache} first-block, mag or taylorseer."
    ),
}
# Transformer modules torchao leaves unquantized: the patch embedding (small; 1.5's is a Linear whose weight the
# pipeline digests into the inversion fingerprint with `Tensor.view(dtype)`, which torchao's int8 tensors lack).
TORCHAO_KEEP = ("patch_embed",)
TORCHAO_INSTALL = 'pip install "cogvideox-ddim-inversion[quantization]"'
TORCHAO_MIN_VERSION = "0.15.0"  # diffusers 0.42's TorchAoConfig refuses older versions
FP8_COMPUTE_CAPABILITY = (8, 9)  # Ada and Hopper: the first GPUs with fp8 matrix multiplication
# Layers layerwise casting keeps in the compute dtype in T5: the embedding, norms, and the feed-forward output `wo`,
# whose input T5 casts to `wo.weight.dtype` itself (it would multiply fp8 activations).
T5_SKIP_PATTERNS = ("shared", "embed_tokens", "layer_norm", "relative_attention_bias", r"\.wo$")


@dataclasses.dataclass(frozen=True)
class MemoryOptions:
    """How to fit the pipeline into memory and how to make its steps cheaper.

    - `weights`: `"bf16"` keeps the weights in the load dtype; `"fp8"` stores the transformer's (and, with
      `quantize_text_encoder`, the T5 encoder's) linear and convolution weights in float8_e4m3fn and upcasts each
      layer to the compute dtype just for its forward (diffusers' layerwise casting): half the bytes, compute as
      before, any device.
    - `quantize`: `None`, `"int8"` (torchao int8 weight-only: int8 weights with per-row scales, runs on the CPU
      too) or `"fp8"` (torchao fp8 dynamic activation and weight: fp8 matrix multiplication, CUDA with compute
      capability 8.9 or more). Applied while loading (`quantization_config`). Pair it with torch.compile: without it
      quantization saves memory but no time.
    - `quantize_text_encoder`: apply `weights="fp8"` or `quantize` to the T5 encoder too (9.5 GB in bf16 at 5B).
    - `offload`: one of `OFFLOAD_RUNGS`, or `"auto"` for the first one whose counted bytes fit the free memory.
    - `offload_streams`: prefetch the next group on CUDA streams while the current one runs (`None`: where CUDA
      exists).
    - `cache`: `None`, `"first-block"` (skip the other blocks when the first block's output changed less than
      `cache_threshold` relative to the previous step), `"mag"` (MagCache: skip while the accumulated magnitude ratio
      error stays under `cache_threshold`; needs `mag_ratios` calibrated for the checkpoint) or `"taylorseer"`
      (compute fully every `cache_interval` steps, predict the blocks' outputs in between with Taylor series).
      Caches apply to edits; `invert()` runs without one unless `cache_inversion` is set.
    """

    weights: str = "bf16"
    quantize: str | None = None
    quantize_text_encoder: bool = False
    offload: str = "auto"
    offload_streams: bool | None = None
    cache: str | None = None
    cache_threshold: float | None = None
    cache_interval: int = 5
    cache_inversion: bool = False
    mag_ratios: tuple[float, ...] | None = None

    def record(self) -> dict:
        """The options as plain values, for run.json."""
        return dataclasses.asdict(self)


def _device_type(device) -> str:
    return str(device).split(":")[0]


def torchao_version() -> str | None:
    try:
        return importlib.metadata.version("torchao")
    except importlib.metadata.PackageNotFoundError:
        return None


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def check_memory_options(options: MemoryOptions, device: str = "cuda", compute_capability: tuple | None = None):
    """Refuse, with a message naming the fix, options that cannot work on `device`: call before any weights load.
    `compute_capability` is the GPU's (read from torch when `None` and CUDA is present)."""
    choices = {"weights": WEIGHTS, "quantize": (None, *QUANTIZE), "offload": OFFLOAD_MODES}
    for name, allowed in choices.items():
        if getattr(options, name) not in allowed:
            raise ParameterError(name, f"Unknown {{{name}}} {getattr(options, name)!r}; choose one of "
                                 f"{', '.join(str(a) for a in allowed if a is not None)}.")
    if options.cache in REFUSED_CACHES:
        raise ParameterError("cache", f"{{cache}} {options.cache} is not supported: {REFUSED_CACHES[options.cache]}")
    if options.cache is not None and options.cache not in CACHES:
        raise ParameterError("cache", f"Unknown {{cache}} {options.cache!r}; choose one of {', '.join(CACHES)}.")
    cuda = _device_type(device) == "cuda"

    if options.weights == "fp8" and options.quantize is not None:
        raise ParameterError("quantize", f"{{weights}} fp8 and {{quantize}} {options.quantize} both change how "
                             "weights are stored; choose one of them.")
    if options.quantize is not None:
        version = torchao_version()
        if version is None:
            raise ParameterError("quantize", f"{{quantize}} {options.quantize} needs torchao, which is not "
                                 f"installed: {TORCHAO_INSTALL}")
        if _version_tuple(version) < _version_tuple(TORCHAO_MIN_VERSION):
            raise ParameterError("quantize", f"{{quantize}} needs torchao >= {TORCHAO_MIN_VERSION} (found "
                                 f"{version}): {TORCHAO_INSTALL}")
    if options.quantize == "fp8":
        if not cuda:
            raise ParameterError("quantize", f"{{quantize}} fp8 computes in fp8 on a GPU; on {device} use "
                                 "{quantize} int8 (or {weights} fp8, which stores fp8 and computes in the load dtype).")
        if compute_capability is None:
            import torch

            compute_capability = torch.cuda.get_device_capability(device) if torch.cuda.is_available() else None
        if compute_capability is not None and tuple(compute_capability) < FP8_COMPUTE_CAPABILITY:
            raise ParameterError(
                "quantize", "{quantize} fp8 needs a GPU with fp8 support (compute capability 8.9 or more: Ada, "
                f"Hopper); this one has {'.'.join(map(str, compute_capability))}. Use {{quantize}} int8 or "
                "{weights} fp8.")

    # Group offloading onto the CPU runs (onload and offload device both the CPU: nothing saved, the plain output
    # bit for bit); model and sequential offload need an accelerator to move to.
    if options.offload in ("model", "sequential") and not cuda:
        raise ParameterError("offload", f"{{offload}} {options.offload} moves weights to a GPU; on {device} use "
                             "{offload} none (or auto).")
    if options.offload_streams and not cuda:
        raise ParameterError("offload_streams", f"CUDA streams prefetch offloaded weights onto a GPU; on {device} "
                             "leave the streams off.")
    if options.offload_streams and options.offload not in ("group", "group-leaf", "auto"):
        raise ParameterError("offload_streams", "Streams apply to group offloading only ({offload} group or "
                             f"group-leaf), not {{offload}} {options.offload}.")

    if options.cache is None:
        if options.cache_inversion:
            raise ParameterError("cache_inversion", "Caching during inversion was asked for without a cache: add "
                                 "{cache}.")
        return
    if options.cache_threshold is not None:
        if options.cache == "taylorseer":
            raise ParameterError("cache_threshold", "{cache} taylorseer has no threshold: it recomputes every "
                                 "{cache_interval} steps.")
        if not options.cache_threshold > 0:
            raise ParameterError("cache_threshold", f"{{cache_threshold}} must be positive, got "
                                 f"{options.cache_threshold}.")
    if options.cache == "taylorseer" and options.cache_interval < 1:
        raise ParameterError("cache_interval", f"{{cache_interval}} must be at least 1, got {options.cache_interval}.")
    if options.cache == "mag" and not options.mag_ratios:
        raise ParameterError("mag_ratios", "{cache} mag needs magnitude ratios calibrated for this checkpoint "
                             "(diffusers ships them for Flux only): run calibrate_mag_ratios(pipe, ...) once and pass "
                             "them as {mag_ratios}.")


def quantization_config(options: MemoryOptions):
    """diffusers' `PipelineQuantizationConfig` for `from_pretrained(..., quantization_config=...)`, or `None`."""
    if options.quantize is None:
        return None
    import diffusers
    import transformers
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, Int8WeightOnlyConfig

    def quant_type():
        return Int8WeightOnlyConfig() if options.quantize == "int8" else Float8DynamicActivationFloat8WeightConfig()

    mapping = {"transformer": diffusers.TorchAoConfig(quant_type(), modules_to_not_convert=list(TORCHAO_KEEP))}
    if options.quantize_text_encoder:
        mapping["text_encoder"] = transformers.TorchAoConfig(quant_type())
    return diffusers.PipelineQuantizationConfig(quant_mapping=mapping)


def cache_config(options: MemoryOptions, num_inference_steps: int = 50):
    """The diffusers cache config `options.cache` names, or `None`."""
    from diffusers import FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig

    if options.cache is None:
        return None
    threshold = options.cache_threshold or DEFAULT_CACHE_THRESHOLDS.get(options.cache)
    if options.cache == "first-block":
        return FirstBlockCacheConfig(threshold=threshold)
    if options.cache == "mag":
        return MagCacheConfig(threshold=threshold, mag_ratios=list(options.mag_ratios),
                              num_inference_steps=num_inference_steps)
    # diffusers' default patterns (`^transformer_blocks.*attn`, fullmatch) miss CogVideoX's `attn1`: predict whole
    # blocks instead, as the other caches skip them.
    return TaylorSeerCacheConfig(cache_interval=options.cache_interval, cache_identifiers=[TAYLORSEER_BLOCKS])


# Counting bytes ------------------------------------------------------------------------------------------------------

# Structural configs of the public transformers (diffusers format; /work/shared/reference/cogvideox_family.json and
# the Hub configs), for counting bytes where the checkpoint itself is not at hand.
_TRANSFORMER_SHARED = dict(attention_head_dim=64, patch_size=2, text_embed_dim=4096, time_embed_dim=512,
                           max_text_seq_length=226, out_channels=16, attention_bias=True, num_attention_heads=48,
                           num_layers=42, in_channels=16, use_rotary_positional_embeddings=True,
                           use_learned_positional_embeddings=False)
FAMILY_TRANSFORMERS = {
    "cogvideox-5b": dict(_TRANSFORMER_SHARED, patch_size_t=None, sample_frames=49, sample_height=60, sample_width=90),
    "cogvideox1.5-5b": dict(_TRANSFORMER_SHARED, patch_size_t=2, patch_bias=False, sample_frames=81,
                            sample_height=300, sample_width=300),
}
T5_XXL_CONFIG = dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                     relative_attention_num_buckets=32, feed_forward_proj="gated-gelu", is_encoder_decoder=False)


@dataclasses.dataclass
class CountedBytes:
    """Bytes of weights: `stored` per component (in RAM or on the GPU), `resident` per offload rung (the most the GPU
    holds at once)."""

    stored: dict[str, int]
    resident: dict[str, int]


def build_on_meta(model_configs: Mapping[str, Mapping]) -> dict:
    """The transformer, T5 encoder and VAE built from their configs on the meta device (no memory, no download).
    `model_configs` maps component names to config dicts (`checkpoint_config` gives the transformer's and VAE's; the
    T5 encoder's defaults to T5-XXL's)."""
    import torch
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    def public(config):
        return {k: v for k, v in config.items() if not k.startswith("_")}

    with torch.device("meta"):
        models = {"transformer": CogVideoXTransformer3DModel.from_config(public(model_configs["transformer"]))}
        models["text_encoder"] = T5EncoderModel(T5Config(**public(model_configs.get("text_encoder", T5_XXL_CONFIG))))
        models["vae"] = AutoencoderKLCogVideoX.from_config(public(model_configs.get("vae", {})))
    return models


def _eight_bit(component: str, options: MemoryOptions) -> bool:
    return (options.weights == "fp8" or options.quantize is not None) and (
        component == "transformer" or (component == "text_encoder" and options.quantize_text_encoder))


def _own_bytes(name: str, module, component: str, options: MemoryOptions, dtype_bytes: int, seen: set) -> int:
    """Bytes of `module`'s own parameters (not its children's) stored under `options`: diffusers' layerwise casting
    stores supported layers outside its skip patterns in 1 byte; torchao stores Linear weights in 1 byte plus one
    scale per output row (bf16 for int8, fp32 for fp8)."""
    import torch
    from diffusers.hooks._common import _GO_LC_SUPPORTED_PYTORCH_LAYERS
    from diffusers.hooks.layerwise_casting import DEFAULT_SKIP_MODULES_PATTERN

    parameters = [p for p in module.parameters(recurse=False) if id(p) not in seen]  # tied weights count once
    seen.update(id(p) for p in parameters)
    total = sum(p.numel() for p in parameters) * dtype_bytes
    if not _eight_bit(component, options):
        return total
    if options.weights == "fp8":
        skip = DEFAULT_SKIP_MODULES_PATTERN if component == "transformer" else T5_SKIP_PATTERNS
        if isinstance(module, _GO_LC_SUPPORTED_PYTORCH_LAYERS) and not any(re.search(p, name) for p in skip):
            total -= sum(p.numel() for p in parameters) * (dtype_bytes - 1)
        return total
    kept = component == "transformer" and any(name == key or name.startswith(f"{key}.") for key in TORCHAO_KEEP)
    if isinstance(module, torch.nn.Linear) and any(p is module.weight for p in parameters) and not kept:
        scale_bytes = 2 if options.quantize == "int8" else 4
        total -= module.weight.numel() * (dtype_bytes - 1) - module.out_features * scale_bytes
    return total


def _block_prefixes(model, component: str) -> list[str]:
    """Names of the blocks block-level group offloading makes groups of (the T5 encoder's are under `encoder`)."""
    import torch

    root, prefix = (model.encoder, "encoder.") if component == "text_encoder" else (model, "")
    return [f"{prefix}{list_name}.{index}." for list_name, child in root.named_children()
            if isinstance(child, (torch.nn.ModuleList, torch.nn.Sequential)) for index in range(len(child))]


def counted_bytes(model_configs: Mapping[str, Mapping], options: MemoryOptions = MemoryOptions(),
                  dtype_bytes: int = 2) -> CountedBytes:
    """Weights on the GPU per offload rung, counted from the configs built on the meta device, in `dtype_bytes`
    (2: bf16) with `options`' 8-bit storage. `group` keeps a component's non-block weights and two blocks (the one
    running and the one prefetched); `group-leaf` two layers; `sequential` one layer. Tied weights count once."""
    models = build_on_meta(model_configs)
    stored, group, leaf = {}, {}, {}
    for component, model in models.items():
        seen = set()
        own = {name: _own_bytes(name, module, component, options, dtype_bytes, seen)
               for name, module in model.named_modules()}
        stored[component] = sum(own.values())
        blocks = sorted((sum(b for name, b in own.items() if f"{name}.".startswith(prefix))
                         for prefix in _block_prefixes(model, component)), reverse=True)
        group[component] = stored[component] - sum(blocks) + sum(blocks[:2])
        leaf[component] = max(own.values())
    resident = {
        "none": sum(stored.values()),
        "model": max(stored.values()),
        "group": max(group.values()),
        "group-leaf": 2 * max(leaf.values()),
        "sequential": max(leaf.values()),
    }
    return CountedBytes(stored=stored, resident=resident)


def choose_offload(free_bytes: int | None, counted: CountedBytes | Mapping[str, int],
                   headroom_bytes: int = ACTIVATION_HEADROOM_BYTES) -> str:
    """`offload="auto"`: the first rung, from `none` to `group-leaf`, whose resident weights fit beside
    `headroom_bytes` of activations in `free_bytes`; `sequential` when none does. `free_bytes=None` (the CPU) means no
    offload. `counted` is `counted_bytes(...)` or its `resident` mapping."""
    if free_bytes is None:
        return "none"
    resident = counted.resident if isinstance(counted, CountedBytes) else counted
    for rung in OFFLOAD_RUNGS[:-1]:
        if resident[rung] + headroom_bytes <= free_bytes:
            return rung
    return "sequential"


def loaded_configs(pipe) -> dict:
    """The configs of a loaded pipeline's models, for `counted_bytes`."""
    return {"transformer": dict(pipe.transformer.config), "vae": dict(pipe.vae.config),
            "text_encoder": pipe.text_encoder.config.to_dict()}


# Applying the options ------------------------------------------------------------------------------------------------

def enable_fp8_storage(pipe, text_encoder: bool = False):
    """Layerwise casting: fp8 storage, each layer upcast to the model's dtype for its forward."""
    import torch
    from diffusers.hooks import apply_layerwise_casting

    pipe.transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=pipe.transformer.dtype)
    if text_encoder:
        apply_layerwise_casting(pipe.text_encoder, storage_dtype=torch.float8_e4m3fn,
                                compute_dtype=pipe.text_encoder.dtype, skip_modules_pattern=T5_SKIP_PATTERNS)


def enable_group_offload(pipe, onload_device, offload_device="cpu", level: str = "block", use_stream: bool = False):
    """diffusers' group offloading on the transformer, T5 encoder and VAE: `level="block"` onloads one transformer
    (or T5) block at a time, `"leaf"` one layer at a time; `use_stream` prefetches the next group on a CUDA stream."""
    from diffusers.hooks import apply_group_offloading

    offload_type = "block_level" if level == "block" else "leaf_level"
    common = dict(onload_device=onload_device, offload_device=offload_device, offload_type=offload_type,
                  use_stream=use_stream)
    if level == "block":
        common["num_blocks_per_group"] = 1
    for name in ("transformer", "text_encoder", "vae"):
        module = getattr(pipe, name)
        if name == "text_encoder" and level == "block":
            # T5's blocks sit under `encoder` (its one parameter outside, `shared`, is the encoder's embedding): offload
            # the encoder, whose block list block level finds. Naming it in `block_modules` instead onloads the same
            # groups but fails with `use_stream` (diffusers 0.42 registers its layer tracker twice on nested blocks;
            # seen on an H200).
            module = module.encoder
        apply_group_offloading(module, **common)


def apply_memory_options(pipe, options: MemoryOptions, device: str = "cuda", num_inference_steps: int = 50,
                         free_bytes: int | None = None) -> dict:
    """Fit the loaded pipeline to `device` with `options` (fp8 storage, the offload rung, the cache hooks), in the
    order diffusers needs (casting before offloading, caches last). Returns what was chosen, for run.json.
    `free_bytes` is the free GPU memory (read from torch when `None` on CUDA)."""
    import torch

    check_memory_options(options, device)
    cuda = _device_type(device) == "cuda"
    if cuda and free_bytes is None:
        free_bytes = torch.cuda.mem_get_info(torch.device(device))[0]
    dtype_bytes = pipe.vae.dtype.itemsize  # the load dtype (the VAE is never cast or quantized)
    if options.weights == "fp8":
        enable_fp8_storage(pipe, text_encoder=options.quantize_text_encoder)
    offload = options.offload
    if offload == "auto":
        counted = counted_bytes(loaded_configs(pipe), options, dtype_bytes) if cuda else None
        offload = choose_offload(free_bytes if cuda else None, counted)
    streams = cuda if options.offload_streams is None else options.offload_streams
    if offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    elif offload in ("group", "group-leaf"):
        enable_group_offload(pipe, device, level="block" if offload == "group" else "leaf", use_stream=streams)
    else:
        pipe.to(device)
    config = cache_config(options, num_inference_steps)
    if config is not None:
        pipe.transformer.enable_cache(config)
    pipe.cache_inversion = options.cache_inversion  # read by `invert()` (`without_step_cache`)
    return {**options.record(), "offload": offload, "offload_streams": streams and offload.startswith("group"),
            "free_gpu_memory_gib": None if free_bytes is None else round(free_bytes / GiB, 2)}
