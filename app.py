"""The web page: upload a video, type what should change, watch source and edit side by side (Gradio Blocks).

`cogvideox-ddim-inversion app` loads the checkpoint once (the committed toy checkpoint unless `--model` names another)
and serves one page. Each run calls `editing.py` as the command line does: `prepare_edit()` (every check), then
`edit_video()`. The page's fields are `EditSettings`' fields (`PAGE_FIELDS`), read back by their type
(`PAGE_READERS`), with its defaults; a field without a hand-placed control gets one from its command-line flag
(`field_component`), so a new option needs no code here.

Keeping the inversion: `edit_video()` saves the inversion (`save_inversion`) into the app's temporary folder under a
hash of what it depends on (`editing.inversion_dependencies`: the video file's content, the source prompt, frame
selection, size and inversion settings) and the checkpoint, and the next run with the same hash passes that file back
as `inversion`, so a new edit prompt skips the inversion. Files on disk rather than tensors in memory: the same code
path as `edit --inversion` (checked against the loaded checkpoint), and nothing held in memory between requests.

Safe to expose: one run at a time (Gradio's queue, concurrency 1); upload size and duration limits; every file the app
writes (Gradio's uploads and cache included) lives under one temporary folder, removed when the app exits; bad input
raises `gr.Error`, shown in the page, and the app keeps serving. Gradio is imported only when the app starts.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass

from .cogvideox_ddim_checkpoint import checkpoint_config, default_video_size
from .editing import (
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
    server.add_argument("--max-duration", type=float, default=30.0, metavar="SECONDS",
                        help="longest video accepted, read from the file's header before decoding (default: "
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
# The page's fields: EditSettings' fields, read back by their type


# Set by the app itself, not on the page: where the inversion is kept, and run.json's extras.
APP_SET_FIELDS = ("save_inversion", "inversion", "extra")
PAGE_FIELDS = tuple(f.name for f in dataclasses.fields(EditSettings) if f.name not in APP_SET_FIELDS)
API_NAMES = {"prompts": "edit_prompts"}  # the edit function's parameter names where they differ from the field's


def _zero_as_unset(value, kind):
    """A page number field whose 0 means "not set" (None in EditSettings); an emptied number field reaches the server
    as 0 from the browser."""
    return None if value is None or value == "" or value == 0 else kind(value)


# How a page value becomes an EditSettings value, by the field's type (as annotated: a string).
PAGE_READERS = {
    "str": lambda value: value or "",
    "str | None": lambda value: value or None,  # files and texts: empty is "not set"
    "int": int,
    "float": float,
    "bool": bool,
    "int | None": lambda value: _zero_as_unset(value, int),
    "float | None": lambda value: _zero_as_unset(value, float),
    "float | tuple[float, float]": lambda value: parse_reference_steps(str(value)),
    "list[int] | None": lambda value: parse_reference_blocks(value) if (value or "").strip() else None,
    "list[str] | None": lambda value: parse_mask_words(value or "") or None,
    "list[str]": lambda value: [line.strip() for line in (value or "").splitlines() if line.strip()],
    "bool | None": lambda value: {"auto": None, "on": True, "off": False}[value or "auto"],
}


def page_default(name: str):
    """The page's value for a field's default: None ("not set") is 0 in a number field and empty in a text field."""
    kind, default = EditSettings.__dataclass_fields__[name].type, getattr(DEFAULTS, name, None)
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
    """EditSettings from the page's values (by field name)."""
    return EditSettings(**{name: PAGE_READERS[EditSettings.__dataclass_fields__[name].type](values[name])
                           for name in PAGE_FIELDS})


@functools.cache
def _flag_help() -> dict:
    """Each edit option's command-line help and choices, by field name: the label of a field the page has no
    hand-made control for."""
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    add_source_arguments(parser, video=False)
    add_edit_arguments(parser)
    return {action.dest: action for action in parser._actions}


