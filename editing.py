"""Editing video files end to end: the one implementation behind the command line, batch editing and the app.

An entry point turns its input (flags, a job line, the page's fields) into `ModelSettings` and `EditSettings`, calls
`prepare_edit()` (every check that needs no weights, in one order), loads the pipeline once with `load_pipeline()`,
then calls `edit_video()` for each video. Nothing here parses flags: `add_model_arguments()` / `add_edit_arguments()`
declare them and `settings_from_args()` reads them back, so every entry point offers the same options with the same
defaults. What a saved inversion depends on is defined once, by `inversion_dependencies()`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field

from .cogvideox_ddim_checkpoint import (
    DEFAULT_MODEL,
    check_size_for_positional_embeddings,
    checkpoint_config,
    default_video_size,
    is_image_to_video,
)
from .cogvideox_ddim_files import atomic_write, file_digest
from .cogvideox_ddim_memory import (
    CACHES,
    OFFLOAD_MODES,
    QUANTIZE,
    WEIGHTS,
    MemoryOptions,
    apply_memory_options,
    check_memory_options,
    check_weights_storage,
    expected_weights_storage,
    match_cache_to_steps,
    quantization_config,
)
from .cogvideox_ddim_video_io import RESIZE_MODES, SAMPLING_MODES


__all__ = ["DEFAULT_MODEL", "RESIZE_MODES", "SAMPLING_MODES", "checkpoint_config"]  # re-exported for the entry points
DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}  # torch loads only when a command runs
REFERENCE_MODES = ("shared", "paired")
START_MODES = ("inverted", "noise")
# cogvideox_ddim_windows' WEIGHTING_SCHEMES and DEFAULT_WINDOW_WEIGHTING, named here without importing torch (a test
# keeps them equal): how the predictions of overlapping windows of a long clip are averaged.
WINDOW_WEIGHTINGS = ("flat", "pyramid", "hann")
DEFAULT_WINDOW_WEIGHTING = "pyramid"
# One DDIM step goes from pure noise (zero terminal SNR, as every CogVideoX schedule has) straight to a clean video and
# cannot be inverted; the pipeline refuses it too, but only once the weights are loaded.
MIN_STEPS = 2
# Files an edit writes into its output folder, besides run.json; only these are removed when a rerun replaces a run.
OUTPUT_FILE = re.compile(r"(edit-\d+|side_by_side|reconstruction|mask)\.mp4")


@dataclass
class ModelSettings:
    """Which checkpoint to load, where, and how to fit it in memory. The memory and cache fields are
    `cogvideox_ddim_memory.MemoryOptions`' (see there); options that cannot work on the device are refused as the
    settings are made, before anything loads or is written."""

    model: str = DEFAULT_MODEL
    device: str = "auto"  # "auto": cuda when available
    dtype: str = "auto"  # "auto": bf16 on a GPU, fp32 on the CPU
    offload: str = "auto"  # "auto": the first rung whose counted weights fit the free GPU memory (`choose_offload`)
    vae_tiling: str = "auto"  # "auto": VAE tiling and slicing on CUDA, off on the CPU
    compile: bool = False  # torch.compile the transformer
    weights: str = "bf16"  # "fp8": fp8 storage of the transformer's weights, computed in the load dtype
    quantize: str | None = None  # torchao: "int8" weight-only or "fp8" (fp8 GPUs)
    quantize_text_encoder: bool = False  # --weights fp8 / --quantize for T5 too
    offload_streams: bool | None = None  # group offloading prefetches on CUDA streams (None: where CUDA exists)
    cache: str | None = None  # step cache of the edits: "first-block", "mag" or "taylorseer"
    cache_threshold: float | None = None  # None: diffusers' default for the cache
    cache_interval: int = 5  # taylorseer: full steps every this many
    cache_inversion: bool = False  # let the cache run during invert() too (it breaks the exact round trip)
    mag_ratios: tuple[float, ...] | None = None  # --cache mag: the checkpoint's calibrated magnitude ratios

    def __post_init__(self):
        if self.mag_ratios is not None:
            self.mag_ratios = tuple(float(ratio) for ratio in self.mag_ratios)
        check_memory_options(self.memory_options(), resolve_device(self.device))

    def memory_options(self) -> MemoryOptions:
        names = [f.name for f in dataclasses.fields(MemoryOptions)]
        return MemoryOptions(**{name: getattr(self, name) for name in names})

    def output_options(self) -> dict:
        """The options set away from their defaults that change the outputs (8-bit weights, the step cache), not only
        memory or speed (offloading, streams): batch's settings hash."""
        cache_settings = {None: (), "first-block": ("cache_threshold",), "mag": ("cache_threshold", "mag_ratios"),
                          "taylorseer": ("cache_interval",)}.get(self.cache, ())
        names = ("weights", "quantize", "quantize_text_encoder", "cache", *cache_settings,
                 *(("cache_inversion",) if self.cache else ()))
        defaults = MemoryOptions()
        return {name: getattr(self, name) for name in names if getattr(self, name) != getattr(defaults, name)}


def _option(default=None, *, inversion: str | None = None, memory_only: bool = False, default_factory=None):
    """An `EditSettings` field and what the entry points need to know about it (`dataclasses.fields(...).metadata`):

    - `inversion`: the inversion depends on it: `"always"`, `"source"` (only where a video is read: frame selection
      and size) or `"mask"` (only with --mask-words); see `inversion_dependencies`.
    - `memory_only`: it changes memory or speed, never the outputs (left out of batch's settings hash).

    The app makes its page fields from the fields' names, types and defaults (`app.PAGE_FIELDS`).
    """
    metadata = {"inversion": inversion, "memory_only": memory_only}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class EditSettings:
    """One video and what to do with it. Defaults are the pipeline's (`invert()` and `__call__`)."""

    video: str | None
    prompts: list[str]
    source_prompt: str = _option("", inversion="always")
    negative_prompt: str = _option("")
    steps: int = _option(50, inversion="always")
    guidance: float = _option(6.0)
    guidance_ramp: float | None = _option(None)  # guidance from `guidance_ramp_at` of the steps on
    guidance_ramp_at: float = _option(0.5)
    seed: int = _option(42)
    height: int | None = _option(None, inversion="source")
    width: int | None = _option(None, inversion="source")
    num_frames: int | None = _option(None, inversion="source")  # or "all": the whole clip (long clips in windows)
    skip_frames_start: int = _option(0, inversion="source")
    skip_frames_end: int = _option(0, inversion="source")
    frame_stride: int = _option(1, inversion="source")
    sampling: str = _option("first", inversion="source")
    resize_mode: str = _option("crop", inversion="source")
    reference_mode: str = _option("shared")
    reference_steps: float | tuple[float, float] = _option(1.0)
    reference_blocks: list[int] | None = _option(None)
    reference_weight: float = _option(1.0)
    strength: float = _option(1.0, inversion="always")
    fixed_point_iterations: int = _option(0, inversion="always")
    start: str = _option("inverted")
    fps: float | None = _option(None)
    image: str | None = _option(None)  # image-to-video: condition the edits on this (edited) first frame
    reconstruction: bool = _option(False)
    save_inversion: str | None = _option(None)
    inversion: str | None = _option(None)  # reuse a saved inversion instead of inverting
    prompt_batch_size: int | None = _option(None, memory_only=True)  # prompts per pipeline call (None: all at once)
    mask: str | None = _option(None)  # mask video (white = may change), read with the source's selection and resizing
    mask_words: list[str] | None = _option(None, inversion="mask")  # words whose attention is recorded as the mask
    paste_back: bool = _option(False)  # composite the source outside the mask after decoding
    mask_threshold: float = _option(0.5, inversion="mask")  # --mask-words: where the scaled attention exceeds this
    mask_dilation: int = _option(0)  # pixels by which to grow the mask
    mask_feather: int = _option(0)  # pixels over which the mask falls to 0 outside its edge
    mask_steps: float | tuple[float, float] = _option(1.0, inversion="mask")  # steps recording / keeping the mask
    mask_blocks: list[int] | None = _option(None, inversion="mask")  # blocks whose attention is recorded
    mask_refine: bool | None = _option(None, inversion="mask")  # snap the recorded mask to the frames' edges
    trajectory_device: str | None = _option(None, memory_only=True)  # "cpu": keep the trajectory in host memory
    window_overlap: int | None = _option(None, inversion="always")  # long clips: video frames windows share
    window_batch_size: int = _option(1, memory_only=True)  # long clips: windows per transformer call
    window_weighting: str | None = _option(None, inversion="always")  # long clips: None, the pipeline's (or reused)
    extra: dict = _option(default_factory=dict)  # recorded in run.json as given (e.g. a batch job's id)


