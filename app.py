"""The web page: upload a video, type what should change, watch source and edit side by side (Gradio Blocks).

`cogvideox-ddim-inversion app` loads the checkpoint once (the committed toy checkpoint unless `--model` names another)
and serves one page. Each run calls `editing.py` as the command line does: `check_edit_settings()`,
`check_settings_for_checkpoint()`, `check_source()`, `edit_video()`; the page only turns its fields into
`EditSettings`, whose defaults are the page's defaults.

Keeping the inversion: `edit_video()` saves the inversion (`save_inversion`) into the app's temporary folder under a
hash of what it depends on (the video file, the source prompt, frame selection, size and inversion settings, the
checkpoint), and
the next run with the same hash passes that file back as `inversion`, so a new edit prompt skips the inversion. Files
on disk rather than tensors in memory: the same code path as `edit --inversion` (checked against the loaded
checkpoint), and nothing held in memory between requests.

Safe to expose: one run at a time (Gradio's queue, concurrency 1); upload size and duration limits; every file the app
writes (Gradio's uploads and cache included) lives under one temporary folder, removed when the app exits; bad input
raises `gr.Error`, shown in the page, and the app keeps serving. Gradio is imported only when the app starts.
"""

from __future__ import annotations

import atexit
import dataclasses
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

from .editing import (
    REFERENCE_MODES,
    RESIZE_MODES,
    SAMPLING_MODES,
    START_MODES,
    EditSettings,
    ModelSettings,
    add_model_arguments,
    check_edit_settings,
    check_settings_for_checkpoint,
    check_source,
    checkpoint_config,
    edit_video,
    load_pipeline,
    parse_mask_words,
    parse_reference_blocks,
    parse_reference_steps,
    print_log,
)


DEFAULTS = EditSettings(video=None, prompts=[])  # the page's defaults are the API's
# What an inversion depends on besides the video file and the checkpoint: a change in any of them inverts again.
INVERSION_FIELDS = ("source_prompt", "steps", "strength", "fixed_point_iterations", "num_frames", "skip_frames_start",
                    "skip_frames_end", "frame_stride", "sampling", "height", "width", "resize_mode", "mask_words",
                    "mask_threshold")
KEEP_RUNS = 8  # result folders kept on disk (older ones are deleted; Gradio has copied what the page shows)
KEEP_INVERSIONS = 4  # saved inversions kept (the least recently used is deleted first)
MiB = 1024**2
VIDEO_HEIGHT = 256  # pixels each video takes on the page


def add_app_arguments(parser):
    """The app's flags: the command line's model and memory flags, then the server and its limits."""
    add_model_arguments(parser)
    parser.set_defaults(model=None)  # no --model: the committed toy checkpoint (offline, CPU)
    server = parser.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (0.0.0.0 serves the local network)")
    server.add_argument("--port", type=int, default=None, help="default: the first free port from 7860")
    server.add_argument("--share", action="store_true", help="also open a temporary public link through Gradio")
    server.add_argument("--max-upload-mb", type=float, default=100.0, help="largest upload accepted (MB)")
    server.add_argument("--max-duration", type=float, default=30.0, metavar="SECONDS",
                        help="longest video accepted (read from the file's header before decoding)")
    server.add_argument("--temp-dir", default=None,
                        help="folder in which the app makes its temporary folder (default: the system's)")