def field_component(name: str, **options):
    """A page control for an EditSettings field, made from its type, default and command-line flag (`options`
    replace any of its arguments): how a new option reaches the page without more code."""
    import gradio as gr

    action = _flag_help().get(name)
    kind = EditSettings.__dataclass_fields__[name].type
    arguments = {"value": page_default(name), "label": name.replace("_", " ").capitalize(),
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
# The page


@dataclass
class AppServer:
    """A launched app: the Gradio Blocks, its address and the temporary folder holding every file it writes."""

    blocks: object
    url: str
    work_dir: str

    def close(self):
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


def _status(record: dict, settings: EditSettings, reused: bool) -> str:
    """The status line after a run: what was inverted or reused, edited, masked and reconstructed."""
    outputs, timings = record["outputs"], record["timings_s"]
    if reused:
        status = ["Reused the inversion of this clip and settings (no inversion run)."]
    else:
        inverted = len(record["inversion"]["source"]["frame_indices"])
        status = [(f"Inverted {inverted} frames with {settings.steps} steps in {timings['invert_s']:.1f} s; "
                   "kept the inversion for the next prompt on this clip and settings.")]
    if "edit_s" in timings:
        status.append(f"Edited under {len(settings.prompts)} prompt(s) in {timings['edit_s']:.1f} s.")
    if "mask" in outputs:
        source = (f"the model's attention to {', '.join(settings.mask_words)}" if settings.mask_words
                  else "the uploaded mask video")
        pasted = "; the source pasted back outside it" if settings.paste_back else ""
        status.append(f"Changed only inside the mask ({source}){pasted}.")
    if "reconstruction_s" in timings:
        status.append(f"Reconstructed in {timings['reconstruction_s']:.1f} s.")
    return "\n".join(status)


def _edit_function(pipe, load_info: dict, model: str, config: dict, work_dir: str, max_duration: float):
    """The function the Edit button calls, with one parameter per page field (API names: `API_NAMES`), each
    defaulting to the page's default so that API callers may leave it out."""
    import inspect

    import gradio as gr

    runs_dir, inversions_dir = os.path.join(work_dir, "runs"), os.path.join(work_dir, "inversions")

    def edit(*values):
        values = dict(zip(PAGE_FIELDS, values))
        video = values["video"]
        if not video:
            raise gr.Error("Upload a video (or pick an example clip below it) first.")
        try:
            settings = settings_from_page(values)
        except (ValueError, TypeError) as error:
            raise gr.Error(str(error), print_exception=False) from None
        if not settings.prompts and not settings.reconstruction:
            raise gr.Error("Type an edit prompt (one per line for several edits), or tick Reconstruction.")
        try:
            # The command line's checks, with the app's duration limit before the video is read.
            prepare_edit(settings, config=config, check_video=lambda path: check_duration(path, max_duration))
            inversion = os.path.join(inversions_dir, inversion_key(settings, model) + ".safetensors")
            reused = os.path.isfile(inversion)
            if reused:
                settings.inversion = inversion
                os.utime(inversion)  # most recently used: pruned last
            else:
                settings.save_inversion = inversion

            def log(message: str):
                print_log(message)
                pipe.set_progress_bar_config(desc=message.rstrip("."))  # names the stage of the next progress bar

            run_dir = os.path.join(runs_dir, time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:8])
            record = edit_video(pipe, settings, run_dir, load_info, log=log)
        except (ValueError, FileNotFoundError, TypeError, OSError) as error:
            message = str(error)
            for upload in filter(None, (video, settings.mask, settings.image)):  # the upload's name, not the path
                message = message.replace(upload, os.path.basename(upload))
            raise gr.Error(message, print_exception=False) from None
        finally:
            _prune(runs_dir, KEEP_RUNS)
            _prune(inversions_dir, KEEP_INVERSIONS)

        outputs = record["outputs"]
        downloads = [path for name, path in outputs.items() if name != "inversion"]
        return (
            outputs.get("side_by_side"),
            outputs.get("edit-1"),
            gr.Video(value=outputs.get("reconstruction"), visible="reconstruction" in outputs),
            gr.Video(value=outputs.get("mask"), visible="mask" in outputs),
            downloads,
            _status(record, settings, reused),
        )

    parameter = inspect.Parameter.POSITIONAL_OR_KEYWORD
    edit.__signature__ = inspect.Signature(
        [inspect.Parameter("video", parameter)]
        + [inspect.Parameter(API_NAMES.get(name, name), parameter, default=page_default(name))
           for name in PAGE_FIELDS if name != "video"]
        # how Gradio passes its progress tracker
        + [inspect.Parameter("progress", parameter, default=gr.Progress(track_tqdm=True))]
    )
    return edit