def settings_fields(**metadata) -> list[str]:
    """Names of the `EditSettings` fields whose metadata has these values, e.g. `settings_fields(memory_only=True)`."""
    return [f.name for f in dataclasses.fields(EditSettings)
            if all(f.metadata.get(key) == value for key, value in metadata.items())]


# ---------------------------------------------------------------------------------------------------------------------
# Flags


def add_model_arguments(parser):
    group = parser.add_argument_group("model and memory")
    group.add_argument("--model", default=DEFAULT_MODEL,
                       help="Hub id or local folder of a CogVideoX checkpoint (default: %(default)s)")
    group.add_argument("--device", default="auto",
                       help="cuda, cuda:1, cpu, ... (default: %(default)s, cuda when available)")
    group.add_argument("--dtype", default="auto", choices=["auto", *DTYPES],
                       help="weights' precision (default: %(default)s, bf16 on a GPU, fp32 on the CPU)")
    group.add_argument(
        "--offload", default="auto", choices=OFFLOAD_MODES,
        help="keep weights on the CPU and move them to the GPU when used: 'model' moves whole models (text encoder, "
        "transformer, VAE), 'group' one block at a time (the next prefetched on a CUDA stream), 'group-leaf' one "
        "layer at a time, 'sequential' single layers without prefetch (slowest, least memory); 'auto' picks the "
        "first that fits the GPU's free memory by counted weight bytes, none on the CPU (default: %(default)s)",
    )
    group.add_argument("--offload-streams", action=argparse.BooleanOptionalAction, default=None,
                       help="with --offload group or group-leaf: prefetch the next group on a CUDA stream (default: "
                       "on with CUDA)")
    group.add_argument("--weights", default="bf16", choices=WEIGHTS,
                       help="'fp8': store the transformer's weights in fp8, each layer computed in the load dtype "
                       "(diffusers' layerwise casting; about half the transformer's bytes, any device; default: "
                       "%(default)s, the load dtype)")
    group.add_argument("--quantize", default=None, choices=QUANTIZE,
                       help="torchao quantization of the transformer while loading: 'int8' weight-only (any device), "
                       "'fp8' (GPUs with compute capability 8.9+); pip install 'cogvideox-ddim-inversion"
                       "[quantization]'; saves memory, and time only with --compile (default: off)")
    group.add_argument("--quantize-text-encoder", action="store_true",
                       help="apply --weights fp8 or --quantize to the T5 text encoder too (9.5 of 5B's 21.1 GB; "
                       "default: off)")
    cache = parser.add_argument_group("step cache")
    cache.add_argument("--cache", default=None, choices=CACHES,
                       help="skip transformer work on later edit steps (never during the inversion unless "
                       "--cache-inversion): 'first-block' when the first block's output barely changed, 'mag' "
                       "(MagCache, needs --mag-ratios), 'taylorseer' (full steps every --cache-interval, predicted in "
                       "between) (default: off)")
    cache.add_argument("--cache-threshold", type=float, default=None,
                       help="first-block: relative change below which the other blocks are skipped (0.1: about 1.9x "
                       "fewer block evaluations on the toy world); mag: accumulated error allowed (default: "
                       "diffusers', 0.05 and 0.06)")
    cache.add_argument("--cache-interval", type=int, default=5,
                       help="taylorseer: compute every block fully every this many steps (default: %(default)s)")
    cache.add_argument("--mag-ratios", type=parse_mag_ratios, default=None, metavar="R1,R2,... or FILE",
                       help="--cache mag: the checkpoint's magnitude ratios, comma-separated or a JSON list in a file "
                       "(calibrate_mag_ratios, docs/memory.md; default: none)")
    cache.add_argument("--cache-inversion", action="store_true",
                       help="let --cache run during the inversion too; it skips the evaluations that make the round "
                       "trip exact (default: off)")
    group.add_argument(
        "--vae-tiling", default="auto", choices=["auto", "on", "off"],
        help="decode and encode the VAE in tiles and slices; auto: on with CUDA, where 49 frames of 720x480 need "
        "about 19 GB without it (default: %(default)s)",
    )
    group.add_argument("--compile", action="store_true",
                       help="torch.compile the transformer (slow first step; default: off)")


def parse_mag_ratios(text: str) -> tuple[float, ...]:
    """`--mag-ratios` as typed: comma-separated numbers, or a file holding a JSON list of them."""
    if os.path.isfile(text):
        with open(text) as file:
            return tuple(float(ratio) for ratio in json.load(file))
    return tuple(float(ratio) for ratio in text.split(","))


def parse_reference_steps(text: str):
    """`--reference-steps` / `--mask-steps` as typed: "END" (a fraction of the steps) or "START,END" (a window)."""
    parts = [float(part) for part in text.split(",")]
    if len(parts) not in (1, 2):
        raise ValueError(f"Reference steps must be a fraction or START,END; got {text!r}.")
    return parts[0] if len(parts) == 1 else tuple(parts)


def parse_reference_blocks(text: str) -> list[int]:
    """`--reference-blocks` / `--mask-blocks` as typed: comma-separated transformer block indices."""
    return [int(block) for block in text.split(",")]


def parse_mask_words(text: str) -> list[str]:
    """"horse, brown dog" -> ["horse", "brown dog"]: comma-separated words or phrases of the source prompt."""
    return [word.strip() for word in text.split(",") if word.strip()]