# ----------------------------------------------------------------------------------------------------------------------
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
    """Hash of what an inversion depends on: the video file's bytes, the frame selection and inversion settings, and
    the checkpoint."""
    digest = hashlib.sha256()
    with open(settings.video, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    digest.update(json.dumps({name: getattr(settings, name) for name in INVERSION_FIELDS} | {"model": model},
                             sort_keys=True, default=str).encode())
    return digest.hexdigest()[:32]


def _prune(folder: str, keep: int):
    """Delete all but the `keep` most recently modified entries of `folder`."""
    entries = sorted((os.path.join(folder, name) for name in os.listdir(folder)), key=os.path.getmtime, reverse=True)
    for path in entries[keep:]:
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def _unset_as_zero(default):
    """The page's value for an EditSettings default of None ("not set"): 0, as the field's label says. (An emptied
    number field reaches the server as 0 from the browser.)"""
    return 0 if default is None else default


def _zero_as_unset(value, kind):
    """A page number field whose 0 means "not set" (None in EditSettings)."""
    return None if value is None or value == "" or value == 0 else kind(value)


# ----------------------------------------------------------------------------------------------------------------------
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


def build_app(pipe, load_info: dict, model: str, work_dir: str, max_upload_bytes: int, max_duration: float):
    """The page, editing with `pipe`; every file it writes goes under `work_dir`."""
    import gradio as gr

    runs_dir, inversions_dir, examples_dir = (os.path.join(work_dir, name)
                                              for name in ("runs", "inversions", "examples"))
    for folder in (runs_dir, inversions_dir, examples_dir):
        os.makedirs(folder, exist_ok=True)
    config = checkpoint_config(model)
    native_frames = config["transformer"]["sample_frames"]
    native_height, native_width = (config["transformer"][f"sample_{side}"] * pipe.vae_scale_factor_spatial
                                   for side in ("height", "width"))

    # `image` defaults to None here so that API callers may leave it out (fields with a value on the page are
    # optional for them already).
    def edit(video, source_prompt, edit_prompts, steps, guidance, guidance_ramp, guidance_ramp_at, reference_mode,
             reference_steps, reference_weight, strength, fixed_point_iterations, reconstruction, num_frames, sampling,
             resize_mode, skip_frames_start, skip_frames_end, frame_stride, height, width, fps, negative_prompt, seed,
             start, reference_blocks, prompt_batch_size, image=DEFAULTS.image, mask_words="", mask=DEFAULTS.mask,
             paste_back=DEFAULTS.paste_back, mask_threshold=DEFAULTS.mask_threshold,
             mask_dilation=DEFAULTS.mask_dilation, mask_feather=DEFAULTS.mask_feather,
             progress=gr.Progress(track_tqdm=True)):  # noqa: B008 (how Gradio passes its progress tracker)
        if not video:
            raise gr.Error("Upload a video (or pick an example clip below it) first.")
        prompts = [line.strip() for line in (edit_prompts or "").splitlines() if line.strip()]
        if not prompts and not reconstruction:
            raise gr.Error("Type an edit prompt (one per line for several edits), or tick Reconstruction.")
        try:
            settings = EditSettings(
                video=video,
                prompts=prompts,
                source_prompt=source_prompt or "",
                negative_prompt=negative_prompt or "",
                steps=int(steps),
                guidance=float(guidance),
                guidance_ramp=_zero_as_unset(guidance_ramp, float),
                guidance_ramp_at=float(guidance_ramp_at),
                seed=int(seed),
                height=_zero_as_unset(height, int),
                width=_zero_as_unset(width, int),
                num_frames=_zero_as_unset(num_frames, int),
                skip_frames_start=int(skip_frames_start),
                skip_frames_end=int(skip_frames_end),
                frame_stride=int(frame_stride),
                sampling=sampling,
                resize_mode=resize_mode,
                reference_mode=reference_mode,
                reference_steps=parse_reference_steps(str(reference_steps)),
                reference_blocks=(parse_reference_blocks(reference_blocks) if (reference_blocks or "").strip()
                                  else None),
                reference_weight=float(reference_weight),
                strength=float(strength),
                fixed_point_iterations=int(fixed_point_iterations),
                start=start,
                fps=_zero_as_unset(fps, float),
                image=image or None,
                reconstruction=bool(reconstruction),
                prompt_batch_size=_zero_as_unset(prompt_batch_size, int),
                mask=mask or None,
                mask_words=parse_mask_words(mask_words or "") or None,
                paste_back=bool(paste_back),
                mask_threshold=float(mask_threshold),
                mask_dilation=int(mask_dilation),
                mask_feather=int(mask_feather),
            )
            # The command line's checks, before any model work; then the app's own limit.
            check_edit_settings(settings)
            check_settings_for_checkpoint(settings, config)
            check_duration(video, max_duration)
            check_source(settings, config)

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
            os.makedirs(run_dir)
            record = edit_video(pipe, settings, run_dir, load_info, log=log)
        except (ValueError, FileNotFoundError, TypeError, OSError) as error:
            message = str(error)
            for upload in filter(None, (video, mask, image)):  # the upload's name, not where the server keeps it
                message = message.replace(upload, os.path.basename(upload))
            raise gr.Error(message, print_exception=False) from None
        finally:
            _prune(runs_dir, KEEP_RUNS)
            _prune(inversions_dir, KEEP_INVERSIONS)

        outputs, timings = record["outputs"], record["timings_s"]
        if reused:
            status = ["Reused the inversion of this clip and settings (no inversion run)."]
        else:
            inverted = len(record["inversion"]["source"]["frame_indices"])
            status = [(f"Inverted {inverted} frames with {settings.steps} steps in {timings['invert_s']:.1f} s; "
                       "kept the inversion for the next prompt on this clip and settings.")]
        if "edit_s" in timings:
            status.append(f"Edited under {len(prompts)} prompt(s) in {timings['edit_s']:.1f} s.")
        if "mask" in outputs:
            source = (f"the model's attention to {', '.join(settings.mask_words)}" if settings.mask_words
                      else "the uploaded mask video")
            pasted = "; the source pasted back outside it" if settings.paste_back else ""
            status.append(f"Changed only inside the mask ({source}){pasted}.")
        if "reconstruction_s" in timings:
            status.append(f"Reconstructed in {timings['reconstruction_s']:.1f} s.")
        downloads = [path for name, path in outputs.items() if name != "inversion"]
        return (
            outputs.get("side_by_side"),
            outputs.get("edit-1"),
            gr.Video(value=outputs.get("reconstruction"), visible="reconstruction" in outputs),
            gr.Video(value=outputs.get("mask"), visible="mask" in outputs),
            downloads,
            "\n".join(status),
        )

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
                video = gr.Video(label="Source video", sources=["upload"], height=VIDEO_HEIGHT, elem_id="source-video")
                with gr.Row():
                    num_frames = gr.Number(value=_unset_as_zero(DEFAULTS.num_frames), precision=0, minimum=0,
                                           label=f"Frames (0: the model's {native_frames})")
                    sampling = gr.Radio(list(SAMPLING_MODES), value=DEFAULTS.sampling, label="Frame sampling")
                    resize_mode = gr.Radio(list(RESIZE_MODES), value=DEFAULTS.resize_mode, label="Resize mode")
                source_prompt = gr.Textbox(value=DEFAULTS.source_prompt, label="Source prompt",
                                           placeholder="what the video shows", elem_id="source-prompt")
                edit_prompts = gr.Textbox(label="Edit prompt", lines=2, elem_id="edit-prompt",
                                          placeholder="what the edited video shows (one per line for several edits)")
                with gr.Row():
                    steps = gr.Slider(1, 100, value=DEFAULTS.steps, step=1, label="Steps", elem_id="steps")
                    guidance = gr.Slider(1, 20, value=DEFAULTS.guidance, step=0.5, label="Guidance")
                    strength = gr.Slider(0.05, 1, value=DEFAULTS.strength, step=0.05, label="Strength",
                                         info="fraction of the schedule inverted and regenerated")
                with gr.Row():
                    guidance_ramp = gr.Number(value=_unset_as_zero(DEFAULTS.guidance_ramp), minimum=0,
                                              label="Guidance ramp: raise guidance to (0: off)")
                    guidance_ramp_at = gr.Slider(0.05, 0.95, value=DEFAULTS.guidance_ramp_at, step=0.05,
                                                 label="... from this fraction of the steps")
                with gr.Row():
                    reference_mode = gr.Radio(list(REFERENCE_MODES), value=DEFAULTS.reference_mode,
                                              label="Reference mode")
                    reference_steps = gr.Textbox(value=str(DEFAULTS.reference_steps),
                                                 label="Reference steps (END or START,END)")
                    reference_weight = gr.Slider(0, 2, value=DEFAULTS.reference_weight, step=0.05,
                                                 label="Reference weight")
                with gr.Row():
                    fixed_point_iterations = gr.Slider(0, 5, value=DEFAULTS.fixed_point_iterations, step=1,
                                                       label="Fixed-point iterations (inversion)")
                    reconstruction = gr.Checkbox(value=DEFAULTS.reconstruction,
                                                 label="Reconstruction (regenerate with the source prompt)")
                with gr.Accordion("Advanced", open=False):
                    with gr.Row():
                        skip_frames_start = gr.Number(value=DEFAULTS.skip_frames_start, precision=0, minimum=0,
                                                      label="Skip frames at the start")
                        skip_frames_end = gr.Number(value=DEFAULTS.skip_frames_end, precision=0, minimum=0,
                                                    label="Skip frames at the end")
                        frame_stride = gr.Number(value=DEFAULTS.frame_stride, precision=0, minimum=1,
                                                 label="Frame stride")
                    with gr.Row():
                        height = gr.Number(value=_unset_as_zero(DEFAULTS.height), precision=0, minimum=0,
                                           label=f"Height (0: the model's {native_height})")
                        width = gr.Number(value=_unset_as_zero(DEFAULTS.width), precision=0, minimum=0,
                                          label=f"Width (0: the model's {native_width})")
                        fps = gr.Number(value=_unset_as_zero(DEFAULTS.fps), minimum=0,
                                        label="Output fps (0: the source's)")
                    negative_prompt = gr.Textbox(value=DEFAULTS.negative_prompt, label="Negative prompt",
                                                 placeholder="the source prompt often works well here")
                    with gr.Row():
                        seed = gr.Number(value=DEFAULTS.seed, precision=0, label="Seed")
                        start = gr.Radio(list(START_MODES), value=DEFAULTS.start,
                                         label="Start from (inverted noise, or fresh noise as published)")
                    with gr.Row():
                        reference_blocks = gr.Textbox(value="", label="Reference blocks (I,J,...; empty: all)")
                        prompt_batch_size = gr.Number(value=_unset_as_zero(DEFAULTS.prompt_batch_size), precision=0,
                                                      minimum=0, label="Prompts per batch (0: all)")
                    image = gr.Image(type="filepath", sources=["upload"],
                                     label="Image-to-video checkpoints: first frame to condition on (empty: source's)")
                with gr.Accordion("Local edit (mask)", open=False, elem_id="local-edit"):
                    mask_words = gr.Textbox(value="", label="Mask words: words of the source prompt (comma "
                                            "separated); the model's attention to them is the region that may change",
                                            elem_id="mask-words")
                    mask = gr.File(label="Or a mask video (white: may change; a frame for every source frame)",
                                   file_types=["video"], type="filepath", elem_id="mask-file")
                    paste_back = gr.Checkbox(value=DEFAULTS.paste_back, label="Paste the source back outside the mask",
                                             elem_id="paste-back")
                    with gr.Row():
                        mask_threshold = gr.Slider(0.05, 0.95, value=DEFAULTS.mask_threshold, step=0.05,
                                                   label="Mask words' threshold (lower: larger mask)")
                        mask_dilation = gr.Slider(0, 64, value=DEFAULTS.mask_dilation, step=1,
                                                  label="Grow the mask (pixels)")
                        mask_feather = gr.Slider(0, 64, value=DEFAULTS.mask_feather, step=1,
                                                 label="Feather its edge (pixels)")
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
        gr.Examples(_example_clips(examples_dir), inputs=[video, source_prompt, edit_prompts],
                    label="Example clips", cache_examples=False)
        run.click(
            edit,
            inputs=[video, source_prompt, edit_prompts, steps, guidance, guidance_ramp, guidance_ramp_at,
                    reference_mode, reference_steps, reference_weight, strength, fixed_point_iterations,
                    reconstruction, num_frames, sampling, resize_mode, skip_frames_start, skip_frames_end,
                    frame_stride, height, width, fps, negative_prompt, seed, start, reference_blocks,
                    prompt_batch_size, image, mask_words, mask, paste_back, mask_threshold, mask_dilation,
                    mask_feather],
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
