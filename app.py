"""The web page: upload a video, type what should change, watch source and edit side by side (Gradio Blocks).

`cogvideox-ddim-inversion app` loads the checkpoint once (the committed toy checkpoint unless `--model` names another)
and serves one page. Each run calls `editing.py` as the command line does: `prepare_edit()` (every check), then
`edit_video()`. The page's fields are `EditSettings`' fields (`PAGE_FIELDS`), read back by their type
(`PAGE_READERS`), with its defaults and a label each (`page_label`); a field without a hand-placed control gets one
from its command-line flag (`field_component`), so a new option needs no code here. Messages of the shared checks,
written with flags, name the page's labels instead (`page_message`).

The first screen holds what a first run needs: the clip and its length (with example clips under it), the two
prompts, Edit and Stop with the status line (where the progress bar shows), and the results; everything else is folded
under "Advanced" and "Local edit (mask)". The status line also says what a run adjusted without an error
(`adjustment_notes`).

Long clips: "Length" picks the model's window, a number of frames or the whole clip (`num_frames` None, N or "all";
more frames than the window run in overlapping windows, their overlap and windows per call under "Advanced"). The note
under it says, before any run, what a run would edit (`window_plan`, from the clip's header with the run's own checks)
or why it cannot; the progress bar names the windows x steps (`progress_description`), and the status line afterwards
says what ran (`WindowPlan.from_inversion`).

Keeping the inversion: `edit_video()` saves the inversion (`save_inversion`) into the app's temporary folder under a
hash of what it depends on (`editing.inversion_dependencies`: the video file's content, the source prompt, frame
selection, size and inversion settings) and the checkpoint, and the next run with the same hash passes that file back
as `inversion`, so a new edit prompt skips the inversion. Files on disk rather than tensors in memory: the same code
path as `edit --inversion` (checked against the loaded checkpoint), and nothing held in memory between requests.

Runs (`Runs`): one at a time (Gradio's queue, concurrency 1, and a lock held for the whole run); a run stops at its
next step when its Stop button is pressed, when its page is closed or reloaded (nobody would see its result), or when
the app gets SIGTERM or Ctrl+C (then the temporary folder is removed and the process exits 0). A reload shows the
browser's last finished run. The run.json served for download names uploads by their own file names and the run's
files relative to it (`write_portable_run_json`).

Safe to expose: upload size and duration limits (an upload over the size limit is named under the clip, where the
reason stays visible); every file the app writes (Gradio's uploads and cache included) lives under one temporary
folder, removed when the app exits; bad input raises `gr.Error`, shown in the page, and the app keeps serving. Gradio
is imported only when the app starts.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass

from .cogvideox_ddim_checkpoint import checkpoint_config, default_video_size, latent_frame_count, pixel_frame_count
from .editing import (
    MIN_STEPS,
    EditSettings,
    ModelSettings,
    add_edit_arguments,
    add_model_arguments,
    add_source_arguments,
    edit_video,
    inversion_dependencies,
    load_pipeline,
    parse_mask_words,
    parse_reference_blocks,
    parse_reference_steps,
    prepare_edit,
    print_log,
)


DEFAULTS = EditSettings(video=None, prompts=[])  # the page's defaults are the API's
KEEP_RUNS = 8  # result folders kept on disk (older ones are deleted; Gradio has copied what the page shows)
KEEP_INVERSIONS = 4  # saved inversions kept (the least recently used is deleted first)
MiB = 1024**2
VIDEO_HEIGHT = 256  # pixels each video takes on the page


def add_app_arguments(parser):
    """The app's flags: the command line's model and memory flags, then the server and its limits."""
    add_model_arguments(parser)
    model = next(action for action in parser._actions if action.dest == "model")
    model.default = None  # no --model: the committed toy checkpoint (offline, CPU)
    model.help = "Hub id or local folder of a CogVideoX checkpoint (default: the committed toy checkpoint)"
    server = parser.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1",
                        help="address to listen on; 0.0.0.0 serves the local network (default: %(default)s)")
    server.add_argument("--port", type=int, default=None, help="default: the first free port from 7860")
    server.add_argument("--share", action="store_true",
                        help="also open a temporary public link through Gradio (default: off)")
    server.add_argument("--max-upload-mb", type=float, default=100.0,
                        help="largest upload accepted, in MB (default: %(default)s)")
    server.add_argument("--max-duration", type=float, default=60.0, metavar="SECONDS",
                        help="longest video accepted, read from the file's header before decoding; it bounds what "
                        "the whole clip costs: windows grow with it, memory stays that of one window (default: "
                        "%(default)s)")
    server.add_argument("--temp-dir", default=None,
                        help="folder in which the app makes its temporary folder (default: the system's)")


# ---------------------------------------------------------------------------------------------------------------------
# Checks and the inversion cache (no Gradio needed)


def check_duration(path: str, max_duration: float):
    """Refuse a video over the duration limit, from its header alone (`probe_video` also refuses a file that is not
    a video). Gradio refuses files over the size limit while they upload: `launch(max_file_size=...)`."""
    from .video_io import probe_video

    duration = probe_video(path).duration or 0.0
    if duration > max_duration:
        raise ValueError(
            f"The video lasts {duration:.1f} s; this app takes videos up to {max_duration:g} s. Trim it and upload "
            "it again."
        )


def inversion_key(settings: EditSettings, model: str) -> str:
    """Name of the saved inversion these settings can reuse: a hash of what an inversion depends on
    (`editing.inversion_dependencies`: the video by content, the source prompt, frames, size, steps, ...) and the
    checkpoint."""
    payload = json.dumps({"depends_on": inversion_dependencies(settings), "model": model}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _prune(folder: str, keep: int):
    """Delete all but the `keep` most recently modified entries of `folder`."""
    entries = sorted((os.path.join(folder, name) for name in os.listdir(folder)), key=os.path.getmtime, reverse=True)
    for path in entries[keep:]:
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


# ---------------------------------------------------------------------------------------------------------------------
# The page's fields: EditSettings' fields, read back by their type, named by their labels


# Set by the app itself, not on the page: where the inversion is kept, and run.json's extras.
APP_SET_FIELDS = ("save_inversion", "inversion", "extra")
PAGE_FIELDS = tuple(f.name for f in dataclasses.fields(EditSettings) if f.name not in APP_SET_FIELDS)
API_NAMES = {"prompts": "edit_prompts"}  # the edit function's parameter names where they differ from the field's

# Each field's label on the page, which the page's messages name it by (a new field is labelled from its name).
PAGE_LABELS = {
    "video": "Source video", "prompts": "Edit prompt", "source_prompt": "Source prompt",
    "negative_prompt": "Negative prompt", "guidance_ramp": "Guidance ramp", "guidance_ramp_at": "Ramp at",
    "num_frames": "Frames", "skip_frames_start": "Skip frames at the start",
    "skip_frames_end": "Skip frames at the end", "sampling": "Frame sampling",
    "fixed_point_iterations": "Fixed-point iterations", "start": "Start from", "fps": "Output fps",
    "image": "First frame", "prompt_batch_size": "Prompts per batch", "mask": "Mask video", "paste_back": "Paste back",
    "mask_threshold": "Mask threshold", "mask_dilation": "Grow the mask", "mask_feather": "Feather the mask",
    "mask_refine": "Refine the mask", "save_inversion": "Saved inversion", "window_overlap": "Window overlap",
    "window_batch_size": "Windows per call", "window_weighting": "Window weighting",
}


# Parameter names of the pipeline and video reading that its messages use, by the field they come from.
PARAMETER_FIELDS = {"max_num_frames": "num_frames", "num_inference_steps": "steps", "guidance_scale": "guidance"}


def page_label(name: str) -> str:
    return PAGE_LABELS.get(name, name.replace("_", " ").capitalize())


def _zero_as_unset(value, kind):
    """A page number field whose 0 means "not set" (None in EditSettings); an emptied number field reaches the server
    as 0 from the browser."""
    return None if value is None or value == "" or value == 0 else kind(value)


def _whole(value):
    """An int from a page number (Gradio sends 3.0 for 3): refuses 2.5 and text rather than rounding them."""
    number = float(value)
    if not number.is_integer():
        raise ValueError(value)
    return int(number)


def _optional_whole(value):
    return _zero_as_unset(value, _whole)


# How a page value becomes an EditSettings value, by the field's type (as annotated: a string), and what to type
# when it cannot (said with the field's label: "Reference steps: type a fraction such as 0.5 or a range 0,0.6").
PAGE_READERS = {
    "str": lambda value: value or "",
    "str | None": lambda value: value or None,  # files and texts: empty is "not set"
    "int": _whole,
    "float": float,
    "bool": bool,
    "int | None": _optional_whole,
    "float | None": lambda value: _zero_as_unset(value, float),
    "float | tuple[float, float]": lambda value: parse_reference_steps(str(value)),
    "list[int] | None": lambda value: parse_reference_blocks(value) if (value or "").strip() else None,
    "list[str] | None": lambda value: parse_mask_words(value or "") or None,
    "list[str]": lambda value: [line.strip() for line in (value or "").splitlines() if line.strip()],
    "bool | None": lambda value: {"auto": None, "on": True, "off": False}[value or "auto"],
}
FORMAT_HINTS = {
    "int": "type a whole number such as {default}",
    "int | None": "type a whole number (0: {unset})",
    "float": "type a number such as {default}",
    "float | None": "type a number (0: {unset})",
    "float | tuple[float, float]": "type a fraction such as 0.5 or a range 0,0.6",
    "list[int] | None": "type block numbers separated by commas, such as 0,1,2, or leave it empty for all blocks",
    "bool | None": "pick auto, on or off",
}


def _read_num_frames(value):
    """"Frames" as the page and API send it: "all" (the whole clip), or a frame count (0 or empty: the model's)."""
    text = "" if value is None else str(value).strip()
    if text.lower() == "all":
        return "all"
    return _optional_whole(float(text)) if text else None


def _read_window_overlap(value):
    """"Window overlap": video frames, where 0 is an overlap (windows share no frame); empty: the default."""
    return None if value is None or value == "" else _whole(value)


# Fields read by name rather than by type: their page value says more than their type ("all" frames; an overlap of 0).
# Their API default is EditSettings' own (None).
FIELD_READERS = {"num_frames": _read_num_frames, "window_overlap": _read_window_overlap}
FIELD_HINTS = {
    "num_frames": "type a frame count, or all for the whole clip (0: the model's window)",
    "window_overlap": "type a whole number of video frames, a multiple of 4 (empty: the default)",
}


def page_default(name: str):
    """The page's value for a field's default: None ("not set") is 0 in a number field and empty in a text field."""
    kind, default = EditSettings.__dataclass_fields__[name].type, getattr(DEFAULTS, name, None)
    if name in FIELD_READERS:
        return default
    if kind in ("int | None", "float | None"):
        return 0 if default is None else default
    if kind == "bool | None":
        return {None: "auto", True: "on", False: "off"}[default]
    if kind == "float | tuple[float, float]":
        return ",".join(map(str, default)) if isinstance(default, tuple) else str(default)
    if kind in ("list[int] | None", "list[str] | None", "list[str]"):
        return ", ".join(map(str, default or []))
    return default


def settings_from_page(values: dict) -> EditSettings:
    """EditSettings from the page's values (by field name); a value that does not read raises ValueError naming the
    field by its page label and what to type."""
    read = {}
    for name in PAGE_FIELDS:
        kind = EditSettings.__dataclass_fields__[name].type
        try:
            read[name] = FIELD_READERS.get(name, PAGE_READERS[kind])(values[name])
        except (ValueError, TypeError, KeyError, AttributeError):
            hint = FIELD_HINTS.get(name) or FORMAT_HINTS.get(kind, "check its value")
            hint = hint.format(default=page_default(name), unset="the default")
            raise ValueError(f"{page_label(name)}: {hint} (got {values[name]!r}).") from None
    return EditSettings(**read)


@functools.cache
def _flag_help() -> dict:
    """Each edit option's command-line flag (argparse action), by field name: the help of a field the page has no
    hand-made control for, and how a message naming a flag names the page's field instead."""
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    add_source_arguments(parser, video=False)
    add_edit_arguments(parser)
    return {action.dest: action for action in parser._actions}


def page_message(message: str, uploads=()) -> str:
    """A message of the shared checks (written for the command line) in the page's words: each flag (`--mask-words`)
    or parameter name (`reference_steps`) becomes its field's label in quotes, each uploaded file its own name."""
    for upload in uploads:
        message = message.replace(upload, os.path.basename(upload))
    flags = {option: dest for dest, action in _flag_help().items() for option in action.option_strings}
    fields = {name: name for name in EditSettings.__dataclass_fields__ if "_" in name} | PARAMETER_FIELDS
    names = "|".join(fields)

    def label(match):
        text = match.group(0)
        if text.startswith("--"):
            return f'"{page_label(flags[text])}"' if text in flags else text
        return f'"{page_label(fields[text.strip("`")])}"'

    return re.sub(rf"--[a-z][a-z-]*[a-z]|`?\b(?:{names})\b`?", label, message)


def field_component(name: str, **options):
    """A page control for an EditSettings field, made from its type, default, label and command-line help (`options`
    replace any of its arguments): how a new option reaches the page without more code."""
    import gradio as gr

    action = _flag_help().get(name)
    kind = EditSettings.__dataclass_fields__[name].type
    arguments = {"value": page_default(name), "label": page_label(name),
                 "info": action.help % vars(action) if action is not None and action.help else None}
    if action is not None and action.choices:
        return gr.Radio(list(action.choices), **{**arguments, **options})
    if kind == "bool":
        return gr.Checkbox(**{**arguments, **options})
    if kind == "bool | None":
        return gr.Radio(["auto", "on", "off"], **{**arguments, **options})
    if kind in ("int", "float", "int | None", "float | None"):
        return gr.Number(precision=0 if kind.startswith("int") else None, **{**arguments, **options})
    return gr.Textbox(**{**arguments, **options})


# ---------------------------------------------------------------------------------------------------------------------
# What the status line says beyond the run itself, and run.json as served


def adjustment_notes(pipe, settings: EditSettings, config: dict) -> list[str]:
    """What the run changes of what was asked without an error: frames trimmed, prompts cut to the model's tokens,
    a clip cropped (or padded) to another shape. Said in the status line, as the command line logs them."""
    from .cogvideox_ddim_checkpoint import any_size
    from .editing import check_source
    from .video_io import probe_video

    notes = []
    shape = check_source(settings, config)
    asked = settings.num_frames or config["transformer"]["sample_frames"]
    if asked != "all" and shape.num_frames < asked:  # the whole clip: the note on windows says its frames
        whose = "asked" if settings.num_frames else "the model's"
        notes.append(f"Used {shape.num_frames} frames, not the {asked} {whose}: the clip has fewer with this frame "
                     "selection, trimmed to a count the model takes.")
    height, width = probe_video(settings.video).display_size
    if abs(height / width - shape.height / shape.width) > 0.01 and settings.resize_mode != "stretch":
        orientation = "portrait " if height > width else ""
        done = {"crop": "cropped", "pad": "padded"}[settings.resize_mode]
        whose = "the size asked" if settings.height or settings.width else "the model's shape"
        if any_size(config["transformer"]) and not (settings.height or settings.width):
            whose = "a size this model runs"
        notes.append(f"The {width}x{height} {orientation}clip was {done} to {whose}, {shape.width}x{shape.height} "
                     f"(Resize mode: {settings.resize_mode}).")
    max_tokens = pipe.transformer.config.max_text_seq_length
    prompts = [("Source prompt", settings.source_prompt), ("Negative prompt", settings.negative_prompt)]
    prompts += [("Edit prompt" + (f" {i}" if len(settings.prompts) > 1 else ""), prompt)
                for i, prompt in enumerate(settings.prompts, start=1)]
    for label, prompt in prompts:
        tokens = len(pipe.tokenizer(prompt).input_ids) if prompt else 0
        if tokens > max_tokens:
            notes.append(f"{label} is {tokens} tokens; this model reads the first {max_tokens} and ignores the rest.")
    return notes


# ---------------------------------------------------------------------------------------------------------------------
# Long clips: the frames a run edits and the windows it takes, said before, during and after the run


# The page's "Length" control; it sets "Frames" (`num_frames`), which the API takes as 0, a frame count or "all".
LENGTH_LABEL = "Length"


def length_choices(native_frames: int) -> list[tuple[str, str]]:
    return [(f"The model's window ({native_frames} frames)", "window"), ("A number of frames", "frames"),
            ("The whole clip", "all")]


def num_frames_for_length(length: str, frame_count) -> str:
    """"Frames" (`num_frames` as the page sends it) for a length choice: empty for the model's window, the count
    typed (empty or 0: the model's window too), or "all"."""
    if length == "all":
        return "all"
    if length == "frames" and frame_count not in (None, ""):
        return str(frame_count)
    return ""


@dataclass(frozen=True)
class WindowPlan:
    """What a run edits: `frames` video frames in `windows` windows of `window_frames` frames, neighbours sharing
    `overlap_frames` (one window: the clip as one, sharing nothing)."""

    frames: int
    windows: int
    window_frames: int
    overlap_frames: int
    weighting: str | None = None  # how overlapping windows' predictions are averaged (long clips)

    @classmethod
    def from_schedule(cls, schedule: dict, temporal_compression: int) -> "WindowPlan":
        """From a `WindowSchedule.to_dict()` (as an inversion records it)."""
        windows = len(schedule["starts"])
        return cls(pixel_frame_count(schedule["latent_frames"], temporal_compression), windows,
                   pixel_frame_count(schedule["window"], temporal_compression),
                   schedule["overlap"] * temporal_compression if windows > 1 else 0,
                   schedule["scheme"] if windows > 1 else None)

    @classmethod
    def from_inversion(cls, inversion: dict, temporal_compression: int) -> "WindowPlan":
        """What an inversion ran (its settings, as run.json records them): its windows, or one of its frames."""
        if "windows" in inversion:
            return cls.from_schedule(inversion["windows"], temporal_compression)
        return cls(inversion["num_frames"], 1, inversion["num_frames"], 0)

    def in_windows(self) -> str:
        """" in 2 windows of 9 frames overlapping by 4 (pyramid weighting)"; empty for one window."""
        if self.windows == 1:
            return ""
        return (f" in {self.windows} windows of {self.window_frames} frames overlapping by {self.overlap_frames} "
                f"({self.weighting} weighting)")

    def windows_x_steps(self, steps: int) -> str:
        return f"{self.windows} windows x {steps} steps"


def window_plan(settings: EditSettings, config: dict) -> WindowPlan:
    """The frames and windows a run of `settings` takes, from the clip's header and packets with the run's own checks
    (`check_source`, which refuses what the windows cannot run) and windows (`clip_windows`): before any model work."""
    from .cogvideox_ddim_checkpoint import is_image_to_video
    from .cogvideox_ddim_windows import DEFAULT_WINDOW_WEIGHTING, clip_windows
    from .editing import check_source

    transformer, temporal = config["transformer"], config["vae"].get("temporal_compression_ratio", 4)
    shape = check_source(settings, config)
    schedule = clip_windows(latent_frame_count(shape.num_frames, temporal),
                            latent_frame_count(transformer["sample_frames"], temporal), settings.window_overlap,
                            temporal, is_image_to_video(transformer),
                            settings.window_weighting or DEFAULT_WINDOW_WEIGHTING)
    return WindowPlan.from_schedule(schedule.to_dict(), temporal)


def steps_run(settings: EditSettings) -> int:
    """Steps each stage runs: the last `strength` of them."""
    from .cogvideox_ddim_sampling import cut_timesteps

    return len(cut_timesteps(range(settings.steps), settings.strength))


def progress_description(message: str, plan: WindowPlan, steps: int, window_batch_size: int = 1) -> str:
    """The next progress bar's description (shown in the status line while a run goes) for the stage `message` logs:
    for a long clip with its windows x steps, e.g. "Editing under 1 prompt(s): 3 windows x 20 steps"."""
    stage = message.rstrip(".")
    if plan.windows == 1 or not stage.startswith(("Inverting", "Editing", "Reconstructing")):
        return stage
    per_call = f", {window_batch_size} per call" if 1 < window_batch_size < plan.windows else ""
    return f"{re.sub(r' with [0-9]+ steps$', '', stage)}: {plan.windows_x_steps(steps)}{per_call}"


def problem_html(message: str) -> str:
    """A refusal under a field, in the error colour (as the upload size's)."""
    from html import escape

    return (f'<span class="length-problem" style="color: var(--error-text-color, #dc2626); font-weight: 600">'
            f"{escape(message)}</span>")


def length_note(settings: EditSettings, config: dict, max_duration: float, uploads=()) -> str:
    """Under the length control, as it is set: what a run would edit (frames, windows), or why it cannot (the
    duration limit, the run's checks in the page's words), from the clip's header alone. HTML."""
    from html import escape

    native = config["transformer"]["sample_frames"]
    if settings.video is None:  # what the choice means, until a clip is there
        frames = settings.num_frames or native
        if frames == "all":
            text = f"Edits the whole clip (up to {max_duration:g} s) in overlapping windows of {native} frames."
        elif frames > native:
            text = f"Edits up to {frames} frames, in overlapping windows of {native} frames."
        else:
            text = f"Edits up to {frames} frames" + ("." if settings.num_frames else ": the model's window.")
        return f"<span>{escape(text)}</span>"
    try:
        check_duration(settings.video, max_duration)
        plan = window_plan(settings, config)
        which = {None: " (the model's window)", "all": " (the whole clip)"}.get(settings.num_frames, "")
        text = f"Edits {plan.frames} frames{which}{plan.in_windows()}." + _stride_hint(settings, config, plan)
    except (ValueError, OSError) as error:
        return problem_html(page_message(str(error), uploads))
    return f"<span>{escape(text)}</span>"


def _stride_hint(settings: EditSettings, config: dict, plan: WindowPlan) -> str:
    """For the whole of a clip filmed faster than the model's frame rate (a phone's 30 fps against 8): the frame
    stride that brings it near that rate, and the windows it saves. Empty otherwise."""
    import dataclasses

    from .editing import checkpoint_fps
    from .video_io import probe_video

    fps = probe_video(settings.video).fps or 0.0
    stride = round(fps / checkpoint_fps(config["transformer"]))
    if settings.num_frames != "all" or plan.windows == 1 or settings.frame_stride != 1 or stride < 2 or (
            settings.sampling != "first"):
        return ""
    strided = window_plan(dataclasses.replace(settings, frame_stride=stride), config)
    return (f' The clip has {fps:g} fps: "Frame stride" {stride} (Advanced) edits it at {fps / stride:.3g} fps, '
            f"{strided.frames} frames in {strided.windows} window{'s' * (strided.windows > 1)}.")


def _within(path: str, folder: str) -> bool:
    return os.path.commonpath([os.path.abspath(path), folder]) == folder


def _portable(value, run_dir: str, work_dir: str, uploads: dict):
    """`value` (run.json's content) with each path in the app's temporary folder made portable: files of the run
    relative to it, uploads by their own file names, saved inversions by theirs."""
    if isinstance(value, dict):
        return {key: _portable(item, run_dir, work_dir, uploads) for key, item in value.items()}
    if isinstance(value, list):
        return [_portable(item, run_dir, work_dir, uploads) for item in value]
    if isinstance(value, str) and os.path.isabs(value) and _within(value, work_dir):
        if _within(value, run_dir):
            return os.path.relpath(value, run_dir)
        return uploads.get(os.path.abspath(value), os.path.basename(value))
    return value


def write_portable_run_json(run_dir: str, work_dir: str, uploads: dict):
    """Rewrite `run_dir`/run.json, which the page serves for download, without paths in the app's temporary folder
    `work_dir`. `uploads`: absolute path -> the name to show (the upload's own file name)."""
    from .editing import write_json

    path = os.path.join(run_dir, "run.json")
    with open(path) as file:
        record = json.load(file)
    write_json(_portable(record, os.path.abspath(run_dir), os.path.abspath(work_dir), uploads), path)


def _status(record: dict, settings: EditSettings, reused: bool, notes=(), temporal_compression: int = 4) -> str:
    """The status line after a run: what was inverted (frames, windows) or reused, edited, masked and reconstructed,
    and what was adjusted."""
    outputs, timings = record["outputs"], record["timings_s"]
    plan = WindowPlan.from_inversion(record["inversion"], temporal_compression)
    if reused:
        status = [f"Reused the inversion of this clip and settings ({plan.frames} frames{plan.in_windows()}; no "
                  "inversion run)."]
    else:
        status = [(f"Inverted {plan.frames} frames{plan.in_windows()} with {settings.steps} steps in "
                   f"{timings['invert_s']:.1f} s; kept the inversion for the next prompt on this clip and settings.")]
    windows = f" ({plan.windows_x_steps(steps_run(settings))} each)" if plan.windows > 1 else ""
    if "edit_s" in timings:
        status.append(f"Edited under {len(settings.prompts)} prompt(s){windows} in {timings['edit_s']:.1f} s.")
    if "mask" in outputs:
        source = (f"the model's attention to {', '.join(settings.mask_words)}" if settings.mask_words
                  else "the uploaded mask video")
        pasted = "; the source pasted back outside it" if settings.paste_back else ""
        status.append(f"Changed only inside the mask ({source}){pasted}.")
    if "reconstruction_s" in timings:
        status.append(f"Reconstructed{windows} in {timings['reconstruction_s']:.1f} s.")
    return "\n".join(status + list(notes))


# ---------------------------------------------------------------------------------------------------------------------
# Runs: one at a time, each stopped by its Stop button, its page going away, or the app stopping


class RunStopped(Exception):
    """Raised inside the pipeline's step loop when a run is to stop."""


class Runs:
    """The run in progress (one at a time: `lock`), and a stop flag per browser session that asked for one."""

    def __init__(self):
        self.lock = threading.Lock()  # held for a whole run, so a stopped run ends its step before the next starts
        self.stops: dict[str, threading.Event] = {}
        self.current: threading.Event | None = None
        self.last: dict[str, str] = {}  # session -> its last finished run's folder name

    def stop(self, session: str | None = None):
        """Stop `session`'s run (every run when None) at its next step."""
        for key, event in list(self.stops.items()):
            if session is None or key == session:
                event.set()

    def check(self):
        if self.current is not None and self.current.is_set():
            raise RunStopped()

    def watch(self, pipe):
        """Check for a stop at every step of `pipe`'s inversion and edits: each step advances its progress bar."""
        make_bar = pipe.progress_bar

        def progress_bar(*args, **kwargs):
            bar = make_bar(*args, **kwargs)
            update = bar.update

            def checked_update(*update_args, **update_kwargs):
                self.check()
                return update(*update_args, **update_kwargs)

            bar.update = checked_update
            return bar

        pipe.progress_bar = progress_bar


# ---------------------------------------------------------------------------------------------------------------------
# The page


@dataclass
class AppServer:
    """A launched app: the Gradio Blocks, its address, the temporary folder holding every file it writes, and its
    runs."""

    blocks: object
    url: str
    work_dir: str
    runs: Runs

    def close(self, wait_s: float = 60.0):
        """Stop the run in progress at its next step (waiting up to `wait_s`), stop serving, remove the folder."""
        self.runs.stop()
        if self.runs.lock.acquire(timeout=wait_s):
            self.runs.lock.release()
        self.blocks.close()
        shutil.rmtree(self.work_dir, ignore_errors=True)


def _example_clips(folder: str) -> list[list[str]]:
    """Example rows (video, source prompt, edit prompt): a held-out toy-world clip and the generated sample clip."""
    from .testing.sample_clip import write_sample_clip
    from .toy import world as toy_world
    from .video_io import write_video

    clip = toy_world.make_clips(1, seed=0, split="held_out")[0]
    colours = list(toy_world.COLOURS)
    edit_colour = colours[(colours.index(clip.colour) + 1) % len(colours)]
    toy_path = write_video(clip.frames, os.path.join(folder, "toy_clip.mp4"), fps=8.0)
    sample_path = write_sample_clip(os.path.join(folder, "sample_clip.mp4"))
    return [
        [toy_path, clip.caption, toy_world.caption(clip.shape, edit_colour, clip.direction, clip.background)],
        [sample_path, "a red circle moving right", "a yellow circle moving right"],
    ]


def _result_updates(outputs: dict, status: str):
    """The page's result controls for a run's `outputs` (paths by name): the values `edit` returns."""
    import gradio as gr

    downloads = [path for name, path in outputs.items() if name != "inversion"]
    return (
        outputs.get("side_by_side"),
        outputs.get("edit-1"),
        gr.Video(value=outputs.get("reconstruction"), visible="reconstruction" in outputs),
        gr.Video(value=outputs.get("mask"), visible="mask" in outputs),
        downloads,
        status,
    )


def _edit_function(pipe, load_info: dict, model: str, config: dict, work_dir: str, max_duration: float, runs: Runs,
                   no_video: str):
    """The function the Edit button calls, with one parameter per page field (API names: `API_NAMES`), each
    defaulting to the page's default so that API callers may leave it out."""
    import inspect

    import gradio as gr

    runs_dir, inversions_dir = os.path.join(work_dir, "runs"), os.path.join(work_dir, "inversions")

    def edit(*values):
        # Gradio passes the fields, then the progress tracker and the browser session's request (by position).
        request = next((value for value in values[len(PAGE_FIELDS):] if isinstance(value, gr.Request)), None)
        values = dict(zip(PAGE_FIELDS, values))
        video = values["video"]
        if not video:
            raise gr.Error(no_video, print_exception=False)
        uploads = [path for path in (video, values.get("mask"), values.get("image")) if path]
        try:
            settings = settings_from_page(values)
        except ValueError as error:
            raise gr.Error(str(error), print_exception=False) from None
        if not settings.prompts and not settings.reconstruction:
            raise gr.Error('Type an edit prompt (one per line for several edits), or tick "Reconstruction".',
                           print_exception=False)
        session = getattr(request, "session_hash", None) or uuid.uuid4().hex
        stop = runs.stops.setdefault(session, threading.Event())
        stop.clear()
        run_dir = os.path.join(runs_dir, time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:8])
        with runs.lock:
            runs.current = stop
            try:
                # The command line's checks, with the app's duration limit before the video is read.
                prepare_edit(settings, config=config, check_video=lambda path: check_duration(path, max_duration))
                notes = adjustment_notes(pipe, settings, config)
                plan, steps = window_plan(settings, config), steps_run(settings)  # for the status line
                inversion = os.path.join(inversions_dir, inversion_key(settings, model) + ".safetensors")
                reused = os.path.isfile(inversion)
                if reused:
                    settings.inversion = inversion
                    os.utime(inversion)  # most recently used: pruned last
                else:
                    settings.save_inversion = inversion

                def log(message: str):
                    runs.check()
                    print_log(message)
                    # names the stage of the next progress bar, and a long clip's windows x steps
                    pipe.set_progress_bar_config(
                        desc=progress_description(message, plan, steps, settings.window_batch_size))

                runs.check()
                record = edit_video(pipe, settings, run_dir, load_info, log=log)
                write_portable_run_json(run_dir, work_dir,
                                        {os.path.abspath(path): os.path.basename(path) for path in uploads})
                status = _status(record, settings, reused, notes, config["vae"].get("temporal_compression_ratio", 4))
                with open(os.path.join(run_dir, "status.txt"), "w") as file:  # what a reload of the page shows
                    file.write(status)
                runs.last[session] = os.path.basename(run_dir)
            except RunStopped:
                shutil.rmtree(run_dir, ignore_errors=True)
                print_log("Run stopped.")
                raise gr.Error("Stopped. Nothing was kept of this run; press Edit to run again.",
                               print_exception=False) from None
            except (ValueError, FileNotFoundError, TypeError, OSError) as error:
                shutil.rmtree(run_dir, ignore_errors=True)
                raise gr.Error(page_message(str(error), uploads), print_exception=False) from None
            finally:
                runs.current = None
                runs.stops.pop(session, None)
                _prune(runs_dir, KEEP_RUNS)
                _prune(inversions_dir, KEEP_INVERSIONS)
        return _result_updates(record["outputs"], status)

    parameter = inspect.Parameter.POSITIONAL_OR_KEYWORD
    edit.__signature__ = inspect.Signature(
        [inspect.Parameter("video", parameter)]
        + [inspect.Parameter(API_NAMES.get(name, name), parameter, default=page_default(name))
           for name in PAGE_FIELDS if name != "video"]
        # how Gradio passes its progress tracker and the browser session
        + [inspect.Parameter("progress", parameter, default=gr.Progress(track_tqdm=True)),
           inspect.Parameter("request", parameter, default=None, annotation=gr.Request)]
    )
    edit.__annotations__ = {"request": gr.Request}
    return edit