class _ExtendWords(argparse.Action):
    """`--mask-words horse rider` and `--mask-words horse,rider` both give ["horse", "rider"]."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, [word for words in values for word in words])


def parse_num_frames(text: str) -> int | str:
    """`--num-frames`: a frame count, or "all" (the whole clip)."""
    if text.strip().lower() == "all":
        return "all"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a frame count or 'all', got {text!r}") from None


def add_source_arguments(parser, video: bool = True, command: str = "edit"):
    """The source and its inversion: frames, size, steps, the mask the inversion records. `video=False` leaves out the
    positional video (batch editing reads videos from its jobs); `command="invert"` words the help for `invert`,
    which saves the inversion and edits nothing."""
    source = parser.add_argument_group("source")
    if video:
        source.add_argument("video", nargs="?", default=None,
                            help="input video file (any format ffmpeg reads)"
                            + ("" if command == "invert" else "; optional with --inversion"))
    source.add_argument("--source-prompt", default="",
                        help="prompt the video is inverted (and reconstructed) with (default: empty, as published)")

    frames = parser.add_argument_group("frames")
    frames.add_argument("--num-frames", type=parse_num_frames, default=None, metavar="N or all",
                        help="most frames to use, trimmed to 8k + 1 (an odd number of latent frames: 9, 17, ..., 49; "
                        "default: the model's native count, 49); 'all': the whole clip. More than the native count "
                        "runs in overlapping windows of it (text-to-video checkpoints)")
    frames.add_argument("--window-overlap", type=int, default=None, metavar="FRAMES",
                        help="clips longer than the native count: frames neighbouring windows share, a multiple of 4 "
                        "(default: a quarter of the window, 12 for 49 frames)")
    frames.add_argument("--window-batch-size", type=int, default=1, metavar="N",
                        help="clips longer than the native count: windows per transformer call; 1 uses the least "
                        "memory, more is faster on a large GPU (default: %(default)s)")
    frames.add_argument("--window-weighting", default=None, choices=WINDOW_WEIGHTINGS,
                        help="clips longer than the native count: how the predictions of overlapping windows are "
                        "averaged per frame: equally (flat), more towards each window's middle (pyramid: a linear "
                        f"cross-fade) or a raised cosine (hann) (default: {DEFAULT_WINDOW_WEIGHTING}, or a "
                        "reused inversion's own)")
    frames.add_argument("--skip-frames-start", type=int, default=0,
                        help="source frames to skip at the start (default: %(default)s)")
    frames.add_argument("--skip-frames-end", type=int, default=0,
                        help="source frames to skip at the end (default: %(default)s)")
    frames.add_argument("--frame-stride", type=int, default=1,
                        help="with --sampling first: take every N-th frame (default: %(default)s)")
    frames.add_argument("--sampling", default="first", choices=SAMPLING_MODES,
                        help="'first': the first frames (with the stride); 'spread': evenly spaced over the clip, "
                        "written as a time-lapse when sparse (see --fps) (default: %(default)s)")
    frames.add_argument("--height", type=int, default=None, help="default: the model's size for this source")
    frames.add_argument("--width", type=int, default=None, help="default: the model's size for this source")
    frames.add_argument("--resize-mode", default="crop", choices=RESIZE_MODES,
                        help="fit the source to the model's size: 'crop' (cover, centre crop), 'pad', 'stretch' "
                        "(default: %(default)s)")

    inversion = parser.add_argument_group("inversion")
    inversion.add_argument("--steps", type=int, default=50,
                           help=f"DDIM steps, for inversion and regeneration, at least {MIN_STEPS} (default: "
                           "%(default)s)")
    inversion.add_argument("--strength", type=float, default=1.0,
                           help="invert and regenerate only the last fraction of the schedule, keeping more of the "
                           "source (default: %(default)s)")
    inversion.add_argument("--fixed-point-iterations", type=int, default=0,
                           help="extra evaluations per inversion step for an exact round trip, 2-4 (default: "
                           "%(default)s)")
    inversion.add_argument("--trajectory-device", default=None, metavar="DEVICE",
                           help="where to keep the inverted trajectory: 'cpu' keeps it in host memory and copies one "
                           "step at a time to the GPU (default: the model's device)")

    mask = parser.add_argument_group("mask (local edits)")
    mask.add_argument("--mask-words", nargs="+", default=None, type=parse_mask_words, action=_ExtendWords,
                      metavar="WORD",
                      help="words of --source-prompt (comma or space separated): the inversion records the model's "
                      "attention to them as the edit mask "
                      + ("(saved in the inversion, and written beside it as NAME.mask.mp4); edits of the inversion "
                         if command == "invert" else "(mask.mp4); edits ")
                      + "change only inside it (default: none)")
    mask.add_argument("--mask-threshold", type=float, default=0.5,
                      help="with --mask-words: the mask is where the attention, scaled to [0, 1], exceeds this "
                      "(lower: a larger mask; default: %(default)s)")
    mask.add_argument("--mask-blocks", type=parse_reference_blocks, default=None, metavar="I,J,...",
                      help="with --mask-words: transformer blocks whose attention is recorded (default: the last)")
    mask.add_argument("--mask-steps", type=parse_reference_steps, default=1.0, metavar="END or START,END",
                      help="with a mask: the fraction of the steps (or a window) on which the inversion records the "
                      "attention (--mask-words) and the edit keeps the source outside the mask (default: %(default)s)")
    mask.add_argument("--mask-refine", action=argparse.BooleanOptionalAction, default=None,
                      help="with --mask-words: snap the mask to the source frames' edges (default: on when a video "
                      "is inverted)")


def add_edit_arguments(parser):
    """The edits: prompts, guidance, reference attention, local edits, outputs, and reusing or saving the
    inversion."""
    text = parser.add_argument_group("edit")
    text.add_argument("--prompt", action="append", default=None, dest="prompts", metavar="PROMPT",
                      help="prompt of an edit; repeat for several edits of one inversion, written as edit-1.mp4, ... "
                      "(default: none)")
    text.add_argument("--negative-prompt", default="",
                      help="negative prompt of the edits; the source prompt often works well here (default: empty)")
    text.add_argument("--guidance", type=float, default=6.0,
                      help="classifier-free guidance scale of the edits (default: %(default)s)")
    text.add_argument("--guidance-ramp", type=float, default=None, metavar="SCALE",
                      help="raise guidance to SCALE after --guidance-ramp-at of the steps: low, then high guidance "
                      "(default: off)")
    text.add_argument("--guidance-ramp-at", type=float, default=0.5, metavar="FRACTION",
                      help="with --guidance-ramp: the fraction of the steps after which guidance is raised (default: "
                      "%(default)s)")
    text.add_argument("--seed", type=int, default=42,
                      help="seed of the noise (with --start noise) and any sampling (default: %(default)s)")
    text.add_argument("--start", default="inverted", choices=START_MODES,
                      help="start from the inverted noise (closer to the source) or fresh noise (the published "
                      "method; default: %(default)s)")
    text.add_argument("--image", default=None,
                      help="image-to-video checkpoints: condition the edits on this image, e.g. an edited first frame "
                      "(default: the source's first frame)")

    reference = parser.add_argument_group("reference attention")
    reference.add_argument("--reference-mode", default="shared", choices=REFERENCE_MODES,
                           help="'shared': one reference row per step for all prompts; 'paired': one per prompt "
                           "(default: %(default)s)")
    reference.add_argument("--reference-steps", type=parse_reference_steps, default=1.0, metavar="END or START,END",
                           help="fraction of the steps (or a window) with reference attention (default: %(default)s)")
    reference.add_argument("--reference-blocks", type=parse_reference_blocks, default=None, metavar="I,J,...",
                           help="transformer blocks whose attention reads the reference (default: all)")
    reference.add_argument("--reference-weight", type=float, default=1.0,
                           help="attention mass on the reference; below 1 follows the prompt more (default: "
                           "%(default)s)")

    local = parser.add_argument_group("local edits")
    local.add_argument("--mask", default=None, metavar="FILE",
                       help="mask video (white = may change, same frames as the source): edits change only inside it "
                       "(default: none)")
    local.add_argument("--paste-back", action="store_true",
                       help="with --mask or --mask-words: after decoding, put the source's own pixels back outside "
                       "the mask (default: off)")
    local.add_argument("--mask-dilation", type=int, default=0, metavar="PIXELS",
                       help="grow the mask by this many pixels, a margin for motion and soft edges (default: "
                       "%(default)s)")
    local.add_argument("--mask-feather", type=int, default=0, metavar="PIXELS",
                       help="let the mask fall from 1 to 0 over this many pixels outside its edge, soft seams "
                       "(default: %(default)s)")

    outputs = parser.add_argument_group("outputs")
    outputs.add_argument("--reconstruction", action="store_true",
                         help="also regenerate the source with the source prompt, reconstruction.mp4 (default: off)")
    outputs.add_argument("--fps", type=float, default=None,
                         help="output frame rate (default: the pace of the source frames used, from their "
                         "timestamps, so edits play at the source's speed; with --sampling spread, when that pace is "
                         "slower than the checkpoint's 8 fps (16 for CogVideoX 1.5), that rate: a time-lapse; "
                         "run.json records the rate and how it was chosen)")
    outputs.add_argument("--prompt-batch-size", type=int, default=None,
                         help="prompts per batched call; lower it when memory is short (default: all)")
    outputs.add_argument("--save-inversion", default=None, metavar="PATH",
                         help="also save the inversion (.safetensors) to reuse with --inversion (default: not saved)")
    outputs.add_argument("--inversion", default=None, metavar="PATH",
                         help="reuse a saved inversion instead of inverting the video; it must have been made with "
                         "this video, source prompt, frames, size, steps and strength (default: invert)")


def settings_from_args(args) -> tuple[ModelSettings, EditSettings]:
    model = ModelSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ModelSettings)})
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(EditSettings) if hasattr(args, f.name)}
    values.setdefault("video", None)
    values["prompts"] = values.get("prompts") or []
    return model, EditSettings(**values)


# ---------------------------------------------------------------------------------------------------------------------
# Checks that need no weights


def prepare_edit(settings: EditSettings, model: str | None = None, *, config: dict | None = None,
                 output_dir: str | None = None, check_video=None, command: str = "edit",
                 memory: MemoryOptions | None = None) -> dict:
    """Every check of an edit that needs no weights, in one order, so that bad input fails before anything loads and
    nothing is written: the settings, the output paths, the checkpoint's config (read from `model` unless `config`
    is given) and what it allows, the source video (`check_video(path)`: an entry point's own limits, first), and a
    saved inversion against all of these. The command line, batch and the app call this, then load the pipeline.
    `command="invert"` (which saves the inversion with --output, and has no --mask) words the messages for `invert`;
    `memory` (the run's `MemoryOptions`) lets a saved inversion made with other 8-bit weights be refused here too.
    Returns the checkpoint's config."""
    check_edit_settings(settings, command)
    check_output_paths(settings, output_dir, "--output" if command == "invert" else "--save-inversion")
    if config is None:
        config = checkpoint_config(model)
    check_settings_for_checkpoint(settings, config)
    source = None
    if settings.video is not None:
        if check_video is not None:
            check_video(settings.video)
        source = check_source(settings, config)
    if settings.inversion is not None:
        check_saved_inversion(settings, config, source, model)
        if memory is not None:  # the loaded pipeline checks it again (`check_inversion`)
            from .pipeline_cogvideox_ddim_inversion import CogVideoXDDIMInversionOutput

            recorded = CogVideoXDDIMInversionOutput.read_settings(settings.inversion)
            check_weights_storage(recorded.get("model"), {"weights_storage": expected_weights_storage(memory)})
    return config


def check_edit_settings(settings: EditSettings, command: str = "edit"):
    """Raise, naming the fix, for any setting that would fail later: files, prompts and numbers (messages name the
    flags of `command`)."""
    s = settings
    if not s.prompts and not s.reconstruction and not s.save_inversion:
        raise ValueError("Nothing to do: give at least one --prompt (or --reconstruction, or --save-inversion).")
    for prompt in s.prompts:
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"Empty prompt {prompt!r}: every --prompt needs text describing the edited video.")
    if s.video is None and s.inversion is None:
        raise ValueError("Give a video file to edit, or --inversion with a saved inversion.")
    check_input_files(s)
    check_mask_settings(s, command)
    check_numbers(s)
    for name, value, choices in (("--resize-mode", s.resize_mode, RESIZE_MODES),
                                 ("--sampling", s.sampling, SAMPLING_MODES),
                                 ("--reference-mode", s.reference_mode, REFERENCE_MODES),
                                 ("--start", s.start, START_MODES),
                                 ("--window-weighting", s.window_weighting or DEFAULT_WINDOW_WEIGHTING,
                                  WINDOW_WEIGHTINGS)):
        if value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}.")
    from .pipeline_cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline

    CogVideoXDDIMInversionPipeline.reference_step_window(s.reference_steps, s.steps)  # raises for a bad window
    CogVideoXDDIMInversionPipeline.reference_step_window(s.mask_steps, s.steps, "mask_steps")
    if s.trajectory_device is not None:
        import torch

        try:
            torch.device(s.trajectory_device)
        except RuntimeError:
            raise ValueError(
                f"--trajectory-device {s.trajectory_device!r} is not a device: pass cpu, cuda or cuda:N."
            ) from None


