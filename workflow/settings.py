"""Every user option, described once: the table the command line, batch, the web page, run.json and the pipeline calls
are derived from.

An `Option` holds a field's type (`Kind`), default, bounds or choices, help, the pipeline parameter it feeds, its flag
and its page label. `EDIT_OPTIONS` (one video and what to do with it) and `MODEL_OPTIONS` (which checkpoint, where,
in how much memory) are `OptionTable`s; each makes its settings dataclass (`EditSettings`, `ModelSettings`), so a new
option is one `Option` here and, where a pipeline parameter takes it, nothing else: the flag (`workflow.flags`), the
batch key (`workflow.jobs`), the page control and its reader (`app.fields`), run.json and the keyword arguments of
`invert()` / `__call__` (`pipeline_arguments`) all follow.

Messages name options by placeholders (`{steps}`); `SettingsError(field, template)` carries the field, and each front
end renders the template in its own words (`render_names`): the command line with flags, the page with labels, batch
with its JSON keys, Python with the pipeline's parameter names. This module imports neither torch nor diffusers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable, Iterable

from ..cogvideox_ddim_choices import (
    CACHES,
    DEFAULT_MODEL,
    DEFAULT_WINDOW_WEIGHTING,
    OFFLOAD_MODES,
    QUANTIZE,
    REFERENCE_MODES,
    RESIZE_MODES,
    SAMPLING_MODES,
    START_MODES,
    WEIGHTS,
    WINDOW_WEIGHTINGS,
)
from ..cogvideox_ddim_errors import ParameterError, literal, parameters_of, rename, render
from .option_types import (  # noqa: F401  (the kinds and parsers are the table's vocabulary: importable from here)
    AUTO,
    BLOCKS,
    CHOICE,
    FLOAT,
    FRAMES,
    INT,
    OPTIONAL_CHOICE,
    OPTIONAL_FLOAT,
    OPTIONAL_INT,
    OPTIONAL_TEXT,
    PATH,
    PROMPTS,
    RATIOS,
    RECORD,
    STEP_RANGE,
    SWITCH,
    TEXT,
    TRISTATE,
    WORDS,
    Kind,
    Option,
    OptionTable,
    parse_blocks,
    parse_bool,
    parse_frames,
    parse_optional_bool,
    parse_path,
    parse_prompts,
    parse_ratios,
    parse_step_range,
    parse_words,
)


DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}  # torch loads only when a command runs
# One DDIM step goes from pure noise (zero terminal SNR, as every CogVideoX schedule has) straight to a clean video and
# cannot be inverted; the pipeline refuses it too, but only once the weights are loaded.
MIN_STEPS = 2
STYLES = ("cli", "page", "batch", "python")  # the front ends that name options in messages
# Names of the entry points' own arguments (where a run writes, how it is launched), not options of an edit.
DESTINATIONS = {
    "output_dir": {"cli": "--output-dir", "page": "the output folder", "batch": "--output-dir",
                   "python": "`output_dir`"},
    "context_parallel": {"cli": "--context-parallel", "page": "context parallelism", "batch": "--context-parallel",
                         "python": "`degree`"},
}



# ---------------------------------------------------------------------------------------------------------------------
# Errors that carry their field


def find_option(name: str, table: OptionTable | None = None) -> Option | None:
    """The option called `name`, or feeding the pipeline parameter `name`: in `table`, then the edit and model
    tables."""
    tables = [t for t in (table, EDIT_OPTIONS, MODEL_OPTIONS) if t is not None]
    for candidate in tables:
        if name in candidate:
            return candidate[name]
    for candidate in tables:
        option = candidate.by_parameter(name)
        if option is not None:
            return option
    return None


def render_names(table: OptionTable | None, style: str, overrides: dict | None = None) -> Callable[[str], str]:
    """How `style` ("cli", "page", "batch", "python") names the option `name` in a message; `overrides` names some
    options otherwise (e.g. `invert`'s `--output` for `save_inversion`)."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}")
    overrides = overrides or {}

    def name_of(name: str) -> str:
        if name in overrides:
            return overrides[name]
        if name in DESTINATIONS:
            return DESTINATIONS[name][style]
        option = find_option(name, table)
        if option is None:
            return f"`{name}`" if style == "python" else name
        if style == "cli":
            return option.flag_name or option.name
        if style == "page":
            return f'"{option.page_label}"'
        if style == "batch":
            return option.name
        return f"`{option.parameter_name or option.name}`"

    return name_of


class SettingsError(ValueError):
    """A bad setting, naming its `field`: `template` names options as `{name}` (fields of `EDIT_OPTIONS` or
    `MODEL_OPTIONS`), which `render(style)` writes in a front end's words. `str()` is the Python rendering."""

    def __init__(self, field: str, template: str, table: OptionTable | None = None):
        self.field = field
        self.template = template
        self.table = table
        super().__init__(self.render("python"))

    def render(self, style: str, overrides: dict | None = None) -> str:
        return render(self.template, render_names(self.table, style, overrides))

    @property
    def fields(self) -> list[str]:
        """Every option the message names, its own field first."""
        return list(dict.fromkeys([self.field, *parameters_of(self.template)]))

    @classmethod
    def from_parameter_error(cls, error: ParameterError, table: OptionTable | None = None) -> "SettingsError":
        """A shipped module's `ParameterError` (which names pipeline parameters) as the error of the option that
        feeds that parameter, with the same message."""

        def field_name(parameter: str) -> str:
            option = find_option(parameter, table)
            return option.name if option is not None else parameter

        template = rename(error.template, field_name)
        return cls(field_name(error.parameter), template, table)


def render_error(error: BaseException, style: str, overrides: dict | None = None) -> str:
    """An error's message in a front end's words: a `SettingsError` (or a shipped `ParameterError`) rendered for
    `style`, anything else as it is."""
    if isinstance(error, ParameterError) and not isinstance(error, SettingsError):
        error = SettingsError.from_parameter_error(error)
    if isinstance(error, SettingsError):
        return error.render(style, overrides)
    return str(error)


# ---------------------------------------------------------------------------------------------------------------------
# The edit options


SOURCE, FRAMES_GROUP, INVERSION, MASK_WORDS, EDIT, REFERENCE, LOCAL, OUTPUTS = (
    "source", "frames", "inversion", "mask (local edits)", "edit", "reference attention", "local edits", "outputs")
EDIT_ONLY = ("edit", "batch")

EDIT_OPTION_LIST = (
    Option("video", PATH, None, "input video file (any format ffmpeg reads); optional with {inversion}", SOURCE,
           flag=None, parameter=None, label="Source video", commands=()),
    Option("prompts", PROMPTS, [], "prompt of an edit; repeat for several edits of one inversion, written as "
           "edit-1.mp4, ... (default: none)", EDIT, flag="--prompt", parameter="prompt", label="Edit prompt",
           metavar="PROMPT", commands=EDIT_ONLY),
    Option("source_prompt", TEXT, "", "prompt the video is inverted (and reconstructed) with (default: empty, as "
           "published)", SOURCE, parameter="prompt", feeds=("invert",), inversion="always"),
    Option("negative_prompt", TEXT, "", "negative prompt of the edits; the source prompt often works well here "
           "(default: empty)", EDIT, commands=EDIT_ONLY),
    Option("steps", INT, 50, f"DDIM steps, for inversion and regeneration, at least {MIN_STEPS} (default: "
           "%(default)s)", INVERSION, parameter="num_inference_steps", feeds=("invert", "call"),
           minimum=MIN_STEPS, inversion="always"),
    Option("guidance", FLOAT, 6.0, "classifier-free guidance scale of the edits (default: %(default)s)", EDIT,
           parameter="guidance_scale", minimum=1, commands=EDIT_ONLY),
    Option("guidance_ramp", OPTIONAL_FLOAT, None, "raise guidance to SCALE after {guidance_ramp_at} of the steps: "
           "low, then high guidance (default: off)", EDIT, parameter=None, metavar="SCALE", commands=EDIT_ONLY),
    Option("guidance_ramp_at", FLOAT, 0.5, "with {guidance_ramp}: the fraction of the steps after which guidance is "
           "raised (default: %(default)s)", EDIT, parameter=None, label="Ramp at", metavar="FRACTION",
           minimum=0, maximum=1, commands=EDIT_ONLY),
    Option("seed", INT, 42, "seed of the noise (with {start} noise) and any sampling (default: %(default)s)", EDIT,
           parameter=None, commands=EDIT_ONLY),
    Option("height", OPTIONAL_INT, None, "default: the model's size for this source", FRAMES_GROUP,
           feeds=("invert",), inversion="source"),
    Option("width", OPTIONAL_INT, None, "default: the model's size for this source", FRAMES_GROUP,
           feeds=("invert",), inversion="source"),
    Option("num_frames", FRAMES, None, "most frames to use, trimmed to 8k + 1 (an odd number of latent frames: 9, "
           "17, ..., 49; default: the model's native count, 49); 'all': the whole clip. More than the native count "
           "runs in overlapping windows of it (text-to-video checkpoints)", FRAMES_GROUP, label="Frames",
           metavar="N or all", inversion="source"),
    Option("skip_frames_start", INT, 0, "source frames to skip at the start (default: %(default)s)", FRAMES_GROUP,
           label="Skip frames at the start", minimum=0, inversion="source"),
    Option("skip_frames_end", INT, 0, "source frames to skip at the end (default: %(default)s)", FRAMES_GROUP,
           label="Skip frames at the end", minimum=0, inversion="source"),
    Option("frame_stride", INT, 1, "with {sampling} first: take every N-th frame (default: %(default)s)",
           FRAMES_GROUP, minimum=1, inversion="source"),
    Option("sampling", CHOICE, "first", "'first': the first frames (with the stride); 'spread': evenly spaced over "
           "the clip, written as a time-lapse when sparse (see {fps}) (default: %(default)s)", FRAMES_GROUP,
           label="Frame sampling", choices=SAMPLING_MODES, inversion="source"),
    Option("resize_mode", CHOICE, "crop", "fit the source to the model's size: 'crop' (cover, centre crop), 'pad', "
           "'stretch' (default: %(default)s)", FRAMES_GROUP, choices=RESIZE_MODES, inversion="source"),
    Option("window_overlap", OPTIONAL_INT, None, "clips longer than the native count: frames neighbouring windows "
           "share, a multiple of 4 (default: a quarter of the window, 12 for 49 frames)", FRAMES_GROUP,
           feeds=("invert", "call"), metavar="FRAMES", minimum=0, inversion="always"),
    Option("window_batch_size", INT, 1, "clips longer than the native count: windows per transformer call; 1 uses "
           "the least memory, more is faster on a large GPU (default: %(default)s)", FRAMES_GROUP,
           label="Windows per call", feeds=("invert", "call"), metavar="N", minimum=1, memory_only=True),
    Option("window_weighting", OPTIONAL_CHOICE, None, "clips longer than the native count: how the predictions of "
           "overlapping windows are averaged per frame: equally (flat), more towards each window's middle (pyramid: "
           f"a linear cross-fade) or a raised cosine (hann) (default: {DEFAULT_WINDOW_WEIGHTING}, or a reused "
           "inversion's own)", FRAMES_GROUP, feeds=("invert", "call"), choices=WINDOW_WEIGHTINGS,
           inversion="always"),
    Option("strength", FLOAT, 1.0, "invert and regenerate only the last fraction of the schedule, keeping more of "
           "the source (default: %(default)s)", INVERSION, feeds=("invert", "call"), inversion="always"),
    Option("fixed_point_iterations", INT, 0, "extra evaluations per inversion step for an exact round trip, 2-4 "
           "(default: %(default)s)", INVERSION, feeds=("invert",), label="Fixed-point iterations", minimum=0,
           inversion="always"),
    Option("trajectory_device", OPTIONAL_TEXT, None, "where to keep the inverted trajectory: 'cpu' keeps it in "
           "host memory and copies one step at a time to the GPU (default: the model's device)", INVERSION,
           feeds=("invert",), metavar="DEVICE", memory_only=True, page=False),
    Option("mask_words", WORDS, None, "words of {source_prompt} (comma or space separated): the inversion records "
           "the model's attention to them as the edit mask (edit writes it as mask.mp4; invert saves it in the "
           "inversion and beside it as NAME.mask.mp4); edits change only inside it (default: none)", MASK_WORDS, feeds=("invert",), metavar="WORD", inversion="mask"),
    Option("mask_threshold", FLOAT, 0.5, "with {mask_words}: the mask is where the attention, scaled to [0, 1], "
           "exceeds this (lower: a larger mask; default: %(default)s)", MASK_WORDS, feeds=("invert",), minimum=0,
           maximum=1, inversion="mask"),
    Option("mask_blocks", BLOCKS, None, "with {mask_words}: transformer blocks whose attention is recorded "
           "(default: the last)", MASK_WORDS, feeds=("invert",), metavar="I,J,...", inversion="mask"),
    Option("mask_steps", STEP_RANGE, 1.0, "with a mask: the fraction of the steps (or a window) on which the "
           "inversion records the attention ({mask_words}) and the edit keeps the source outside the mask (default: "
           "%(default)s)", MASK_WORDS, feeds=("invert",), metavar="END or START,END", inversion="mask"),
    Option("mask_refine", TRISTATE, None, "with {mask_words}: snap the mask to the source frames' edges (default: on "
           "when a video is inverted)", MASK_WORDS, feeds=("invert",), label="Refine the mask", inversion="mask"),
    Option("start", CHOICE, "inverted", "start from the inverted noise (closer to the source) or fresh noise (the "
           "published method; default: %(default)s)", EDIT, parameter=None, label="Start from", choices=START_MODES,
           commands=EDIT_ONLY),
    Option("image", PATH, None, "image-to-video checkpoints: condition the edits on this image, e.g. an edited "
           "first frame (default: the source's first frame)", EDIT, parameter=None, label="First frame",
           commands=EDIT_ONLY),
    Option("reference_mode", CHOICE, "shared", "'shared': one reference row per step for all prompts; 'paired': one "
           "per prompt (default: %(default)s)", REFERENCE, feeds=("call",), choices=REFERENCE_MODES,
           commands=EDIT_ONLY),
    Option("reference_steps", STEP_RANGE, 1.0, "fraction of the steps (or a window) with reference attention "
           "(default: %(default)s)", REFERENCE, feeds=("call",), metavar="END or START,END", commands=EDIT_ONLY),
    Option("reference_blocks", BLOCKS, None, "transformer blocks whose attention reads the reference (default: all)",
           REFERENCE, feeds=("call",), metavar="I,J,...", commands=EDIT_ONLY),
    Option("reference_weight", FLOAT, 1.0, "attention mass on the reference; below 1 follows the prompt more "
           "(default: %(default)s)", REFERENCE, feeds=("call",), minimum=0, commands=EDIT_ONLY),
    Option("mask", PATH, None, "mask video (white = may change, same frames as the source): edits change only inside "
           "it (default: none)", LOCAL, parameter=None, label="Mask video", metavar="FILE", commands=EDIT_ONLY),
    Option("paste_back", SWITCH, False, "with {mask} or {mask_words}: after decoding, put the source's own pixels "
           "back outside the mask (default: off)", LOCAL, parameter=None, commands=EDIT_ONLY),
    Option("mask_dilation", INT, 0, "grow the mask by this many pixels, a margin for motion and soft edges (default: "
           "%(default)s)", LOCAL, label="Grow the mask", metavar="PIXELS", minimum=0, commands=EDIT_ONLY,
           parameter=None),
    Option("mask_feather", INT, 0, "let the mask fall from 1 to 0 over this many pixels outside its edge, soft seams "
           "(default: %(default)s)", LOCAL, label="Feather the mask", metavar="PIXELS", minimum=0,
           commands=EDIT_ONLY, parameter=None),
    Option("reconstruction", SWITCH, False, "also regenerate the source with the source prompt, reconstruction.mp4 "
           "(default: off)", OUTPUTS, parameter=None, commands=EDIT_ONLY),
    Option("fps", OPTIONAL_FLOAT, None, "output frame rate (default: the pace of the source frames used, from their "
           "timestamps, so edits play at the source's speed; with {sampling} spread, when that pace is slower than "
           "the checkpoint's 8 fps (16 for CogVideoX 1.5), that rate: a time-lapse; run.json records the rate and "
           "how it was chosen)", OUTPUTS, parameter=None, label="Output fps", commands=EDIT_ONLY),
    Option("prompt_batch_size", OPTIONAL_INT, None, "prompts per batched call; lower it when memory is short "
           "(default: all)", OUTPUTS, parameter=None, label="Prompts per batch", minimum=1, memory_only=True,
           commands=EDIT_ONLY),
    Option("save_inversion", PATH, None, "also save the inversion (.safetensors) to reuse with {inversion} (default: "
           "not saved)", OUTPUTS, parameter=None, label="Saved inversion", metavar="PATH", commands=("edit",),
           page=False),
    Option("inversion", PATH, None, "reuse a saved inversion instead of inverting the video; it must have been made "
           "with this video, source prompt, frames, size, steps and strength (default: invert)", OUTPUTS,
           parameter=None, metavar="PATH", commands=EDIT_ONLY, page=False),
    Option("extra", RECORD, {}, "recorded in run.json as given (e.g. a batch job's id)", OUTPUTS, flag=None,
           parameter=None, commands=(), page=False),
)


class EditSettingsMethods:
    """Methods of `EditSettings` (its fields come from `EDIT_OPTIONS`)."""

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


EDIT_OPTIONS = OptionTable(
    "EditSettings", EDIT_OPTION_LIST, EditSettingsMethods,
    "One video and what to do with it: a field per `EDIT_OPTIONS` option. Defaults are the pipeline's.",
)
EditSettings = EDIT_OPTIONS.settings_class


# ---------------------------------------------------------------------------------------------------------------------
# The model and memory options: one per run, for every video it edits


MODEL, CACHE = "model and memory", "step cache"
LAUNCH = ("edit", "invert", "batch", "app")

MODEL_OPTION_LIST = (
    Option("model", TEXT, DEFAULT_MODEL, "Hub id or local folder of a CogVideoX checkpoint (default: %(default)s)",
           MODEL, parameter=None, commands=LAUNCH, page=False),
    Option("device", TEXT, "auto", "cuda, cuda:1, cpu, ... (default: %(default)s, cuda when available)", MODEL,
           parameter=None, commands=LAUNCH, page=False),
    Option("dtype", CHOICE, "auto", "weights' precision (default: %(default)s, bf16 on a GPU, fp32 on the CPU)",
           MODEL, parameter=None, choices=("auto", *DTYPES), commands=LAUNCH, page=False),
    Option("offload", CHOICE, "auto", "keep weights on the CPU and move them to the GPU when used: 'model' moves "
           "whole models (text encoder, transformer, VAE), 'group' one block at a time (the next prefetched on a CUDA "
           "stream), 'group-leaf' one layer at a time, 'sequential' single layers without prefetch (slowest, least "
           "memory); 'auto' picks the first that fits the GPU's free memory by counted weight bytes, none on the CPU "
           "(default: %(default)s)", MODEL, parameter=None, choices=OFFLOAD_MODES, commands=LAUNCH, page=False),
    Option("offload_streams", TRISTATE, None, "with {offload} group or group-leaf: prefetch the next group on a CUDA "
           "stream (default: on with CUDA)", MODEL, parameter=None, commands=LAUNCH, page=False),
    Option("weights", CHOICE, "bf16", "'fp8': store the transformer's weights in fp8, each layer computed in the load "
           "dtype (diffusers' layerwise casting; about half the transformer's bytes, any device; default: "
           "%(default)s, the load dtype)", MODEL, parameter=None, choices=WEIGHTS, commands=LAUNCH, page=False),
    Option("quantize", OPTIONAL_CHOICE, None, "torchao quantization of the transformer while loading: 'int8' "
           "weight-only (any device), 'fp8' (GPUs with compute capability 8.9+); pip install "
           "'cogvideox-ddim-inversion[quantization]'; saves memory, and time only with {compile} (default: off)",
           MODEL, parameter=None, choices=QUANTIZE, commands=LAUNCH, page=False),
    Option("quantize_text_encoder", SWITCH, False, "apply {weights} fp8 or {quantize} to the T5 text encoder too (9.5 "
           "of 5B's 21.1 GB; default: off)", MODEL, parameter=None, commands=LAUNCH, page=False),
    Option("cache", OPTIONAL_CHOICE, None, "skip transformer work on later edit steps (never during the inversion "
           "unless {cache_inversion}): 'first-block' when the first block's output barely changed, 'mag' (MagCache, "
           "needs {mag_ratios}), 'taylorseer' (full steps every {cache_interval}, predicted in between) (default: "
           "off)", CACHE, parameter=None, choices=CACHES, commands=LAUNCH, page=False),
    Option("cache_threshold", OPTIONAL_FLOAT, None, "first-block: relative change below which the other blocks are "
           "skipped (0.1: about 1.9x fewer block evaluations on the toy world); mag: accumulated error allowed "
           "(default: diffusers', 0.05 and 0.06)", CACHE, parameter=None, commands=LAUNCH, page=False),
    Option("cache_interval", INT, 5, "taylorseer: compute every block fully every this many steps (default: "
           "%(default)s)", CACHE, parameter=None, minimum=1, commands=LAUNCH, page=False),
    Option("mag_ratios", RATIOS, None, "{cache} mag: the checkpoint's magnitude ratios, comma-separated or a JSON "
           "list in a file (calibrate_mag_ratios, docs/memory.md; default: none)", CACHE, parameter=None,
           metavar="R1,R2,... or FILE", commands=LAUNCH, page=False),
    Option("cache_inversion", SWITCH, False, "let {cache} run during the inversion too; it skips the evaluations that "
           "make the round trip exact (default: off)", CACHE, parameter=None, commands=LAUNCH, page=False),
    Option("vae_tiling", CHOICE, "auto", "decode and encode the VAE in tiles and slices; auto: on with CUDA, where 49 "
           "frames of 720x480 need about 19 GB without it (default: %(default)s)", MODEL, parameter=None,
           choices=("auto", "on", "off"), commands=LAUNCH, page=False),
    Option("compile", SWITCH, False, "torch.compile the transformer (slow first step; default: off)", MODEL,
           parameter=None, commands=LAUNCH, page=False),
)


class ModelSettingsMethods:
    """Methods of `ModelSettings` (its fields come from `MODEL_OPTIONS`). Options that cannot work on the device are
    refused as the settings are made, before anything loads or is written."""

    def __post_init__(self):
        if self.mag_ratios is not None:
            self.mag_ratios = tuple(float(ratio) for ratio in self.mag_ratios)
        from .checks import check_model_settings

        check_model_settings(self)

    def memory_options(self):
        from ..cogvideox_ddim_memory import MemoryOptions

        names = [f.name for f in dataclasses.fields(MemoryOptions)]
        return MemoryOptions(**{name: getattr(self, name) for name in names})

    def output_options(self) -> dict:
        """The options set away from their defaults that change the outputs (8-bit weights, the step cache), not only
        memory or speed (offloading, streams): batch's settings hash."""
        cache_settings = {None: (), "first-block": ("cache_threshold",), "mag": ("cache_threshold", "mag_ratios"),
                          "taylorseer": ("cache_interval",)}.get(self.cache, ())
        names = ("weights", "quantize", "quantize_text_encoder", "cache", *cache_settings,
                 *(("cache_inversion",) if self.cache else ()))
        return {name: getattr(self, name) for name in names if getattr(self, name) != MODEL_OPTIONS[name].default}


MODEL_OPTIONS = OptionTable(
    "ModelSettings", MODEL_OPTION_LIST, ModelSettingsMethods,
    "Which checkpoint to load, where, and how to fit it in memory: a field per `MODEL_OPTIONS` option.",
)
ModelSettings = MODEL_OPTIONS.settings_class


# ---------------------------------------------------------------------------------------------------------------------
# Settings <-> pipeline arguments and records


def pipeline_arguments(settings, call: str) -> dict:
    """The keyword arguments of the pipeline call `call` ("invert" or "call") that the options of the settings' own
    table feed, by the pipeline's parameter names."""
    return {option.parameter_name: getattr(settings, option.name) for option in type(settings).table
            if call in option.feeds}


def settings_record(settings) -> dict:
    """The settings as run.json records them: every field, with `extra`'s entries at the top level."""
    values = dataclasses.asdict(settings)
    extra = values.pop("extra", None) or {}
    return {**values, "extra": None, **extra}


def options_for(command: str, table: OptionTable = EDIT_OPTIONS) -> Iterable[Option]:
    return (option for option in table if command in option.commands)


def reading_error(option: Option, value, reason: str) -> SettingsError:
    """The error for a value of `option` that does not read: what was given and what to type."""
    shown = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return SettingsError(option.name, "{" + option.name + "}: " + literal(f"{reason} (got {shown})."))


def read_value(option: Option, value):
    """`option.read(value)`, a value that does not read raising SettingsError naming the option and what to type."""
    try:
        return option.read(value)
    except (ValueError, TypeError, OSError) as error:
        reason = str(error) if str(error).startswith(("choose", "type", "give", "pick")) else option.kind.hint
        raise reading_error(option, value, reason) from None


def argparse_type(option: Option):
    """An argparse `type` for `option` (its kind's parser, refusing values that do not read with the hint)."""

    def read(text):
        try:
            return option.kind.parse(text)
        except (ValueError, TypeError, OSError):
            raise argparse.ArgumentTypeError(f"{option.kind.hint}, got {text!r}") from None

    read.__name__ = option.kind.name
    return read