def _page_inputs(inputs: dict, config: dict, size_note: str):
    """The folded part of the form: every page field not already placed (clip and prompts), under "Advanced" and
    "Local edit (mask)", by field name. Fields without a hand-placed control here get one from `field_component`."""
    import gradio as gr

    from .cogvideox_ddim_windows import DEFAULT_WINDOW_WEIGHTING, default_window_overlap

    native_frames = config["transformer"]["sample_frames"]
    temporal = config["vae"].get("temporal_compression_ratio", 4)
    default_overlap = default_window_overlap(latent_frame_count(native_frames, temporal), temporal)

    with gr.Accordion("Advanced: steps, guidance, reference, frames, windows, size", open=False,
                      elem_id="advanced"):
        with gr.Row():
            inputs["steps"] = gr.Slider(MIN_STEPS, 100, value=DEFAULTS.steps, step=1, label=page_label("steps"),
                                        elem_id="steps")
            inputs["guidance"] = gr.Slider(1, 20, value=DEFAULTS.guidance, step=0.5, label=page_label("guidance"))
            inputs["strength"] = gr.Slider(0.05, 1, value=DEFAULTS.strength, step=0.05, label=page_label("strength"),
                                           info="fraction of the schedule inverted and regenerated")
        with gr.Row():
            inputs["guidance_ramp"] = field_component("guidance_ramp", minimum=0,
                                                      info="raise guidance to this later in the run (0: off)")
            inputs["guidance_ramp_at"] = gr.Slider(0.05, 0.95, value=DEFAULTS.guidance_ramp_at, step=0.05,
                                                   label=page_label("guidance_ramp_at"),
                                                   info="fraction of the steps after which guidance is raised")
            inputs["fixed_point_iterations"] = gr.Slider(0, 5, value=DEFAULTS.fixed_point_iterations, step=1,
                                                         label=page_label("fixed_point_iterations"),
                                                         info="per inversion step: a more exact inversion, slower")
        with gr.Row():
            inputs["reference_mode"] = field_component("reference_mode", info=None)
            inputs["reference_steps"] = field_component("reference_steps", elem_id="reference-steps",
                                                        info="fraction of the steps (0.5) or a window (0,0.6)")
            inputs["reference_weight"] = gr.Slider(0, 2, value=DEFAULTS.reference_weight, step=0.05,
                                                   label=page_label("reference_weight"))
            inputs["reference_blocks"] = field_component("reference_blocks", info="I,J,...; empty: all")
        with gr.Row(elem_id="windows"):  # long clips ("Length" beside the clip)
            inputs["window_overlap"] = field_component(
                "window_overlap", value=default_overlap, minimum=0, step=4, elem_id="window-overlap",
                info=f"long clips: frames neighbouring windows of {native_frames} share, a multiple of 4 (default "
                f"{default_overlap}: a quarter of the window; 0: none, seams may show)")
            inputs["window_weighting"] = field_component(
                "window_weighting", value=DEFAULT_WINDOW_WEIGHTING, elem_id="window-weighting",
                info="long clips: how overlapping windows are averaged (see docs/long_videos.md)")
            inputs["window_batch_size"] = field_component(
                "window_batch_size", minimum=1, elem_id="window-batch-size",
                info="long clips: 1 uses the least memory; more is faster on a large GPU, same result")
        with gr.Row():
            inputs["sampling"] = field_component("sampling", info=None)
            inputs["resize_mode"] = field_component("resize_mode", info=None)
            inputs["reconstruction"] = field_component("reconstruction", info="also regenerate with the source prompt")
        with gr.Row():
            inputs["skip_frames_start"] = field_component("skip_frames_start", minimum=0, info=None)
            inputs["skip_frames_end"] = field_component("skip_frames_end", minimum=0, info=None)
            inputs["frame_stride"] = field_component("frame_stride", minimum=1, info=None)
            inputs["fps"] = field_component("fps", minimum=0, info="0: the source's")
        with gr.Row():
            inputs["height"] = field_component("height", minimum=0, info=size_note, elem_id="height")
            inputs["width"] = field_component("width", minimum=0, info=size_note)
            inputs["seed"] = field_component("seed", info=None)
            inputs["prompt_batch_size"] = field_component("prompt_batch_size", minimum=0, info="0: all at once")
        inputs["negative_prompt"] = gr.Textbox(value=DEFAULTS.negative_prompt, label=page_label("negative_prompt"),
                                               placeholder="the source prompt often works well here")
        inputs["start"] = field_component("start", info="inverted noise, or fresh noise as published")
        inputs["image"] = gr.Image(type="filepath", sources=["upload"], label=page_label("image"),
                                   height=160, elem_id="first-frame")
        gr.Markdown("*First frame*: image-to-video checkpoints only, the frame to condition on (empty: the source's).")
        for name in PAGE_FIELDS:
            if name not in inputs and not name.startswith("mask") and name != "paste_back":
                inputs[name] = field_component(name)
    with gr.Accordion("Local edit (mask): change only part of the frame", open=False, elem_id="local-edit"):
        inputs["mask_words"] = field_component(
            "mask_words", elem_id="mask-words",
            info="words of the source prompt (comma separated); the model's attention to them is the region that may "
            "change")
        inputs["mask"] = gr.File(label=page_label("mask"), file_types=["video"], type="filepath", elem_id="mask-file")
        inputs["paste_back"] = field_component("paste_back", elem_id="paste-back",
                                               info="put the source back outside the mask")
        with gr.Row():
            inputs["mask_threshold"] = gr.Slider(0.05, 0.95, value=DEFAULTS.mask_threshold, step=0.05,
                                                 label=page_label("mask_threshold"), info="lower: a larger mask")
            inputs["mask_dilation"] = gr.Slider(0, 64, value=DEFAULTS.mask_dilation, step=1,
                                                label=page_label("mask_dilation"), info="pixels")
            inputs["mask_feather"] = gr.Slider(0, 64, value=DEFAULTS.mask_feather, step=1,
                                               label=page_label("mask_feather"), info="pixels")
        for name in PAGE_FIELDS:
            if name not in inputs:
                inputs[name] = field_component(name)
    return inputs