def check_input_files(settings: EditSettings):
    """The video, image, mask and inversion files exist; the image is an image and the inversion one (its header)."""
    s = settings
    for name, path in (("video", s.video), ("image", s.image), ("inversion", s.inversion), ("mask", s.mask)):
        if path is not None and os.path.isdir(path):
            raise IsADirectoryError(f"The {name} {path!r} is a folder: pass a {name} file (the path of one file).")
        if path is not None and not os.path.isfile(path):
            raise FileNotFoundError(f"{name.capitalize()} file not found: {path!r}. Check the path.")
    if s.image is not None:
        import PIL.Image

        try:
            with PIL.Image.open(s.image) as image:
                image.verify()
        except Exception as error:
            raise ValueError(f"Could not read the image {s.image!r} ({error}). Pass a PNG or JPEG file.") from None
    if s.inversion is not None:
        from .pipeline_cogvideox_ddim_inversion import CogVideoXDDIMInversionOutput

        CogVideoXDDIMInversionOutput.read_settings(s.inversion)  # raises for a file that is not an inversion


def check_numbers(settings: EditSettings):
    """Steps, guidance, strength, weights, sizes: finite and in range."""
    s = settings
    for flag, value in (("--guidance", s.guidance), ("--guidance-ramp", s.guidance_ramp),
                        ("--guidance-ramp-at", s.guidance_ramp_at), ("--strength", s.strength),
                        ("--reference-weight", s.reference_weight), ("--fps", s.fps),
                        ("--mask-threshold", s.mask_threshold)):
        if value is not None and not math.isfinite(value):  # NaN passes every comparison; it would reach the video
            raise ValueError(f"{flag} must be a finite number, got {value}.")
    if s.steps < MIN_STEPS:
        raise ValueError(
            f"--steps must be at least {MIN_STEPS}, got {s.steps}: one step goes from pure noise straight to a clean "
            "video (CogVideoX's zero-terminal-SNR step), which determines no noise to invert."
        )
    if s.guidance < 1:
        raise ValueError(f"--guidance must be >= 1 (1 turns guidance off), got {s.guidance}.")
    if s.guidance_ramp is not None:
        if not s.guidance_ramp > 1 or not s.guidance > 1:
            raise ValueError(
                f"--guidance-ramp {s.guidance_ramp} needs --guidance > 1 and a ramp scale > 1 (got --guidance "
                f"{s.guidance}): guidance rows must run from the first step to be raised later."
            )
        if not 0 < s.guidance_ramp_at < 1:
            raise ValueError(f"--guidance-ramp-at must be a fraction in (0, 1), got {s.guidance_ramp_at}.")
    if not 0 < s.strength <= 1:
        raise ValueError(f"--strength must be in (0, 1], got {s.strength}.")
    if s.steps >= MIN_STEPS and int(s.steps * s.strength) < 1:  # as `invert()` and `__call__` cut the schedule
        raise ValueError(
            f"--strength {s.strength} keeps no step of {s.steps} (it runs int(steps * strength) steps): raise "
            "--strength or --steps."
        )
    if s.fixed_point_iterations < 0:
        raise ValueError(f"--fixed-point-iterations must be >= 0, got {s.fixed_point_iterations}.")
    if s.reference_weight < 0:
        raise ValueError(f"--reference-weight must be >= 0, got {s.reference_weight}.")
    if s.prompt_batch_size is not None and s.prompt_batch_size < 1:
        raise ValueError(f"--prompt-batch-size must be at least 1, got {s.prompt_batch_size}.")
    if s.fps is not None and not s.fps > 0:
        raise ValueError(f"--fps must be positive, got {s.fps}.")
    if s.num_frames is not None and s.num_frames != "all" and not isinstance(s.num_frames, int):
        raise ValueError(f"--num-frames must be a frame count or 'all', got {s.num_frames!r}.")
    if not isinstance(s.window_batch_size, int) or s.window_batch_size < 1:
        raise ValueError(f"--window-batch-size must be at least 1, got {s.window_batch_size}.")
    for size in (s.height, s.width):
        if size is not None and (size <= 0 or size % 16):
            raise ValueError(f"--height/--width must be positive multiples of 16 (VAE 8x, patches of 2), got {size}.")


def mask_word_pattern(word: str) -> re.Pattern:
    """`word` as a whole word or phrase of a prompt, in any case (how --mask-words are found in --source-prompt)."""
    return re.compile(rf"(?<!\w){re.escape(word)}(?!\w)", re.IGNORECASE)


def check_mask_settings(settings: EditSettings, command: str = "edit"):
    """--mask, --mask-words and --paste-back: one mask source, words of the source prompt, paste-back with a mask;
    the options that shape a mask only with one."""
    s = settings
    give_mask = "give --mask-words too" if command == "invert" else "give --mask or --mask-words too"
    if s.mask is not None and s.mask_words:
        raise ValueError("Give --mask (a mask video) or --mask-words (a mask from the model's attention), not both.")
    masked = s.mask is not None or bool(s.mask_words)
    if s.paste_back and not masked:
        raise ValueError(f"--paste-back puts the source back outside a mask: {give_mask}.")
    for flag, value in (("--mask-dilation", s.mask_dilation), ("--mask-feather", s.mask_feather)):
        if value < 0:
            raise ValueError(f"{flag} is a number of pixels >= 0, got {value}.")
        if value and not masked:
            raise ValueError(f"{flag} shapes a mask: {give_mask}.")
    if s.mask_steps != 1.0 and not masked:
        raise ValueError(f"--mask-steps sets the steps a mask applies on: {give_mask}.")
    if not 0 < s.mask_threshold < 1:
        raise ValueError(f"--mask-threshold must be between 0 and 1 (exclusive), got {s.mask_threshold}.")
    for flag, unset in (("--mask-threshold", s.mask_threshold == 0.5), ("--mask-blocks", s.mask_blocks is None),
                        ("--mask-refine", s.mask_refine is None)):
        if not unset and not s.mask_words:
            raise ValueError(f"{flag} sets the mask --mask-words records: give --mask-words too.")
    if any(block < 0 for block in s.mask_blocks or []):
        raise ValueError(f"--mask-blocks are transformer block indices >= 0, got {s.mask_blocks}.")
    for word in s.mask_words or []:
        if not mask_word_pattern(word).search(s.source_prompt):
            raise ValueError(
                f"--mask-words {word!r} is not a word of --source-prompt {s.source_prompt!r}: the mask is the "
                "attention the inversion gives to words of its own prompt. Add the word to --source-prompt."
            )


