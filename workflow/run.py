"""One edit run: invert the source (or reuse a saved inversion), regenerate it under each prompt, and write the videos
and run.json (`edit_video`), the one implementation the command line, batch and the app run after `prepare_edit`.
The pipeline's keyword arguments come from the option table (`pipeline_arguments`), so a new option that feeds a
pipeline parameter reaches it with no code here."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

from ..cogvideox_ddim_files import atomic_write
from .checks import OUTPUT_FILE
from .inversions import inversion_dependencies
from ..cogvideox_ddim_errors import literal
from .settings import EditSettings, SettingsError, pipeline_arguments, settings_record
from .sources import SourceVideo, read_mask, read_source


class RunStopped(Exception):
    """The run was asked to stop (`edit_video(stop=...)`) and ended at a step's end; nothing of it is kept."""


def interrupting(stop, callback=None):
    """A `callback_on_step_end` that runs `callback` (if any), then, once `stop()` is true, sets the pipeline's
    `_interrupt` (diffusers' own way to end a call early: the loop skips its remaining steps)."""
    if stop is None:
        return callback

    def on_step_end(pipe, step, timestep, callback_kwargs):
        if callback is not None:
            callback_kwargs = callback(pipe, step, timestep, callback_kwargs)
        if stop():
            pipe._interrupt = True
        return callback_kwargs

    return on_step_end


def raise_if_stopped(stop):
    if stop is not None and stop():
        raise RunStopped()


def invert_source(pipe, settings: EditSettings, source: SourceVideo | None = None, log=None, stop=None):
    """The inversion of the source: loaded from `settings.inversion` (checked against `pipe`), or computed from
    `source`; saved to `settings.save_inversion` when asked."""
    from ..cogvideox_ddim_output import CogVideoXDDIMInversionOutput

    log = log or (lambda message: None)
    if settings.inversion is not None:
        inv = CogVideoXDDIMInversionOutput.load(settings.inversion, pipeline=pipe)
        log(f"Reusing the inversion {settings.inversion} ({inv.trajectory.shape[0]} steps, no inversion run).")
        return inv
    frames = source.frames
    log(f"Inverting {len(frames)} frames with {settings.steps} steps...")
    try:
        inv = pipe.invert(**{
            **pipeline_arguments(settings, "invert"),
            "video": frames,
            "height": frames.shape[1],  # the frames as read: the size the source was brought to
            "width": frames.shape[2],
            "max_sequence_length": pipe.transformer.config.max_text_seq_length,
            "callback_on_step_end": interrupting(stop),
        })
    except RuntimeError:  # an interrupted inversion raises: its trajectory is incomplete
        raise_if_stopped(stop)
        raise
    raise_if_stopped(stop)
    inv.fps = source.fps
    inv.settings["source"] = {
        "video": None if settings.video is None else os.path.abspath(settings.video),
        **{name: getattr(settings, name) for name in
           ("skip_frames_start", "skip_frames_end", "frame_stride", "num_frames", "sampling", "resize_mode")},
        "frame_indices": source.indices,
        "fps_from": source.fps_from,
    }
    inv.settings["depends_on"] = inversion_dependencies(settings)  # compared when it is reused (`inversion`)
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

    from ..cogvideox_ddim_video_io import frames_to_tensor, resize_frames

    height, width = (size * pipe.vae_scale_factor_spatial for size in inv.latents.shape[3:])
    frame = frames_to_tensor([PIL.Image.open(settings.image).convert("RGB")])[:, 0]  # [1, 3, H, W] in [0, 1]
    # Resized as the source frames were (`resize_mode`), so that an edited first frame lines up with the video.
    image = resize_frames(frame, height, width, settings.resize_mode) * 2 - 1
    device = pipe._execution_device
    return pipe.prepare_image_latents(image, inv.latents.shape[1], inv.latents.dtype, device)


def regenerate(pipe, inv, prompts: list[str], settings: EditSettings, guidance: float, negative_prompt: str,
               callback=None, mask=None, source_frames=None, what: str = "the edit", stop=None):
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
    from ..cogvideox_ddim_memory import match_cache_to_steps

    match_cache_to_steps(pipe.transformer, settings.steps, settings.strength)  # MagCache counts the edit's steps
    videos = []
    batch = settings.prompt_batch_size or len(prompts)
    for first in range(0, len(prompts), batch):
        chunk = prompts[first : first + batch]
        videos.append(_call(pipe, f"{what} (pipeline call under the prompts {chunk})", **{
            **pipeline_arguments(settings, "call"),
            "prompt": chunk,
            "negative_prompt": [negative_prompt] * len(chunk),
            "guidance_scale": guidance,
            "latents": start,
            "generator": generator,
            "reference_latents": inv.trajectory,
            "reference_timesteps": inv.timesteps,
            "reference_prompt": settings.source_prompt,
            "image_latents": image_latents,
            # an edited first frame conditions the edit; the reference rows keep the inversion's own conditioning
            "reference_image_latents": inv.image_latents if settings.image is not None else None,
            "max_sequence_length": pipe.transformer.config.max_text_seq_length,
            "callback_on_step_end": interrupting(stop, callback),
            "output_type": "np",
            "reference_windows": inv.windows,
            **local_edit,
        }).frames)
        raise_if_stopped(stop)  # an interrupted call returns what it had: not a result
    return np.concatenate(videos)