def _page_inputs(native_frames: int, native_height: int, native_width: int) -> dict:
    """The form: a control per page field, by field name. Fields without a hand-placed control here get one from
    `field_component` under "More options"."""
    import gradio as gr

    inputs = {"video": gr.Video(label="Source video", sources=["upload"], height=VIDEO_HEIGHT, elem_id="source-video")}
    with gr.Row():
        inputs["num_frames"] = field_component("num_frames", minimum=0, info=None,
                                               label=f"Frames (0: the model's {native_frames})")
        inputs["sampling"] = field_component("sampling", label="Frame sampling", info=None)
        inputs["resize_mode"] = field_component("resize_mode", label="Resize mode", info=None)
    inputs["source_prompt"] = gr.Textbox(value=DEFAULTS.source_prompt, label="Source prompt",
                                         placeholder="what the video shows", elem_id="source-prompt")
    inputs["prompts"] = gr.Textbox(label="Edit prompt", lines=2, elem_id="edit-prompt",
                                   placeholder="what the edited video shows (one per line for several edits)")
    with gr.Row():
        inputs["steps"] = gr.Slider(1, 100, value=DEFAULTS.steps, step=1, label="Steps", elem_id="steps")
        inputs["guidance"] = gr.Slider(1, 20, value=DEFAULTS.guidance, step=0.5, label="Guidance")
        inputs["strength"] = gr.Slider(0.05, 1, value=DEFAULTS.strength, step=0.05, label="Strength",
                                       info="fraction of the schedule inverted and regenerated")
    with gr.Row():
        inputs["guidance_ramp"] = field_component("guidance_ramp", minimum=0, info=None,
                                                  label="Guidance ramp: raise guidance to (0: off)")
        inputs["guidance_ramp_at"] = gr.Slider(0.05, 0.95, value=DEFAULTS.guidance_ramp_at, step=0.05,
                                               label="... from this fraction of the steps")
    with gr.Row():
        inputs["reference_mode"] = field_component("reference_mode", label="Reference mode", info=None)
        inputs["reference_steps"] = field_component("reference_steps", info=None,
                                                    label="Reference steps (END or START,END)")
        inputs["reference_weight"] = gr.Slider(0, 2, value=DEFAULTS.reference_weight, step=0.05,
                                               label="Reference weight")
    with gr.Row():
        inputs["fixed_point_iterations"] = gr.Slider(0, 5, value=DEFAULTS.fixed_point_iterations, step=1,
                                                     label="Fixed-point iterations (inversion)")
        inputs["reconstruction"] = field_component("reconstruction", info=None,
                                                   label="Reconstruction (regenerate with the source prompt)")
    with gr.Accordion("Advanced", open=False):
        with gr.Row():
            inputs["skip_frames_start"] = field_component("skip_frames_start", minimum=0, info=None,
                                                          label="Skip frames at the start")
            inputs["skip_frames_end"] = field_component("skip_frames_end", minimum=0, info=None,
                                                        label="Skip frames at the end")
            inputs["frame_stride"] = field_component("frame_stride", minimum=1, info=None, label="Frame stride")
        with gr.Row():
            inputs["height"] = field_component("height", minimum=0, info=None,
                                               label=f"Height (0: the model's {native_height})")
            inputs["width"] = field_component("width", minimum=0, info=None,
                                              label=f"Width (0: the model's {native_width})")
            inputs["fps"] = field_component("fps", minimum=0, info=None, label="Output fps (0: the source's)")
        inputs["negative_prompt"] = gr.Textbox(value=DEFAULTS.negative_prompt, label="Negative prompt",
                                               placeholder="the source prompt often works well here")
        with gr.Row():
            inputs["seed"] = field_component("seed", info=None, label="Seed")
            inputs["start"] = field_component("start", info=None,
                                              label="Start from (inverted noise, or fresh noise as published)")
        with gr.Row():
            inputs["reference_blocks"] = field_component("reference_blocks", info=None,
                                                         label="Reference blocks (I,J,...; empty: all)")
            inputs["prompt_batch_size"] = field_component("prompt_batch_size", minimum=0, info=None,
                                                          label="Prompts per batch (0: all)")
        inputs["image"] = gr.Image(type="filepath", sources=["upload"],
                                   label="Image-to-video checkpoints: first frame to condition on (empty: source's)")
    with gr.Accordion("Local edit (mask)", open=False, elem_id="local-edit"):
        inputs["mask_words"] = field_component(
            "mask_words", info=None, elem_id="mask-words",
            label="Mask words: words of the source prompt (comma separated); the model's attention to them is the "
            "region that may change")
        inputs["mask"] = gr.File(label="Or a mask video (white: may change; a frame for every source frame)",
                                 file_types=["video"], type="filepath", elem_id="mask-file")
        inputs["paste_back"] = field_component("paste_back", info=None, elem_id="paste-back",
                                               label="Paste the source back outside the mask")
        with gr.Row():
            inputs["mask_threshold"] = gr.Slider(0.05, 0.95, value=DEFAULTS.mask_threshold, step=0.05,
                                                 label="Mask words' threshold (lower: larger mask)")
            inputs["mask_dilation"] = gr.Slider(0, 64, value=DEFAULTS.mask_dilation, step=1,
                                                label="Grow the mask (pixels)")
            inputs["mask_feather"] = gr.Slider(0, 64, value=DEFAULTS.mask_feather, step=1,
                                               label="Feather its edge (pixels)")
        for name in ("mask_steps", "mask_blocks", "mask_refine"):
            inputs[name] = field_component(name)
    with gr.Accordion("More options", open=False):
        for name in PAGE_FIELDS:
            if name not in inputs:
                inputs[name] = field_component(name)
    return inputs