# Keeps the reason for a refused upload where the clip was (Gradio's toast goes away; the upload box keeps only a red
# "Error"): the browser checks the file's size as it is picked, before uploading.
UPLOAD_CHECK_JS = """
<script>
document.addEventListener("change", (event) => {
  const input = event.target;
  if (!input.closest || !input.closest("#source-video") || !input.files || !input.files.length) return;
  const note = document.querySelector("#source-note");
  const limit = Number(note.dataset.maxBytes || note.querySelector("[data-max-bytes]").dataset.maxBytes);
  const file = input.files[0];
  const text = note.querySelector(".upload-problem");
  text.textContent = file.size > limit
    ? `"${file.name}" is ${(file.size / 1048576).toFixed(1)} MB; this app takes videos up to ` +
      `${(limit / 1048576).toFixed(1).replace(/\\.0$/, "")} MB. Trim or compress it, then upload it again.`
    : "";
}, true);
</script>
"""


def _buttons_running(length_choice, frames):
    """Edit pressed: Edit off and relabelled, Stop on, and "Frames" as Length says (what the run reads)."""
    import gradio as gr

    return gr.Button("Editing...", interactive=False), gr.Button(interactive=True), num_frames_for_length(
        length_choice, frames)


def _buttons_idle():
    """No run: Edit on, Stop off."""
    import gradio as gr

    return gr.Button("Edit", interactive=True), gr.Button(interactive=False)


