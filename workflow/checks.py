"""Every check of an edit that needs no weights, in one order (`prepare_edit`), so that bad input fails before anything
loads and nothing is written. Each check raises `SettingsError(field, template)`, which names options as `{name}` and
which each front end renders in its own words."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

from ..cogvideox_ddim_errors import ParameterError, literal
from .settings import (
    DEFAULT_WINDOW_WEIGHTING,
    MIN_STEPS,
    MODEL_OPTIONS,
    EditSettings,
    SettingsError,
)


# Files an edit writes into its output folder, besides run.json; only these are removed when a rerun replaces a run.
OUTPUT_FILE = re.compile(r"(edit-\d+|side_by_side|reconstruction|mask)\.mp4")


@dataclass(frozen=True)
class PreparedEdit:
    """What `prepare_edit` found: the checkpoint's config, what the edit reads of the source (None without a video)
    and the windows it runs in (made once per run: the plan line and the checks use this one)."""

    config: dict
    source: object | None  # workflow.sources.SourceShape
    plan: object | None  # workflow.window_plan.WindowPlan


def prepare_edit(settings: EditSettings, model: str | None = None, *, config: dict | None = None,
                 output_dir: str | None = None, check_video=None, command: str = "edit", memory=None) -> PreparedEdit:
    """Every check of an edit that needs no weights, in one order: the settings, the output paths, the checkpoint's
    config (read from `model` unless `config` is given) and what it allows, the source video (`check_video(path)`: an
    entry point's own limits, first), and a saved inversion against all of these. The command line, batch and the
    app call this, then load the pipeline. `command="invert"` words the messages for `invert`; `memory` (the run's
    `MemoryOptions`) lets a saved inversion made with other 8-bit weights be refused here too."""
    from .inversions import check_saved_inversion
    from .sources import check_source

    check_edit_settings(settings, command)
    check_output_paths(settings, output_dir)
    if config is None:
        config = read_checkpoint_config(model)
    plan = check_settings_for_checkpoint(settings, config)
    source = None
    if settings.video is not None:
        if check_video is not None:
            check_video(settings.video)
        source = check_source(settings, config)
        plan = source.plan
    if settings.inversion is not None:
        check_saved_inversion(settings, config, source, model, memory)
    return PreparedEdit(config, source, plan if settings.video is not None else None)


def check_edit_settings(settings: EditSettings, command: str = "edit"):
    """Raise, naming the fix, for any setting that would fail later: files, prompts and numbers."""
    s = settings
    if not s.prompts and not s.reconstruction and not s.save_inversion:
        raise SettingsError("prompts", "Nothing to do: give at least one {prompts} (or {reconstruction}, or "
                            "{save_inversion}).")
    for prompt in s.prompts:
        if not isinstance(prompt, str) or not prompt.strip():
            raise SettingsError("prompts", f"Empty prompt {literal(repr(prompt))}: every {{prompts}} needs text describing the "
                                "edited video.")
    if s.video is None and s.inversion is None:
        raise SettingsError("video", "Give a video file to edit, or {inversion} with a saved inversion.")
    check_input_files(s)
    check_mask_settings(s, command)
    check_numbers(s)
    for option in type(s).table:
        value = getattr(s, option.name)
        if option.choices is not None and value is not None and value not in option.choices:
            raise SettingsError(option.name, f"{{{option.name}}} must be one of {', '.join(option.choices)}; got "
                                f"{value!r}.")
    from ..cogvideox_ddim_sampling import step_window

    for name in ("reference_steps", "mask_steps"):
        try:
            step_window(getattr(s, name), s.steps, name)
        except ParameterError as error:
            raise SettingsError.from_parameter_error(error) from None
        except ValueError as error:
            raise SettingsError(name, "{" + name + "}: " + literal(error)) from None
    check_device(s.trajectory_device, "trajectory_device")


def read_checkpoint_config(model: str) -> dict:
    """`checkpoint_config(model)`, after refusing a `model` that can only be a mistyped local folder: an absolute or
    relative path (`/`, `./`, `../`, `~`) is never a Hub id, so it is not looked up on the Hub."""
    from ..cogvideox_ddim_checkpoint import checkpoint_config

    text = os.fspath(model)
    looks_local = os.path.isabs(text) or text.startswith(("./", "../", "~", ".\\")) or text.count("/") > 1
    if looks_local and not os.path.isdir(os.path.expanduser(text)):
        what = "is a file" if os.path.exists(os.path.expanduser(text)) else "does not exist"
        raise SettingsError("model", f"{{model}} {literal(repr(text))} {what}: a local checkpoint is a folder holding "
                            "model_index.json with transformer/, vae/ and scheduler/ (a Hub id has the form "
                            "namespace/name). Check the path.")
    try:
        return checkpoint_config(os.path.expanduser(text) if looks_local else text)
    except ParameterError as error:
        raise SettingsError.from_parameter_error(error) from None
    except ValueError as error:
        raise SettingsError("model", literal(error)) from None


def check_device(device: str | None, field: str):
    """A device string torch knows ("cpu", "cuda", "cuda:1"); None passes."""
    if device is None:
        return
    import torch

    try:
        torch.device(device)
    except RuntimeError:
        raise SettingsError(field, f"{{{field}}} {device!r} is not a device: pass cpu, cuda or cuda:N.") from None


def check_device_available(device: str | None, field: str):
    """A device this machine has: CUDA devices exist (and the index is one of them); before any weights load."""
    if device is None or device == "auto":
        return
    check_device(device, field)
    import torch

    place = torch.device(device)
    if place.type != "cuda":
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        built = "torch was built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
        raise SettingsError(field, f"{{{field}}} {device} asks for a GPU, but this machine has none ({built}): pass "
                            f"cpu, or leave {{{field}}} out.")
    if place.index is not None and place.index >= count:
        raise SettingsError(field, f"{{{field}}} {device}: this machine has {count} CUDA device(s), cuda:0 to "
                            f"cuda:{count - 1}.")


def check_devices(model_settings, settings=None):
    """The run's device and the trajectory's, against what this machine has (`check_device_available`)."""
    check_device_available(model_settings.device, "device")
    if settings is not None:
        check_device_available(settings.trajectory_device, "trajectory_device")


def check_input_files(settings: EditSettings):
    """The video, image, mask and inversion files exist; the image is an image and the inversion one (its header)."""
    s = settings
    for name, path in (("video", s.video), ("image", s.image), ("inversion", s.inversion), ("mask", s.mask)):
        if path is not None and os.path.isdir(path):
            raise SettingsError(name, f"The {name} {literal(repr(path))} is a folder: pass a {name} file (the path of one file).")
        if path is not None and not os.path.isfile(path):
            raise SettingsError(name, f"{name.capitalize()} file not found: {literal(repr(path))}. Check the path.")
    if s.image is not None:
        import PIL.Image

        try:
            with PIL.Image.open(s.image) as image:
                image.verify()
        except Exception as error:
            raise SettingsError("image", f"Could not read the image {literal(repr(s.image))} ({literal(error)}). Pass a PNG or JPEG "
                                "file.") from None
    if s.inversion is not None:
        from ..cogvideox_ddim_output import CogVideoXDDIMInversionOutput

        try:
            CogVideoXDDIMInversionOutput.read_settings(s.inversion)  # raises for a file that is not an inversion
        except ValueError as error:
            raise SettingsError("inversion", literal(error)) from None


def check_numbers(settings: EditSettings):
    """Steps, guidance, strength, weights, sizes: finite and in range."""
    s = settings
    for name in ("guidance", "guidance_ramp", "guidance_ramp_at", "strength", "reference_weight", "fps",
                 "mask_threshold"):
        value = getattr(s, name)
        if value is not None and not math.isfinite(value):  # NaN passes every comparison; it would reach the video
            raise SettingsError(name, f"{{{name}}} must be a finite number, got {value}.")
    if s.steps < MIN_STEPS:
        raise SettingsError("steps", f"{{steps}} must be at least {MIN_STEPS}, got {s.steps}: one step goes from pure "
                            "noise straight to a clean video (CogVideoX's zero-terminal-SNR step), which determines no "
                            "noise to invert.")
    if s.guidance < 1:
        raise SettingsError("guidance", f"{{guidance}} must be >= 1 (1 turns guidance off), got {s.guidance}.")
    if s.guidance_ramp is not None:
        if not s.guidance_ramp > 1 or not s.guidance > 1:
            raise SettingsError("guidance_ramp", f"{{guidance_ramp}} {s.guidance_ramp} needs {{guidance}} > 1 and a "
                                f"ramp scale > 1 (got {{guidance}} {s.guidance}): guidance rows must run from the first "
                                "step to be raised later.")
        if not 0 < s.guidance_ramp_at < 1:
            raise SettingsError("guidance_ramp_at", "{guidance_ramp_at} must be a fraction in (0, 1), got "
                                f"{s.guidance_ramp_at}.")
    if not 0 < s.strength <= 1:
        raise SettingsError("strength", f"{{strength}} must be in (0, 1], got {s.strength}.")
    if s.steps >= MIN_STEPS and int(s.steps * s.strength) < 1:  # as `invert()` and `__call__` cut the schedule
        raise SettingsError("strength", f"{{strength}} {s.strength} keeps no step of {s.steps} (it runs int(steps * "
                            "strength) steps): raise {strength} or {steps}.")
    for name, least in (("fixed_point_iterations", 0), ("reference_weight", 0), ("prompt_batch_size", 1),
                        ("window_batch_size", 1), ("skip_frames_start", 0), ("skip_frames_end", 0),
                        ("frame_stride", 1)):
        value = getattr(s, name)
        if value is not None and (not isinstance(value, (int, float)) or value < least):
            relation = ">=" if least == 0 else "at least"
            raise SettingsError(name, f"{{{name}}} must be {relation} {least}, got {value}.")
    if s.fps is not None and not s.fps > 0:
        raise SettingsError("fps", f"{{fps}} must be positive, got {s.fps}.")
    if s.num_frames is not None and s.num_frames != "all" and (
            not isinstance(s.num_frames, int) or isinstance(s.num_frames, bool) or s.num_frames < 1):
        raise SettingsError("num_frames", f"{{num_frames}} must be a frame count (at least 1) or 'all', got "
                            f"{s.num_frames!r}; leave it out for the model's native count.")
    for name in ("height", "width"):
        size = getattr(s, name)
        if size is not None and (size <= 0 or size % 16):
            raise SettingsError(name, "{height}/{width} must be positive multiples of 16 (the VAE's 8x times the "
                                f"patches of 2), got {size}.")


def mask_word_pattern(word: str) -> re.Pattern:
    """`word` as a whole word or phrase of a prompt, in any case (how mask words are found in the source prompt)."""
    return re.compile(rf"(?<!\w){re.escape(word)}(?!\w)", re.IGNORECASE)


def check_mask_settings(settings: EditSettings, command: str = "edit"):
    """The mask video, mask words and paste-back: one mask source, words of the source prompt, paste-back with a
    mask; the options that shape a mask only with one."""
    s = settings
    give_mask = "give {mask_words} too" if command == "invert" else "give {mask} or {mask_words} too"
    if s.mask is not None and s.mask_words:
        raise SettingsError("mask", "Give {mask} (a mask video) or {mask_words} (a mask from the model's attention), "
                            "not both.")
    masked = s.mask is not None or bool(s.mask_words)
    if s.paste_back and not masked:
        raise SettingsError("paste_back", f"{{paste_back}} puts the source back outside a mask: {give_mask}.")
    for name in ("mask_dilation", "mask_feather"):
        value = getattr(s, name)
        if value < 0:
            raise SettingsError(name, f"{{{name}}} is a number of pixels >= 0, got {value}.")
        if value and not masked:
            raise SettingsError(name, f"{{{name}}} shapes a mask: {give_mask}.")
    if s.mask_steps != 1.0 and not masked:
        raise SettingsError("mask_steps", f"{{mask_steps}} sets the steps a mask applies on: {give_mask}.")
    if not 0 < s.mask_threshold < 1:
        raise SettingsError("mask_threshold", "{mask_threshold} must be between 0 and 1 (exclusive), got "
                            f"{s.mask_threshold}.")
    for name, unset in (("mask_threshold", s.mask_threshold == 0.5), ("mask_blocks", s.mask_blocks is None),
                        ("mask_refine", s.mask_refine is None)):
        if not unset and not s.mask_words:
            raise SettingsError(name, f"{{{name}}} sets the mask {{mask_words}} records: give {{mask_words}} too.")
    if any(block < 0 for block in s.mask_blocks or []):
        raise SettingsError("mask_blocks", f"{{mask_blocks}} are transformer block indices >= 0, got "
                            f"{s.mask_blocks}.")
    for word in s.mask_words or []:
        if not mask_word_pattern(word).search(s.source_prompt):
            raise SettingsError("mask_words", f"{{mask_words}} {literal(repr(word))} is not a word of {{source_prompt}} "
                                f"{literal(repr(s.source_prompt))}: the mask is the attention the inversion gives to words of its "
                                "own prompt. Add the word to {source_prompt}.")


def check_output_path(path: str, field: str, folder: bool = False):
    """`path` can be written as a folder (`folder`) or a file: not the other kind already, inside a folder we may
    write to (the nearest existing one; missing folders are created when the outputs are written). `field` names the
    option giving it in messages ("output_dir", "save_inversion")."""
    name = "{" + field + "}"
    path = os.path.abspath(path)
    if folder and os.path.exists(path) and not os.path.isdir(path):
        raise SettingsError(field, f"{name} {literal(repr(path))} is a file: give a folder.")
    if not folder and os.path.isdir(path):
        raise SettingsError(field, f"{name} {literal(repr(path))} is a folder: give a file name in it, e.g. "
                            f"{path}/inversion.safetensors.")
    existing = path if folder else os.path.dirname(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise SettingsError(field, f"{name} {literal(repr(path))} lies under {literal(repr(existing))}, which is a file: give a path under a "
                            "folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SettingsError(field, f"Cannot write to {literal(repr(existing))} ({name} {literal(repr(path))}): pick another {name}.")


def check_output_paths(settings: EditSettings, output_dir: str | None = None):
    """Where the edit writes: the output folder and the inversion file."""
    if output_dir is not None:
        check_output_path(output_dir, "output_dir", folder=True)
    inputs = {os.path.realpath(path): name for name, path in (
        ("video", settings.video), ("image", settings.image), ("mask", settings.mask),
        ("inversion", settings.inversion)) if path is not None}
    if isinstance(settings.save_inversion, (str, os.PathLike)):
        check_output_path(settings.save_inversion, "save_inversion")
        read = inputs.get(os.path.realpath(settings.save_inversion))
        if read == "inversion":
            raise SettingsError("save_inversion", "{save_inversion} names the {inversion} being read: leave "
                                "{save_inversion} out.")
        if read is not None:
            raise SettingsError("save_inversion", f"{{save_inversion}} names the {{{read}}} "
                                f"({literal(repr(settings.save_inversion))}), which the edit reads: saving would replace it. Pass "
                                "another {save_inversion}.")
    if output_dir is not None:  # the outputs a run writes, or removes when it replaces the previous run there
        folder = os.path.realpath(output_dir)
        for path, name in inputs.items():
            filename = os.path.basename(path)
            if os.path.dirname(path) == folder and (OUTPUT_FILE.fullmatch(filename) or filename == "run.json"):
                raise SettingsError(name, f"{{{name}}} {literal(repr(path))} is an output of a run in {{output_dir}} "
                                    f"{literal(repr(output_dir))}, which this run replaces: copy it out of that folder first, or "
                                    "choose another {output_dir}.")


def check_settings_for_checkpoint(settings: EditSettings, config: dict):
    """Settings this checkpoint cannot run (from its config alone, before the weights load). Returns the windows of
    the frame count asked (`plan_windows`)."""
    from ..cogvideox_ddim_checkpoint import check_size_for_positional_embeddings, default_video_size, is_image_to_video

    transformer = config["transformer"]
    if settings.image is not None and not is_image_to_video(transformer):
        raise SettingsError("image", "{image} conditions image-to-video checkpoints (CogVideoX-5b-I2V, "
                            "CogVideoX1.5-5B-I2V); this checkpoint is text-to-video: leave {image} out, or load an "
                            "image-to-video {model}.")
    if settings.height is not None or settings.width is not None:
        native = default_video_size(transformer)  # where the size matters (learned embeddings) it is the native one
        try:
            check_size_for_positional_embeddings(transformer, settings.height or native[0],
                                                 settings.width or native[1])
        except ParameterError as error:
            raise SettingsError.from_parameter_error(error) from None
        except ValueError as error:
            raise SettingsError("height", literal(error)) from None
    plan = check_windows_for_checkpoint(settings, config)
    layers = transformer.get("num_layers")
    for name in ("reference_blocks", "mask_blocks"):
        blocks = getattr(settings, name)
        if layers is not None and any(not 0 <= block < layers for block in blocks or []):
            raise SettingsError(name, f"{{{name}}} {blocks}: this checkpoint has blocks 0 to {layers - 1}.")
    return plan


def check_windows_for_checkpoint(settings: EditSettings, config: dict, frames: int | None = None):
    """Long-clip settings this checkpoint cannot run: a window overlap that does not fit its windows, and more frames
    (`frames`, or the frame count asked) than an image-to-video checkpoint's native count. The window schedule the
    checks make is the run's (`workflow.window_plan.plan_windows`)."""
    from .window_plan import plan_windows

    return plan_windows(settings, config, frames)


def check_model_settings(settings):
    """`ModelSettings` that cannot work on their device (`check_memory_options`), before anything loads."""
    from ..cogvideox_ddim_memory import check_memory_options
    from .loading import resolve_device

    check_device(None if settings.device == "auto" else settings.device, "device")
    try:
        check_memory_options(settings.memory_options(), resolve_device(settings.device))
    except ParameterError as error:
        raise SettingsError.from_parameter_error(error, MODEL_OPTIONS) from None


__all__ = ["DEFAULT_WINDOW_WEIGHTING", "OUTPUT_FILE", "check_edit_settings", "prepare_edit"]