def check_output_path(path: str, flag: str, folder: bool = False):
    """`path` can be written as a folder (`folder`) or a file: not the other kind already, inside a folder we may
    write to (the nearest existing one; missing folders are created when the outputs are written)."""
    path = os.path.abspath(path)
    if folder and os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{flag} {path!r} is a file: give a folder.")
    if not folder and os.path.isdir(path):
        raise ValueError(f"{flag} {path!r} is a folder: give a file name in it, e.g. {path}/inversion.safetensors.")
    existing = path if folder else os.path.dirname(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"{flag} {path!r} lies under {existing!r}, which is a file: give a path under a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"Cannot write to {existing!r} ({flag} {path!r}): pick another {flag}.")


def check_output_paths(settings: EditSettings, output_dir: str | None = None, save_flag: str = "--save-inversion"):
    """Where the edit writes: the output folder and the inversion file (`save_flag`; batch's switch names no path)."""
    if output_dir is not None:
        check_output_path(output_dir, "--output-dir", folder=True)
    inputs = {os.path.realpath(path): name for name, path in (
        ("the video", settings.video), ("--image", settings.image), ("--mask", settings.mask),
        ("--inversion", settings.inversion)) if path is not None}
    if isinstance(settings.save_inversion, (str, os.PathLike)):
        check_output_path(settings.save_inversion, save_flag)
        read = inputs.get(os.path.realpath(settings.save_inversion))
        if read == "--inversion":
            raise ValueError(f"{save_flag} names the --inversion being read: leave {save_flag} out.")
        if read is not None:
            raise ValueError(f"{save_flag} names {read} ({settings.save_inversion!r}), which the edit reads: saving "
                             f"would replace it. Pass another {save_flag}.")
    if output_dir is not None:  # the outputs a run writes, or removes when it replaces the previous run there
        folder = os.path.realpath(output_dir)
        for path, name in inputs.items():
            filename = os.path.basename(path)
            if os.path.dirname(path) == folder and (OUTPUT_FILE.fullmatch(filename) or filename == "run.json"):
                raise ValueError(
                    f"{name} {path!r} is an output of a run in --output-dir {output_dir!r}, which this run replaces: "
                    "copy it out of that folder first, or choose another --output-dir."
                )


def check_settings_for_checkpoint(settings: EditSettings, config: dict):
    """Settings this checkpoint cannot run (from its config alone, before the weights load)."""
    transformer = config["transformer"]
    if settings.image is not None and not is_image_to_video(transformer):
        raise ValueError(
            "--image conditions image-to-video checkpoints (CogVideoX-5b-I2V, CogVideoX1.5-5B-I2V); this checkpoint "
            "is text-to-video: leave --image out, or pass an image-to-video --model."
        )
    if settings.height is not None or settings.width is not None:
        native = default_video_size(transformer)  # where the size matters (learned embeddings) it is the native one
        check_size_for_positional_embeddings(transformer, settings.height or native[0], settings.width or native[1])
    _check_windows_for_checkpoint(settings, config)
    layers = transformer.get("num_layers")
    for flag, blocks in (("--reference-blocks", settings.reference_blocks), ("--mask-blocks", settings.mask_blocks)):
        if layers is not None and any(not 0 <= block < layers for block in blocks or []):
            raise ValueError(f"{flag} {blocks}: this checkpoint has blocks 0 to {layers - 1}.")


def _check_windows_for_checkpoint(settings: EditSettings, config: dict, frames: int | None = None):
    """Long-clip settings this checkpoint cannot run: a --window-overlap that does not fit its windows, and more
    frames (`frames`, or --num-frames) than an image-to-video checkpoint's native count."""
    from .cogvideox_ddim_windows import clip_windows, overlap_latent_frames

    transformer, temporal = config["transformer"], config["vae"].get("temporal_compression_ratio", 4)
    native = (transformer["sample_frames"] - 1) // temporal + 1
    try:
        overlap_latent_frames(settings.window_overlap, native, temporal)
    except ValueError as error:
        raise ValueError(str(error).replace("`window_overlap=", "--window-overlap ").replace("`", "")) from None
    frames = frames or (settings.num_frames if isinstance(settings.num_frames, int) else None)
    if frames is not None and frames > transformer["sample_frames"]:
        try:
            clip_windows((frames - 1) // temporal + 1, native, settings.window_overlap, temporal,
                         is_image_to_video(transformer))
        except ValueError as error:
            raise ValueError(str(error).replace("Pass at most", "Pass --num-frames at most")) from None
        if settings.mask_words:
            raise ValueError(
                f"--mask-words records the attention of one window of {transformer['sample_frames']} frames; this "
                f"clip has {frames}: pass a --mask video instead, or --num-frames {transformer['sample_frames']}."
            )


@dataclass(frozen=True)
class SourceShape:
    """What the edit will read of the source: frames (8k + 1) at the size they are brought to."""

    num_frames: int
    height: int
    width: int


def check_source(settings: EditSettings, config: dict) -> SourceShape:
    """Refuse a video that cannot be read or has too few frames for this selection, from its header and packet list
    alone (no frame is decoded); `config` is `checkpoint_config()`. Returns what the edit will read of it."""
    from .video_io import count_frames, probe_video, select_frame_indices

    selection = (
        settings.skip_frames_start,
        settings.skip_frames_end,
        settings.frame_stride,
        None if settings.num_frames == "all" else settings.num_frames or config["transformer"]["sample_frames"],
        config["vae"].get("temporal_compression_ratio", 4),
        settings.sampling,
    )
    info = probe_video(settings.video)
    frames = select_frame_indices(count_frames(settings.video), *selection)
    if settings.mask is not None:  # read with the same selection, frame for frame
        probe_video(settings.mask)
        mask_count = count_frames(settings.mask)
        try:
            mask_frames = len(select_frame_indices(mask_count, *selection))
        except ValueError:  # fewer frames than any source needs: say how many it gives
            mask_frames = len(range(settings.skip_frames_start, mask_count - settings.skip_frames_end,
                                    settings.frame_stride))
        if mask_frames != len(frames):
            raise ValueError(
                f"The mask video {settings.mask!r} gives {mask_frames} frames with this frame selection, the "
                f"video {len(frames)}: give a mask video with a frame for every frame of the source."
            )
    _check_windows_for_checkpoint(settings, config, len(frames))  # --num-frames all: the clip's length decides
    default = default_video_size(config["transformer"], *info.display_size)
    return SourceShape(len(frames), settings.height or default[0], settings.width or default[1])


# ---------------------------------------------------------------------------------------------------------------------
# What an inversion depends on


def inversion_dependencies(settings: EditSettings) -> dict:
    """What an inversion made with these settings depends on, besides the checkpoint (`invert()` records that as
    `settings["model"]`): the video's content (SHA-256) and every `EditSettings` field marked `inversion`; the frame
    selection and size only where a video is read, the mask's settings only with --mask-words (None otherwise).
    JSON values: recorded in a saved inversion (`settings["depends_on"]`), compared by `check_saved_inversion`, and
    hashed for the app's inversion cache and batch's settings hash."""
    values = {"video_sha256": None if settings.video is None else file_digest(settings.video)}
    for f in dataclasses.fields(EditSettings):
        if f.metadata.get("inversion") is not None:
            values[f.name] = getattr(settings, f.name) if _depends_on(f.name, settings) else None
    return json.loads(json.dumps(values))  # as saved and read back: tuples become lists


def _depends_on(name: str, settings: EditSettings) -> bool:
    """Whether an inversion for `settings` depends on the field `name` (see `inversion_dependencies`)."""
    kind = EditSettings.__dataclass_fields__[name].metadata.get("inversion")
    return kind == "always" or (kind == "source" and settings.video is not None) or (
        kind == "mask" and bool(settings.mask_words))


def recorded_dependencies(recorded: dict) -> dict:
    """A saved inversion's `inversion_dependencies`; for one saved by `inv.save()` outside the edit workflow, what
    `invert()` itself records (prompt, steps, strength, fixed-point iterations, the mask's words and threshold)."""
    if "depends_on" in recorded:
        return recorded["depends_on"]
    values = {"steps": recorded.get("num_inference_steps"), "mask_words": recorded.get("mask_words")}
    for name in ("strength", "fixed_point_iterations", "mask_threshold"):
        if name in recorded:
            values[name] = recorded[name]
    if isinstance(recorded.get("prompt"), str):
        values["source_prompt"] = recorded["prompt"]
    return values


def _flag_value(name: str, value) -> str:
    """How to pass `value` to the flag of the field `name`, as typed on the command line."""
    import shlex

    flag = "--" + name.replace("_", "-")
    if value is None:
        return f"leave {flag} out"
    if isinstance(value, bool):
        return f"pass {flag if value else '--no-' + name.replace('_', '-')}"
    if isinstance(value, list):
        return f"pass {flag} " + shlex.quote(",".join(map(str, value)))
    return f"pass {flag} {shlex.quote(str(value))}"


def inversion_differences(settings: EditSettings, recorded: dict, source: SourceShape | None = None) -> list[str]:
    """Each way the saved inversion (its `recorded` settings) differs from what this edit would invert, naming the
    flag that makes them agree; `source` is what the edit reads of the video (`check_source`)."""
    before, now = recorded_dependencies(recorded), inversion_dependencies(settings)
    differences = []
    if before.get("video_sha256") and now["video_sha256"] and before["video_sha256"] != now["video_sha256"]:
        made_from = (recorded.get("source") or {}).get("video")
        differences.append(f"it was made from another video ({made_from!r}, by content): pass that video, or leave "
                           "--inversion out to invert this one")
    windows = recorded.get("windows")
    if settings.window_weighting is not None and windows and windows.get("scheme") != settings.window_weighting:
        # the saved windows' own record (also in inversions saved outside the edit workflow); one window: no weighting
        differences.append(f"its windows were weighted {windows.get('scheme')!r}, not {settings.window_weighting!r}: "
                           f"pass --window-weighting {windows.get('scheme')}, or leave it out")
    for name, value in now.items():
        if name in ("video_sha256", "window_weighting") or name not in before or not _depends_on(name, settings) or (
                before[name] == value):
            continue
        if name == "mask_words":
            differences.append(f"it recorded no mask for --mask-words {value} (it has {before[name]}): invert again "
                               "with these --mask-words, or give a --mask video")
        elif name == "mask_threshold":
            differences.append(f"it thresholded its mask at {before[name]}, not {value}: pass --mask-threshold "
                               f"{before[name]}")
        else:
            label = "num_inference_steps" if name == "steps" else name
            differences.append(f"{label}={before[name]!r}, not {value!r}: {_flag_value(name, before[name])}")
    made = tuple(recorded.get(key) for key in ("num_frames", "height", "width"))
    if source is not None and not differences and None not in made and made != dataclasses.astuple(source):
        differences.append(
            f"it holds {made[0]} frames of {made[2]}x{made[1]}, this edit reads the video as {source.num_frames} "
            f"frames of {source.width}x{source.height}: pass the frame selection and size it was made with"
        )
    return differences


def checkpoint_fingerprint(config: dict) -> dict:
    """What `invert()` records of the checkpoint (`inversion_fingerprint()`), from `checkpoint_config()` alone: the
    structure and noise schedule, with the defaults a config file leaves out filled in as loading would, and the
    DDIM scheduler the pipeline steps with (a multistep scheduler's config rebuilt as `CogVideoXDDIMScheduler`); no
    weights digest, which needs the weights."""
    import inspect

    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel, DDIMScheduler

    from .cogvideox_ddim_output import config_fingerprint

    def with_defaults(cls, values):
        defaults = {name: parameter.default for name, parameter in inspect.signature(cls.__init__).parameters.items()
                    if parameter.default is not inspect.Parameter.empty}
        return {**defaults, **values}

    scheduler = config.get("scheduler") or {}
    ddim = DDIMScheduler if scheduler.get("_class_name") == "DDIMScheduler" else CogVideoXDDIMScheduler
    return config_fingerprint(with_defaults(CogVideoXTransformer3DModel, config["transformer"]),
                              with_defaults(AutoencoderKLCogVideoX, config["vae"]),
                              dict(ddim.from_config(scheduler).config))


def check_inversion_checkpoint(recorded: dict, config: dict, model: str | None = None):
    """The checkpoint a saved inversion was made with (`recorded["model"]`, `invert()`'s fingerprint) against the one
    about to load (`config`, `checkpoint_config()` of `model`): its structure and noise schedule, before any weights
    load. The weights themselves are compared by the pipeline as it loads the inversion (`check_inversion`)."""
    from .cogvideox_ddim_output import check_fingerprint

    if not recorded.get("model"):
        raise ValueError(
            "This inversion does not record the checkpoint that made it (it was not made by `invert()`), so it cannot "
            "be checked against --model: invert the video again."
        )
    try:
        check_fingerprint(recorded["model"], {"name_or_path": model, **checkpoint_fingerprint(config)})
    except ValueError as error:
        raise ValueError(f"{error} (--model)") from None


def check_saved_inversion(settings: EditSettings, config: dict, source: SourceShape | None = None,
                          model: str | None = None):
    """Refuse a saved inversion (read from its header alone) made with other settings than this edit's, naming each
    difference and the flag to change, or without a record of its checkpoint."""
    from .pipeline_cogvideox_ddim_inversion import CogVideoXDDIMInversionOutput

    recorded = CogVideoXDDIMInversionOutput.read_settings(settings.inversion)
    check_inversion_checkpoint(recorded, config, model)
    differences = inversion_differences(settings, recorded, source)
    if differences:
        raise ValueError(
            f"The inversion {settings.inversion!r} was made with other settings than this edit: "
            + "; ".join(differences) + ". Change these, or leave --inversion out to invert again."
        )


# ---------------------------------------------------------------------------------------------------------------------
# Loading


def resolve_device(device: str) -> str:
    """`--device auto`: cuda when available, else the CPU."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_device_and_dtype(device: str, dtype: str):
    import torch

    device = resolve_device(device)
    if dtype == "auto":
        dtype = "bf16" if device.startswith("cuda") else "fp32"
    return device, getattr(torch, DTYPES[dtype])


def load_pipeline(settings: ModelSettings, log=None):
    """Load the checkpoint into `CogVideoXDDIMInversionPipeline` (quantized while loading with --quantize) and fit it
    to the device with `cogvideox_ddim_memory.apply_memory_options` (fp8 storage, the offload rung, the step cache).
    Returns the pipeline and a dict of what was chosen (device, dtype, every memory option with the offload rung
    chosen, VAE tiling, free memory), for run.json."""
    import torch

    from .pipeline_cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline

    log = log or (lambda message: None)
    device, torch_dtype = resolve_device_and_dtype(settings.device, settings.dtype)
    options = settings.memory_options()
    check_memory_options(options, device)  # as the settings were made; again for settings changed since
    storage = " ".join(flag for flag, on in ((f"--weights {options.weights}", options.weights != "bf16"),
                                             (f"--quantize {options.quantize}", options.quantize is not None)) if on)
    log(f"Loading {settings.model} ({str(torch_dtype).removeprefix('torch.')}{', ' + storage if storage else ''}) "
        f"for {device}...")
    pipe = CogVideoXDDIMInversionPipeline.from_pretrained(settings.model, dtype=torch_dtype,
                                                          quantization_config=quantization_config(options))
    memory = apply_memory_options(pipe, options, device)
    cuda = torch.device(device).type == "cuda"
    tiling = settings.vae_tiling == "on" or (settings.vae_tiling == "auto" and cuda)
    if tiling:
        pipe.vae.enable_tiling()
        pipe.vae.enable_slicing()
    if settings.compile:
        pipe.transformer.compile()
    chosen = {"device": device, "dtype": str(torch_dtype).removeprefix("torch."), **memory, "vae_tiling": tiling,
              "compile": settings.compile}
    free = memory["free_gpu_memory_gib"]
    log(f"Memory: offload {memory['offload']}, VAE tiling {'on' if tiling else 'off'}"
        + (f", cache {options.cache}" if options.cache else "")
        + ("" if free is None else f", {free:.1f} GiB free on {device}"))
    return pipe, chosen


# ---------------------------------------------------------------------------------------------------------------------
# Editing


@dataclass
class SourceVideo:
    """The source frames an edit inverts, and the frame rate its outputs are written at (`playback_rate`)."""

    frames: "np.ndarray"  # noqa: F821 (uint8 [F, H, W, 3], 8k + 1 frames at the model's size for this source)
    fps: float
    fps_from: str  # how `fps` was chosen, recorded in run.json
    indices: list[int]  # the frames' numbers in the source


def read_source(pipe, settings: EditSettings) -> SourceVideo:
    """The source frames to invert, selected and resized while decoding, and the rate to write its edits at."""
    import numpy as np

    read = _read_selected_frames(pipe, settings, settings.video, settings.height, settings.width)
    fps, fps_from = playback_rate(read, settings.sampling, pipe.transformer.config)
    return SourceVideo(np.stack([np.asarray(frame) for frame in read.frames]), fps, fps_from, read.indices)


def checkpoint_fps(transformer_config) -> float:
    """The frame rate the checkpoint's videos play at (model cards): 8 fps, 16 for CogVideoX 1.5 (temporal patches)."""
    return 16.0 if transformer_config.get("patch_size_t") is not None else 8.0


def playback_rate(read, sampling: str, transformer_config) -> tuple[float, str]:
    """The frame rate an edit of the frames `read` is written at, and how it was chosen: the pace of the frames used,
    from their timestamps (a stride or a variable frame rate included; the container's average rate over the stride
    where the file lists no usable timestamps). Frames spread over a clip (`sampling="spread"`) whose pace is slower
    than the checkpoint's frame rate (`checkpoint_fps`) play at that rate instead, a time-lapse: 9 frames of a
    5-minute clip would otherwise play for 5 minutes."""
    from .video_io import index_frames

    fps, fps_from = read.fps, "the source's average frame rate over the stride"
    first, last = read.indices[0], read.indices[-1]
    index = index_frames(read.source.path) if last > first else None
    if index is not None and last < len(index) and index.times[last] > index.times[first]:
        fps = (len(read.indices) - 1) / float(index.times[last] - index.times[first])
        fps_from = "the timestamps of the frames used"
    native = checkpoint_fps(transformer_config)
    if sampling == "spread" and fps < native:
        return native, f"the checkpoint's frame rate: the spread frames' own pace ({fps:.3g} fps) is slower"
    return round(fps, 3), fps_from


def _read_selected_frames(pipe, settings: EditSettings, path: str, height: int | None, width: int | None):
    """`path`'s frames with the edit's frame selection and resize mode: the source, or a mask frame for frame."""
    return pipe.read_source_video(
        path,
        height=height,
        width=width,
        resize_mode=settings.resize_mode,
        num_frames=settings.num_frames,
        sampling=settings.sampling,
        skip_frames_start=settings.skip_frames_start,
        skip_frames_end=settings.skip_frames_end,
        frame_stride=settings.frame_stride,
    )


def read_mask(pipe, settings: EditSettings, inv):
    """The edit mask `[1, F, H, W]` (bool): `settings.mask` read with the source's frame selection and brought to the
    inversion's size with its resize mode (white = may change), or the inversion's own (`--mask-words`); None
    without either."""
    import numpy as np
    import torch

    if settings.mask is None:
        return inv.mask if settings.mask_words else None
    height, width = (size * pipe.vae_scale_factor_spatial for size in inv.latents.shape[3:])
    read = _read_selected_frames(pipe, settings, settings.mask, height, width)
    gray = np.stack([np.asarray(frame.convert("L")) for frame in read.frames])
    return torch.from_numpy(gray > 127)[None]  # compression blurs a black and white video: threshold at half


def invert_source(pipe, settings: EditSettings, source: SourceVideo | None = None, log=None):
    """The inversion of the source: loaded from `settings.inversion` (checked against `pipe`), or computed from
    `source`; saved to `settings.save_inversion` when asked."""
    from .pipeline_cogvideox_ddim_inversion import CogVideoXDDIMInversionOutput

    log = log or (lambda message: None)
    if settings.inversion is not None:
        inv = CogVideoXDDIMInversionOutput.load(settings.inversion, pipeline=pipe)
        log(f"Reusing the inversion {settings.inversion} ({inv.trajectory.shape[0]} steps, no inversion run).")
        return inv
    frames = source.frames
    log(f"Inverting {len(frames)} frames with {settings.steps} steps...")
    inv = pipe.invert(
        video=frames,
        prompt=settings.source_prompt,
        num_inference_steps=settings.steps,
        strength=settings.strength,
        fixed_point_iterations=settings.fixed_point_iterations,
        height=frames.shape[1],
        width=frames.shape[2],
        max_sequence_length=pipe.transformer.config.max_text_seq_length,
        trajectory_device=settings.trajectory_device,
        mask_words=settings.mask_words,
        mask_threshold=settings.mask_threshold,
        mask_blocks=settings.mask_blocks,
        mask_steps=settings.mask_steps,
        mask_refine=settings.mask_refine,
        window_overlap=settings.window_overlap,
        window_batch_size=settings.window_batch_size,
        window_weighting=settings.window_weighting,
    )
    inv.fps = source.fps
    inv.settings["source"] = {
        "video": None if settings.video is None else os.path.abspath(settings.video),
        **{name: getattr(settings, name) for name in
           ("skip_frames_start", "skip_frames_end", "frame_stride", "num_frames", "sampling", "resize_mode")},
        "frame_indices": source.indices,
        "fps_from": source.fps_from,
    }
    inv.settings["depends_on"] = inversion_dependencies(settings)  # compared when it is reused (--inversion)
    if settings.save_inversion:
        try:
            inv.save(settings.save_inversion)
        except OSError as error:  # checked before loading; a full disk, or a folder changed since, fails here
            raise OSError(f"Could not save the inversion to {settings.save_inversion!r}: "
                          f"{error.strerror or error}.") from None
        log(f"Saved the inversion to {settings.save_inversion}.")
    return inv


def _image_latents(pipe, settings: EditSettings, inv):
    """Image-to-video conditioning of the edits: the inversion's (the source's first frame) or `settings.image`."""
    if not pipe.is_image_to_video:
        return None
    if settings.image is None:
        return inv.image_latents
    import PIL.Image

    from .video_io import frames_to_tensor, resize_frames

    height, width = (size * pipe.vae_scale_factor_spatial for size in inv.latents.shape[3:])
    frame = frames_to_tensor([PIL.Image.open(settings.image).convert("RGB")])[:, 0]  # [1, 3, H, W] in [0, 1]
    # Resized as the source frames were (--resize-mode), so that an edited first frame lines up with the video.
    image = resize_frames(frame, height, width, settings.resize_mode) * 2 - 1
    device = pipe._execution_device
    return pipe.prepare_image_latents(image, inv.latents.shape[1], inv.latents.dtype, device)


def regenerate(pipe, inv, prompts: list[str], settings: EditSettings, guidance: float, negative_prompt: str,
               callback=None, mask=None, source_frames=None, what: str = "the edit"):
    """Regenerate the inverted video under `prompts` (batched: in shared mode they share one reference row per step),
    changing only inside `mask` when given (pasting `source_frames` back outside it with `settings.paste_back`).
    Returns float frames [N, F, H, W, 3] in [0, 1], checked finite (errors name the call: `what`, the prompts)."""
    import numpy as np
    import torch

    generator = torch.Generator(device="cpu").manual_seed(settings.seed)
    start = inv.trajectory[0] if settings.start == "inverted" else None
    local_edit = {}
    if mask is not None:
        local_edit = dict(mask=mask, source_latents=inv.latents, paste_back=settings.paste_back,
                          source_video=source_frames if settings.paste_back else None, mask_steps=settings.mask_steps,
                          mask_dilation=settings.mask_dilation, mask_feather=settings.mask_feather)
    image_latents = _image_latents(pipe, settings, inv)  # read and encoded once, not per chunk of prompts
    match_cache_to_steps(pipe.transformer, settings.steps, settings.strength)  # --cache mag counts the edit's steps
    videos = []
    batch = settings.prompt_batch_size or len(prompts)
    for first in range(0, len(prompts), batch):
        chunk = prompts[first : first + batch]
        videos.append(_call(
            pipe,
            f"{what} (pipeline call under the prompts {chunk})",
            prompt=chunk,
            negative_prompt=[negative_prompt] * len(chunk),
            guidance_scale=guidance,
            latents=start,
            generator=generator,
            reference_latents=inv.trajectory,
            reference_timesteps=inv.timesteps,
            reference_prompt=settings.source_prompt,
            reference_mode=settings.reference_mode,
            reference_steps=settings.reference_steps,
            reference_blocks=settings.reference_blocks,
            reference_weight=settings.reference_weight,
            strength=settings.strength,
            image_latents=image_latents,
            # an edited first frame conditions the edit; the reference rows keep the inversion's own conditioning
            reference_image_latents=inv.image_latents if settings.image is not None else None,
            num_inference_steps=settings.steps,
            max_sequence_length=pipe.transformer.config.max_text_seq_length,
            callback_on_step_end=callback,
            output_type="np",
            window_overlap=settings.window_overlap,
            window_batch_size=settings.window_batch_size,
            window_weighting=settings.window_weighting,
            reference_windows=inv.windows,
            **local_edit,
        ).frames)
    return np.concatenate(videos)


class NonFiniteOutputError(ValueError):
    """A call produced NaN or inf values: written as a video they would be black (the cast to uint8 makes NaN 0)."""


def _call(pipe, name: str, **kwargs):
    """`pipe(**kwargs)`, its frames checked finite; `name` says which call it was in errors."""
    try:
        output = pipe(**kwargs)
    except FloatingPointError as error:  # the pipeline's own check of the final latents
        raise NonFiniteOutputError(f"{name} failed: {error}") from None
    check_finite(output.frames, name)
    return output


def check_finite(frames, produced_by: str):
    """Refuse decoded frames with NaN or inf values (one check before anything is written: a NaN casts to a black
    pixel), naming the call that produced them."""
    import numpy as np

    frames = np.asarray(frames)
    bad = int(np.size(frames) - np.count_nonzero(np.isfinite(frames)))
    if bad:
        raise NonFiniteOutputError(
            f"{produced_by} produced {bad} of {frames.size} pixel values that are NaN or inf; nothing was written for "
            "it. Run in float32 or bfloat16 rather than float16 (--dtype), or check the inversion (--inversion)."
        )


def to_uint8(frames, produced_by: str = "the pipeline"):
    """Pipeline `output_type="np"` frames (floats in [0, 1]) as uint8, rounded; NaN or inf is refused, naming the call
    that `produced_by` them (`check_finite`)."""
    import numpy as np

    check_finite(frames, produced_by)
    return np.clip(np.asarray(frames) * 255.0, 0, 255).round().astype(np.uint8)


def decode_inversion(pipe, inv):
    """The inversion's clean latents decoded (uint8 `[F, H, W, 3]`): the source as the model encoded it, for the
    source panel of side_by_side.mp4 when no video is read (`--inversion` alone)."""
    import torch

    latents = inv.latents[:1].to(device=pipe._execution_device, dtype=pipe.vae.dtype)
    with torch.no_grad():
        video = pipe.video_processor.postprocess_video(video=pipe.decode_latents(latents), output_type="np")
    pipe.maybe_free_model_hooks()
    return to_uint8(video[0], "decoding the inversion's clean latents (the source panel of side_by_side.mp4)")


def _fit(frames, height: int, width: int):
    """Source frames at the output size, for the side-by-side video."""
    import numpy as np
    import PIL.Image

    if frames.shape[1:3] == (height, width):
        return frames
    return np.stack([np.asarray(PIL.Image.fromarray(f).resize((width, height), PIL.Image.BICUBIC)) for f in frames])


def _versions() -> dict:
    import importlib.metadata

    versions = {}
    for name in ("cogvideox-ddim-inversion", "torch", "diffusers", "transformers", "accelerate", "imageio-ffmpeg"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def write_json(data: dict, path: str):
    """Write JSON whole or not at all (`atomic_write`), with the user's usual permissions."""
    with atomic_write(path, suffix=".json") as partial, open(partial, "w") as file:
        json.dump(data, file, indent=2, default=str)


def remove_previous_run(output_dir: str, log=None):
    """Remove the outputs of the run whose run.json is in `output_dir`, run.json first: a rerun's outputs are then
    exactly what its own run.json lists. Only the video files that run.json lists, by their names in `output_dir`, are
    removed; nothing else (not a saved inversion, nor files the tool did not write)."""
    path = os.path.join(output_dir, "run.json")
    try:
        with open(path) as file:
            listed = json.load(file).get("outputs") or {}
    except (OSError, ValueError, AttributeError):  # none, or not one this tool wrote
        return
    os.remove(path)
    for name, output in listed.items():
        filename = os.path.basename(str(output))
        if name not in ("run", "inversion") and OUTPUT_FILE.fullmatch(filename):
            try:
                os.remove(os.path.join(output_dir, filename))
            except FileNotFoundError:
                pass
    (log or (lambda message: None))(f"Replacing the previous run in {output_dir}.")


def edit_video(pipe, settings: EditSettings, output_dir: str, load_info: dict | None = None, log=None,
               write_outputs: bool = True) -> dict:
    """Invert (or load the inversion of) `settings.video` and write into `output_dir`: `edit-<n>.mp4` per prompt,
    `side_by_side.mp4` (source | edits), `reconstruction.mp4` on request, and `run.json` (settings, versions, timings,
    outputs), written last. Returns the run record.

    A previous run in `output_dir` is replaced (`remove_previous_run`). A run that fails removes the videos it wrote
    and the folder if it made it (a saved inversion, complete, is kept): outputs are those of one whole run or none.
    `write_outputs=False` computes everything and writes nothing (context parallelism: every process computes the
    edit, process 0 writes it); its record lists no outputs."""
    log = log or (lambda message: None)
    if not write_outputs:
        return _edit_into(pipe, dataclasses.replace(settings, save_inversion=None), None, {}, load_info, log)
    created = not os.path.isdir(output_dir)
    os.makedirs(output_dir, exist_ok=True)  # checked by `prepare_edit`; made only now that there is work to write
    remove_previous_run(output_dir, log)
    outputs = {}
    try:
        return _edit_into(pipe, settings, output_dir, outputs, load_info, log)
    except BaseException:
        for name, path in outputs.items():
            if name != "inversion" and os.path.isfile(path):
                os.remove(path)
        if created:
            try:
                os.rmdir(output_dir)  # only if empty: a saved inversion inside keeps it
            except OSError:
                pass
        raise


def _edit_into(pipe, settings: EditSettings, output_dir: str, outputs: dict, load_info: dict | None, log) -> dict:
    """`edit_video`'s work; each file written is added to `outputs` as soon as it exists (none without
    `output_dir`)."""
    import numpy as np

    from .callbacks import GuidanceScaleCallback
    from .video_io import write_mask_video, write_video

    timings = {}
    started = time.perf_counter()
    source = read_source(pipe, settings) if settings.video is not None else None
    frames = None if source is None else source.frames
    timings["read_s"] = time.perf_counter() - started

    started = time.perf_counter()
    inv = invert_source(pipe, settings, source, log)
    timings["invert_s"] = time.perf_counter() - started
    if settings.save_inversion:
        outputs["inversion"] = os.path.abspath(settings.save_inversion)
    if settings.fps:
        fps, fps_from = settings.fps, "--fps"
    elif source is not None:
        fps, fps_from = source.fps, source.fps_from
    elif inv.fps:
        how = (inv.settings.get("source") or {}).get("fps_from")
        fps, fps_from = inv.fps, "the saved inversion's frame rate" + (f" ({how})" if how else "")
    else:
        fps, fps_from = 8.0, "8 fps: the saved inversion records no frame rate"

    def write(name: str, video, writer=write_video):
        if output_dir is not None:
            outputs[name] = writer(video, os.path.join(output_dir, f"{name}.mp4"), fps)

    edits = None
    mask = read_mask(pipe, settings, inv)
    if mask is not None:
        write("mask", mask[0], write_mask_video)
    if settings.prompts:
        started = time.perf_counter()
        ramp = None
        if settings.guidance_ramp is not None:
            ramp = GuidanceScaleCallback(settings.guidance_ramp, cutoff_step_ratio=settings.guidance_ramp_at)
        log(f"Editing under {len(settings.prompts)} prompt(s)...")
        edits = to_uint8(regenerate(pipe, inv, settings.prompts, settings, settings.guidance,
                                    settings.negative_prompt, ramp, mask=mask, source_frames=frames), "the edit")
        timings["edit_s"] = time.perf_counter() - started
        for index, edit in enumerate(edits, start=1):
            write(f"edit-{index}", edit)
    if settings.reconstruction:
        started = time.perf_counter()
        log("Reconstructing with the source prompt...")
        # the source regenerated as it was inverted: conditioned on the inversion's own image, not on --image
        reconstruction = regenerate(pipe, inv, [settings.source_prompt], dataclasses.replace(settings, image=None),
                                    1.0, "", what="the reconstruction")
        timings["reconstruction_s"] = time.perf_counter() - started
        write("reconstruction", to_uint8(reconstruction[0], "the reconstruction"))
    if edits is not None:
        height, width = edits.shape[2:4]
        source_panel = frames if frames is not None else decode_inversion(pipe, inv)
        write("side_by_side", np.concatenate([_fit(source_panel, height, width), *edits], axis=2))

    record = {
        "settings": {**dataclasses.asdict(settings), "extra": None, **settings.extra},
        "load": load_info or {},
        "inversion": {k: v for k, v in inv.settings.items() if k != "model"} | {"model": inv.settings.get("model")},
        "fps": fps,
        "fps_from": fps_from,
        "timings_s": {name: round(value, 3) for name, value in timings.items()},
        "outputs": dict(outputs),
        "versions": _versions(),
    }
    if output_dir is not None:
        write_json(record, os.path.join(output_dir, "run.json"))
        record["outputs"]["run"] = outputs["run"] = os.path.join(output_dir, "run.json")
    return record


def print_log(message: str):
    print(message, file=sys.stderr, flush=True)