class NonFiniteOutputError(SettingsError):
    """A call produced NaN or inf values: written as a video they would be black (the cast to uint8 makes NaN 0)."""

    def __init__(self, text: str):
        super().__init__("dtype", text)


def _call(pipe, name: str, **kwargs):
    """`pipe(**kwargs)`, its frames checked finite; `name` says which call it was in errors."""
    try:
        output = pipe(**kwargs)
    except FloatingPointError as error:  # the pipeline's own check of the final latents
        raise NonFiniteOutputError(f"{literal(name)} failed: {literal(error)}") from None
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
            f"{literal(produced_by)} produced {bad} of {frames.size} pixel values that are NaN or inf; nothing was "
            "written for it. Run in float32 or bfloat16 rather than float16 ({dtype}), or check the inversion "
            "({inversion})."
        )


def to_uint8(frames, produced_by: str = "the pipeline"):
    """Pipeline `output_type="np"` frames (floats in [0, 1]) as uint8, rounded; NaN or inf is refused, naming the call
    that `produced_by` them (`check_finite`)."""
    import numpy as np

    check_finite(frames, produced_by)
    return np.clip(np.asarray(frames) * 255.0, 0, 255).round().astype(np.uint8)


def decode_inversion(pipe, inv):
    """The inversion's clean latents decoded (uint8 `[F, H, W, 3]`): the source as the model encoded it, for the
    source panel of side_by_side.mp4 when no video is read (a saved inversion alone)."""
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
               write_outputs: bool = True, stop=None) -> dict:
    """Invert (or load the inversion of) `settings.video` and write into `output_dir`: `edit-<n>.mp4` per prompt,
    `side_by_side.mp4` (source | edits), `reconstruction.mp4` on request, and `run.json` (settings, versions, timings,
    outputs), written last. Returns the run record.

    A previous run in `output_dir` is replaced (`remove_previous_run`). A run that fails removes the videos it wrote
    and the folder if it made it (a saved inversion, complete, is kept): outputs are those of one whole run or none.
    `write_outputs=False` computes everything and writes nothing (context parallelism: every process computes the
    edit, process 0 writes it); its record lists no outputs."""
    log = log or (lambda message: None)
    if not write_outputs:
        return _edit_into(pipe, dataclasses.replace(settings, save_inversion=None), None, {}, load_info, log, stop)
    created = not os.path.isdir(output_dir)
    os.makedirs(output_dir, exist_ok=True)  # checked by `prepare_edit`; made only now that there is work to write
    remove_previous_run(output_dir, log)
    outputs = {}
    try:
        return _edit_into(pipe, settings, output_dir, outputs, load_info, log, stop)
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


def _edit_into(pipe, settings: EditSettings, output_dir: str, outputs: dict, load_info: dict | None, log,
               stop=None) -> dict:
    """`edit_video`'s work; each file written is added to `outputs` as soon as it exists (none without
    `output_dir`)."""
    import numpy as np

    from ..callbacks import GuidanceScaleCallback
    from ..cogvideox_ddim_video_io import write_mask_video, write_video

    timings = {}
    started = time.perf_counter()
    source = read_source(pipe, settings) if settings.video is not None else None
    frames = None if source is None else source.frames
    timings["read_s"] = time.perf_counter() - started

    started = time.perf_counter()
    inv = invert_source(pipe, settings, source, log, stop)
    timings["invert_s"] = time.perf_counter() - started
    if settings.save_inversion:
        outputs["inversion"] = os.path.abspath(settings.save_inversion)
    if settings.fps:
        fps, fps_from = settings.fps, "the fps asked"
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
                                    settings.negative_prompt, ramp, mask=mask, source_frames=frames, stop=stop),
                         "the edit")
        timings["edit_s"] = time.perf_counter() - started
        for index, edit in enumerate(edits, start=1):
            write(f"edit-{index}", edit)
    if settings.reconstruction:
        started = time.perf_counter()
        log("Reconstructing with the source prompt...")
        # the source regenerated as it was inverted: conditioned on the inversion's own image, not on the edit's `image`
        reconstruction = regenerate(pipe, inv, [settings.source_prompt], dataclasses.replace(settings, image=None),
                                    1.0, "", what="the reconstruction", stop=stop)
        timings["reconstruction_s"] = time.perf_counter() - started
        write("reconstruction", to_uint8(reconstruction[0], "the reconstruction"))
    if edits is not None:
        height, width = edits.shape[2:4]
        source_panel = frames if frames is not None else decode_inversion(pipe, inv)
        write("side_by_side", np.concatenate([_fit(source_panel, height, width), *edits], axis=2))

    record = {
        "settings": settings_record(settings),
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