def _length_controls(gr, inputs: dict, config: dict, max_duration: float):
    """Under the clip: "Length" (the model's window, a number of frames, or the whole clip), the frame count it may
    take, "Frames" as the Edit button sends it (hidden: `inputs["num_frames"]`, set from Length when Edit is pressed;
    the API takes 0, a count or "all"), and the note saying what a run would edit. Returns Length, the frame count
    and the note."""
    native_frames = config["transformer"]["sample_frames"]
    length = gr.Radio(length_choices(native_frames), value="window", label=LENGTH_LABEL, elem_id="length",
                      info=f"the whole clip: up to {max_duration:g} s, edited in overlapping windows of "
                      f"{native_frames} frames (Advanced: their overlap)")
    frame_count = gr.Number(native_frames, label=page_label("num_frames"), precision=0, minimum=0, visible=False,
                            elem_id="frame-count", info="trimmed to 8k + 1; more than the window: edited in windows")
    inputs["num_frames"] = gr.Textbox(page_default("num_frames"), visible=False, elem_id="num-frames")
    note = gr.HTML(length_note(DEFAULTS, config, max_duration), elem_id="length-note")
    return length, frame_count, note


def _describe_length_on_change(gr, length, frame_count, note, inputs: dict, config: dict, max_duration: float):
    """Show the frame count only for "A number of frames", and keep the note under Length saying what a run of the
    page's settings would edit (or why it cannot) as the clip, its length or its window settings change."""
    private = {"api_visibility": "private", "queue": False, "show_progress": "hidden"}

    def describe_length(length_choice, frames, *values):
        values = dict(zip(PAGE_FIELDS, values), num_frames=num_frames_for_length(length_choice, frames))
        uploads = [path for path in (values["video"], values.get("mask")) if path]
        try:
            settings = settings_from_page(values)
        except ValueError as error:
            return problem_html(str(error))
        return length_note(settings, config, max_duration, uploads)

    length.change(lambda choice: gr.Number(visible=choice == "frames"), inputs=length, outputs=frame_count,
                  **private)
    fields = ("video", "window_overlap", "window_weighting", "skip_frames_start", "skip_frames_end", "frame_stride",
              "sampling", "mask_words")
    gr.on([length.change, frame_count.change, *(inputs[name].change for name in fields)], describe_length,
          inputs=[length, frame_count, *(inputs[name] for name in PAGE_FIELDS)], outputs=note, **private)