def build_app(pipe, load_info: dict, model: str, work_dir: str, max_upload_bytes: int, max_duration: float):
    """The page, editing with `pipe`; every file it writes goes under `work_dir`."""
    import gradio as gr

    for name in ("runs", "inversions", "examples"):
        os.makedirs(os.path.join(work_dir, name), exist_ok=True)
    config = checkpoint_config(model)
    native_frames = config["transformer"]["sample_frames"]
    native_height, native_width = default_video_size(config["transformer"])
    edit = _edit_function(pipe, load_info, model, config, work_dir, max_duration)

    from .toy.demo import TOY_CHECKPOINT

    is_toy = os.path.abspath(model) == os.path.abspath(TOY_CHECKPOINT)
    model_note = (
        f"the committed **toy checkpoint** ({native_width}x{native_height}, {native_frames} frames; prompts like "
        "*a red circle moving left on a black background*; start with `--model THUDM/CogVideoX-5b` for real videos)"
        if is_toy else f"`{model}`"
    )
    # No analytics: the app makes no request of its own to the internet (fonts and scripts are served by Gradio).
    with gr.Blocks(title="CogVideoX DDIM inversion", delete_cache=(3600, 86400), analytics_enabled=False) as blocks:
        gr.Markdown(
            "# CogVideoX DDIM inversion: edit a video with a prompt\n"
            f"Model: {model_note}, on {load_info.get('device')} ({load_info.get('dtype')}). Upload a clip, describe "
            "it (source prompt) and what should change (edit prompt), then run. The inversion of the current clip and "
            "settings is kept on disk, so another edit prompt on the same clip skips it. One run at a time; others "
            f"wait in the queue. Videos up to {max_upload_bytes / MiB:g} MB and {max_duration:g} s."
        )
        with gr.Row():
            with gr.Column():
                inputs = _page_inputs(native_frames, native_height, native_width)
                run = gr.Button("Edit", variant="primary", elem_id="run")
            with gr.Column():
                side_by_side = gr.Video(label="Source | edit", interactive=False, autoplay=True, loop=True,
                                        height=VIDEO_HEIGHT, elem_id="side-by-side")
                edited = gr.Video(label="Edit", interactive=False, loop=True, height=VIDEO_HEIGHT,
                                  elem_id="edit-video")
                reconstructed = gr.Video(label="Reconstruction", interactive=False, loop=True, visible=False,
                                         height=VIDEO_HEIGHT, elem_id="reconstruction-video")
                mask_video = gr.Video(label="Mask (white: may change)", interactive=False, loop=True, visible=False,
                                      height=VIDEO_HEIGHT, elem_id="mask-video")
                status = gr.Textbox(label="Status", interactive=False, lines=3, elem_id="status")
                downloads = gr.File(label="Downloads (MP4s and run.json)", file_count="multiple", interactive=False,
                                    elem_id="downloads")
        gr.Examples(_example_clips(os.path.join(work_dir, "examples")),
                    inputs=[inputs["video"], inputs["source_prompt"], inputs["prompts"]],
                    label="Example clips", cache_examples=False)
        run.click(
            edit,
            inputs=[inputs[name] for name in PAGE_FIELDS],
            outputs=[side_by_side, edited, reconstructed, mask_video, downloads, status],
            api_name="edit",
            concurrency_limit=1,  # one pipeline, one GPU: runs wait in the queue
        )
    return blocks


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
    blocks = build_app(pipe, load_info, model, work_dir, max_upload_bytes, args.max_duration)
    blocks.queue(default_concurrency_limit=1, max_size=32)
    print_log(f"Temporary folder (removed on exit): {work_dir}")
    blocks.launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        max_file_size=max_upload_bytes,
        allowed_paths=[os.path.join(work_dir, "runs"), os.path.join(work_dir, "examples")],
        prevent_thread_lock=prevent_thread_lock,
        quiet=prevent_thread_lock,
    )
    return AppServer(blocks=blocks, url=blocks.local_url, work_dir=work_dir)


def run_app(args):
    """`cogvideox-ddim-inversion app`: serve the page until interrupted (Ctrl+C or SIGTERM, which both remove the
    temporary folder on the way out)."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))  # unwinds like Ctrl+C, so atexit runs
    launch_app(args)