def default_size_note(transformer: dict) -> str:
    """What 0 means in Height and Width: CogVideoX 1.5 picks a size from the source's shape, the others have one."""
    from .cogvideox_ddim_checkpoint import any_size

    if any_size(transformer):
        height, width = default_video_size(transformer, 9, 16)  # what a 16:9 source gets
        return f"0: the source's aspect, as many pixels as {width}x{height}"
    height, width = default_video_size(transformer)
    return f"0: the model's {width}x{height}"


def _results_column(gr):
    """The right-hand column: a hint before the first run, then source | edit, the edit, the reconstruction and mask
    (when made) and the downloads. Returns the hint, the results column, its four videos and the downloads."""
    hint = gr.Markdown(
        "**Results show here**: source | edit side by side, the edit, and the files to download.\n\n"
        "New here? Pick an example clip under the source video, then press Edit.", elem_id="results-hint")
    with gr.Column(visible=False, elem_id="results") as results:
        videos = [
            gr.Video(label="Source | edit", interactive=False, autoplay=True, loop=True, height=VIDEO_HEIGHT - 16,
                     elem_id="side-by-side"),
            gr.Video(label="Edit", interactive=False, loop=True, height=VIDEO_HEIGHT - 16, elem_id="edit-video"),
            gr.Video(label="Reconstruction", interactive=False, loop=True, visible=False, height=VIDEO_HEIGHT - 16,
                     elem_id="reconstruction-video"),
            gr.Video(label="Mask (white: may change)", interactive=False, loop=True, visible=False,
                     height=VIDEO_HEIGHT - 16, elem_id="mask-video"),
        ]
        downloads = gr.File(label="Downloads (MP4s and run.json)", file_count="multiple", interactive=False,
                            elem_id="downloads")
    return hint, results, videos, downloads


def _restore_last_run(gr, work_dir: str, name: str | None, result_count: int):
    """A reload shows the browser's last finished run (`name`, its folder under runs/) while its files are kept."""
    run_dir = os.path.join(work_dir, "runs", os.path.basename(name or "") or ".missing")
    if not os.path.isfile(os.path.join(run_dir, "status.txt")):
        return [gr.skip()] * (result_count + 2)
    with open(os.path.join(run_dir, "run.json")) as file:
        outputs = {key: os.path.join(run_dir, path) for key, path in json.load(file)["outputs"].items()}
    outputs["run"] = os.path.join(run_dir, "run.json")
    with open(os.path.join(run_dir, "status.txt")) as file:
        status_text = file.read()
    return (*_result_updates(outputs, "Your last run on this page:\n" + status_text), gr.Column(visible=True),
            gr.Markdown(visible=False))


def build_app(pipe, load_info: dict, model: str, work_dir: str, max_upload_bytes: int, max_duration: float):
    """The page, editing with `pipe`, and its runs; every file it writes goes under `work_dir`."""
    import gradio as gr

    for name in ("runs", "inversions", "examples"):
        os.makedirs(os.path.join(work_dir, name), exist_ok=True)
    config = checkpoint_config(model)
    transformer = config["transformer"]
    native_frames = transformer["sample_frames"]
    native_height, native_width = default_video_size(transformer)
    size_note = default_size_note(transformer)
    limits = f"videos up to {max_upload_bytes / MiB:g} MB and {max_duration:g} s"
    runs = Runs()
    runs.watch(pipe)
    edit = _edit_function(pipe, load_info, model, config, work_dir, max_duration, runs,
                          no_video=f"Upload a video ({limits}), or pick an example clip under it, first.")

    from .toy.demo import TOY_CHECKPOINT

    is_toy = os.path.abspath(model) == os.path.abspath(TOY_CHECKPOINT)
    model_note = (
        f"the committed **toy checkpoint** ({native_width}x{native_height}, {native_frames} frames; it knows prompts "
        "like *a red circle moving left on a black background*; `--model THUDM/CogVideoX-5b` edits real videos)"
        if is_toy else f"`{model}`"
    )
    # No analytics: the app makes no request of its own to the internet (fonts and scripts are served by Gradio).
    with gr.Blocks(title="CogVideoX DDIM inversion", delete_cache=(3600, 86400), analytics_enabled=False) as blocks:
        gr.Markdown(
            "## CogVideoX DDIM inversion: edit a video with a prompt\n"
            f"Upload a clip, say what it shows and what should change, and press **Edit**. Model: {model_note}, on "
            f"{load_info.get('device')}. One run at a time; others wait in the queue."
        )
        last_run = gr.BrowserState(None, storage_key="cogvideox-ddim-inversion-last-run")
        with gr.Row():
            with gr.Column(scale=1, min_width=300) as clip_column:
                inputs = {"video": gr.Video(label=page_label("video"), sources=["upload"], height=VIDEO_HEIGHT - 16,
                                            elem_id="source-video")}
                gr.HTML(f'<div id="source-note-text" data-max-bytes="{max_upload_bytes}">'
                        f'<span class="upload-problem" style="color: var(--error-text-color, #dc2626); '
                        f'font-weight: 600"></span> <span>{limits[0].upper() + limits[1:]}.</span></div>',
                        elem_id="source-note")
                length, frame_count, length_note_html = _length_controls(gr, inputs, config, max_duration)
            with gr.Column(scale=1, min_width=300):
                inputs["source_prompt"] = gr.Textbox(value=DEFAULTS.source_prompt, label=page_label("source_prompt"),
                                                     placeholder="what the video shows", elem_id="source-prompt")
                inputs["prompts"] = gr.Textbox(label=page_label("prompts"), lines=2, elem_id="edit-prompt",
                                               placeholder="what the edited video shows (one per line for several)")
                with gr.Row():
                    run = gr.Button("Edit", variant="primary", elem_id="run", scale=2)
                    stop = gr.Button("Stop", variant="stop", elem_id="stop", interactive=False, scale=1)
                status = gr.Textbox(label="Status", interactive=False, lines=3, elem_id="status",
                                    placeholder="Progress and what each run did show here.")
                inputs = _page_inputs(inputs, config, size_note)  # folded: everything else
            with gr.Column(scale=1, min_width=300):
                hint, results, result_videos, downloads = _results_column(gr)
        with clip_column:  # under the clip, on the first screen: a newcomer's quickest start
            gr.Examples(_example_clips(os.path.join(work_dir, "examples")),
                        inputs=[inputs["video"], inputs["source_prompt"], inputs["prompts"]],
                        label="Example clips: a click fills in the clip and both prompts", cache_examples=False)

        result_outputs = [*result_videos, downloads, status]
        private = {"api_visibility": "private", "queue": False, "show_progress": "hidden"}

        def show_results(request: gr.Request = None):
            last = runs.last.pop(request.session_hash, None) if request is not None else None
            return gr.Column(visible=True), gr.Markdown(visible=False), last

        def stop_run(request: gr.Request = None):
            if request is not None:  # Gradio passes the browser session's request
                runs.stop(request.session_hash)

        # Gradio passes the session's request by the annotation, resolved at run time: `gr` is local here.
        for function in (show_results, stop_run):
            function.__annotations__["request"] = gr.Request

        def restore(name):
            return _restore_last_run(gr, work_dir, name, len(result_outputs))

        _describe_length_on_change(gr, length, frame_count, length_note_html, inputs, config, max_duration)
        started = run.click(_buttons_running, inputs=[length, frame_count], outputs=[run, stop, inputs["num_frames"]],
                            **private)
        edited_event = started.then(
            edit,
            inputs=[inputs[name] for name in PAGE_FIELDS],
            outputs=result_outputs,
            api_name="edit",
            show_progress_on=[status],  # the progress bar shows beside the Edit button, not over hidden results
            concurrency_limit=1,  # one pipeline, one GPU: runs wait in the queue
        )
        edited_event.success(show_results, outputs=[results, hint, last_run], **private)
        edited_event.then(_buttons_idle, outputs=[run, stop], **private)
        # Stop: a queued run leaves the queue (cancels); a running one ends at its next step (its flag).
        stop.click(stop_run, cancels=[edited_event], **private)
        stop.click(_buttons_idle, outputs=[run, stop], **private)  # Edit back at once (not only after the run's end)
        blocks.unload(stop_run)  # a closed or reloaded page stops its run: nobody waits for a result nobody sees
        blocks.load(restore, inputs=[last_run], outputs=[*result_outputs, results, hint], **private)
    return blocks, runs


def launch_app(args, prevent_thread_lock: bool = False) -> AppServer:
    """Load the checkpoint, build the page and serve it (blocking unless `prevent_thread_lock`)."""
    if importlib.util.find_spec("gradio") is None:
        raise ImportError(
            "The app needs Gradio: pip install 'cogvideox-ddim-inversion[app]' (or pip install -e \".[app]\" in a "
            "clone)."
        )
    model = args.model
    if model is None:
        from .toy.demo import TOY_CHECKPOINT

        model = TOY_CHECKPOINT
    model_settings = ModelSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ModelSettings)}
                                   | {"model": model})
    if args.max_upload_mb <= 0 or args.max_duration <= 0:
        raise ValueError("--max-upload-mb and --max-duration must be positive.")
    work_dir = tempfile.mkdtemp(prefix="cogvideox-ddim-inversion-app-", dir=args.temp_dir)
    atexit.register(shutil.rmtree, work_dir, ignore_errors=True)
    # Gradio keeps uploads and the files it serves in GRADIO_TEMP_DIR (read when components are made): put them in
    # the app's folder too. The saved inversions stay outside it, so they are never served.
    gradio_dir = os.path.join(work_dir, "gradio")
    os.makedirs(gradio_dir)
    os.environ["GRADIO_TEMP_DIR"] = gradio_dir
    pipe, load_info = load_pipeline(model_settings, log=print_log)
    max_upload_bytes = int(args.max_upload_mb * MiB)
    blocks, runs = build_app(pipe, load_info, model, work_dir, max_upload_bytes, args.max_duration)
    blocks.queue(default_concurrency_limit=1, max_size=32)
    print_log(f"Temporary folder (removed on exit): {work_dir}")
    blocks.launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        max_file_size=max_upload_bytes,
        allowed_paths=[os.path.join(work_dir, "runs"), os.path.join(work_dir, "examples")],
        prevent_thread_lock=True,
        quiet=prevent_thread_lock,
        head=UPLOAD_CHECK_JS,
    )
    server = AppServer(blocks=blocks, url=blocks.local_url, work_dir=work_dir, runs=runs)
    if not prevent_thread_lock:
        _serve_until_stopped(server)
    return server


def _serve_until_stopped(server: AppServer):
    """Serve until Ctrl+C or SIGTERM, then stop the run in progress at its next step, remove the temporary folder
    and exit 0. Exiting from the signal handler while a run is computing aborted the process in torch's threads."""
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda signum, frame: stopping.set())
    while not stopping.wait(0.5):  # a timed wait: signal handlers run between waits
        pass
    print_log("Stopping: ending the run in progress, removing the temporary folder.")
    server.close()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is cleaned up; skip the interpreter's teardown, where Gradio's and torch's threads may still run.
    os._exit(0)


def run_app(args):
    """`cogvideox-ddim-inversion app`: serve the page until interrupted (Ctrl+C or SIGTERM, which both end the run in
    progress and remove the temporary folder on the way out, exit status 0)."""
    launch_app(args)
