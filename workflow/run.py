"""One edit run: invert the source (or reuse a saved inversion), regenerate it under each prompt, and write the videos
and run.json (`edit_video`), the one implementation the command line, batch and the app run after `prepare_edit`.
The pipeline's keyword arguments come from the option table (`pipeline_arguments`), so a new option that feeds a
pipeline parameter reaches it with no code here."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import stat
import sys
import tempfile
import time

from ..cogvideox_ddim_files import (LOW_SPACE_BYTES, PARTIAL_PREFIX, NoSpaceError, atomic_write, exchange_paths,
                                   free_bytes, is_disk_full, user_umask)
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


def mp4_is_whole(path: str) -> bool:
    """Whether the MP4 at `path` is complete: its top-level boxes fill the file exactly and include the index
    ('moov', written last by ffmpeg). ffmpeg that runs out of disk space leaves a truncated file and exits with an
    error that imageio-ffmpeg does not check, so a video is checked by this after it is written."""
    seen = set()
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as file:
            offset = 0
            while offset < size:
                file.seek(offset)
                header = file.read(16)
                if len(header) < 8:
                    return False
                length, kind = int.from_bytes(header[:4], "big"), header[4:8]
                if length == 1:
                    length = int.from_bytes(header[8:16], "big") if len(header) == 16 else 0
                elif length == 0:
                    length = size - offset
                if length < 8 or offset + length > size:
                    return False
                seen.add(kind)
                offset += length
    except OSError:
        return False
    return {b"moov", b"mdat"} <= seen


def write_video_whole(writer, video, path: str, fps: float, final: str | None = None) -> str:
    """`writer(video, path, fps)` (write_video, write_mask_video) whole or not at all (`atomic_write`), checked whole
    (`mp4_is_whole`); a full disk is reported as "No space left on device" naming `final` (the path the user will
    see, when the file is written in a run's temporary folder), not as ffmpeg's "Broken pipe"."""
    final = final or path
    with atomic_write(path, suffix=".mp4") as partial:
        try:
            writer(video, partial, fps)
        except Exception as error:
            if is_disk_full(error, partial):
                raise NoSpaceError(final) from None
            raise
        if not mp4_is_whole(partial):
            free = free_bytes(partial)
            if free is not None and free < LOW_SPACE_BYTES:
                raise NoSpaceError(final)
            raise OSError(f"ffmpeg wrote an incomplete video for {final!r} (see its messages above); nothing was "
                          "kept.")
    return path


def write_json(data: dict, path: str):
    """Write JSON whole or not at all (`atomic_write`), with the user's usual permissions."""
    with atomic_write(path, suffix=".json") as partial, open(partial, "w") as file:
        json.dump(data, file, indent=2, default=str)


RUN_TEMPORARY = ".partial-run-"  # beside the output folder: the run being written (removed if it never finishes)
RUN_REPLACED = ".replaced-run-"  # beside the output folder: the previous run, between the fallback's two renames


def _leftover_pattern(folder: str):
    return re.compile(rf"({re.escape(RUN_TEMPORARY)}|{re.escape(RUN_REPLACED)}){re.escape(os.path.basename(folder))}"
                      r"-[a-z0-9_]{8}")


def remove_killed_run(output_dir: str, log=None) -> list[str]:
    """Clear what a killed run left beside `output_dir` (a run that ends, even by an error or a signal, leaves
    nothing): its temporary folder, removed; and the previous run's folder if the kill came between the fallback's
    two renames (`replace_run`), put back where the output folder is missing, else removed. Returns the paths
    removed. Two runs into one output folder at once are not supported: each would remove the other's folder."""
    folder = os.path.realpath(output_dir)
    parent = os.path.dirname(folder)
    pattern = _leftover_pattern(folder)
    try:
        names = sorted(name for name in os.listdir(parent) if pattern.fullmatch(name))
    except OSError:
        return []
    removed = []
    for name in _listdir(folder):  # the in-place mode's temporary folder (`replace_in_place`)
        if name.startswith(RUN_TEMPORARY) and os.path.isdir(os.path.join(folder, name)):
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
            removed.append(os.path.join(folder, name))
    for name in names:
        path = os.path.join(parent, name)
        if name.startswith(RUN_REPLACED) and not os.path.lexists(folder):
            os.rename(path, folder)
            (log or (lambda message: None))(f"Restored the previous run in {output_dir} (a run was killed while "
                                            "replacing it).")
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def previous_outputs(folder: str) -> set[str]:
    """The names in `folder` that are outputs of the run whose run.json is there (run.json and the videos it lists),
    plus atomic_write's temporary files; everything else in it (a saved inversion, the user's files) is not a run's
    and is kept when a new run replaces it."""
    names = {name for name in _listdir(folder) if name.startswith(PARTIAL_PREFIX)}
    try:
        with open(os.path.join(folder, "run.json")) as file:
            listed = json.load(file).get("outputs") or {}
        items = listed.items()
    except (OSError, ValueError, AttributeError):  # none, or not one this tool wrote
        return names
    names.add("run.json")
    for name, output in items:
        filename = os.path.basename(str(output))
        if name not in ("run", "inversion") and OUTPUT_FILE.fullmatch(filename):
            names.add(filename)
    return names


def _listdir(folder: str) -> list[str]:
    try:
        return os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _link_tree(source: str, target: str, skip=frozenset()):
    """Mirror `source` into `target` (names in `skip` and names `target` has left out) with hard links: the files
    are the same files, not copies. Symbolic links are recreated; a file that cannot be linked (another file system
    mounted inside) is copied."""
    for entry in os.scandir(source):
        destination = os.path.join(target, entry.name)
        if entry.name in skip or os.path.lexists(destination):
            continue
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), destination)
        elif entry.is_dir():
            os.mkdir(destination)
            shutil.copystat(entry.path, destination)
            _link_tree(entry.path, destination)
        else:
            try:
                os.link(entry.path, destination)
            except OSError:
                shutil.copy2(entry.path, destination)


@contextlib.contextmanager
def _signals_held():
    """SIGINT and SIGTERM wait (delivered when the block ends) so that a swap is never cut in half by a handler."""
    signals = {signal.SIGINT, signal.SIGTERM}
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def replace_run(new: str, output_dir: str, log=None) -> None:
    """Make `output_dir` hold exactly the run written in `new` (a complete folder beside it) in one atomic step,
    keeping the files of `output_dir` that are not outputs of its previous run (`previous_outputs`): they are
    hard-linked into `new` first, then the two folders are swapped (`exchange_paths`: renameat2 RENAME_EXCHANGE) and
    the previous run, now at `new`'s name, is deleted. A reader (or a kill) sees the old run or the new one, never a
    mix.

    Fallback where the swap is unavailable (not Linux, a file system without RENAME_EXCHANGE): two renames, the
    output folder to `.replaced-run-<name>-*` and `new` onto it; between them the output folder is briefly absent, and
    a run killed there is put back by the next run (`remove_killed_run`)."""
    folder = os.path.realpath(output_dir)
    if not os.path.isdir(folder):
        os.rename(new, folder)
        return
    os.chmod(new, stat.S_IMODE(os.stat(folder).st_mode))
    _link_tree(folder, new, skip=previous_outputs(folder))
    with _signals_held():
        if exchange_paths(new, folder):
            old = new
        else:
            old = tempfile.mkdtemp(prefix=f"{RUN_REPLACED}{os.path.basename(folder)}-", dir=os.path.dirname(folder))
            os.rename(folder, old)  # onto the empty folder just made
            try:
                os.rename(new, folder)
            except BaseException:
                os.rename(old, folder)
                raise
    shutil.rmtree(old, ignore_errors=True)
    (log or (lambda message: None))(f"Replaced the previous run in {output_dir}.")


def can_swap(folder: str) -> bool:
    """Whether a run can be written beside `folder` and swapped in (`replace_run`): its parent is writable and it is
    not a mount point (a container's volume, `-v host:/out`: a mount point cannot be renamed)."""
    parent = os.path.dirname(folder)
    if os.path.isdir(folder) and os.path.ismount(folder):
        return False
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    return os.access(parent, os.W_OK | os.X_OK)


def replace_in_place(new: str, output_dir: str, log=None) -> None:
    """`replace_run` where the output folder cannot be swapped (`can_swap`): `new` is a folder inside it, whose files
    are moved in one by one (each whole: a rename), after the previous run's run.json and outputs are removed and
    with run.json last; then `new` is removed. Not one atomic step: a kill in the middle leaves the output folder
    without run.json (no run) and the next run clears `new` (`remove_killed_run`)."""
    folder = os.path.realpath(output_dir)
    with _signals_held():
        previous = previous_outputs(folder) - {os.path.basename(new)}
        if "run.json" in previous:
            os.remove(os.path.join(folder, "run.json"))
        for name in sorted(previous - {"run.json"}):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(folder, name))
        names = sorted(os.listdir(new), key=lambda name: name == "run.json")  # run.json last
        for name in names:
            os.replace(os.path.join(new, name), os.path.join(folder, name))
    shutil.rmtree(new, ignore_errors=True)
    (log or (lambda message: None))(f"Replaced the previous run in {output_dir}.")


def _interrupted_note(error: BaseException, output_dir: str, had_run: bool, inversion: str | None):
    """Tell the command line what an interrupted run kept (`cli.main` prints it)."""
    if isinstance(error, KeyboardInterrupt):
        kept = (f"the previous run in {output_dir} is kept as it was" if had_run
                else f"nothing of this run was written to {output_dir}")
        if inversion:
            kept += f"; the inversion saved to {inversion} is kept"
        error.kept = kept


def edit_video(pipe, settings: EditSettings, output_dir: str, load_info: dict | None = None, log=None,
               write_outputs: bool = True, stop=None) -> dict:
    """Invert (or load the inversion of) `settings.video` and write into `output_dir`: `edit-<n>.mp4` per prompt,
    `side_by_side.mp4` (source | edits), `reconstruction.mp4` on request, and `run.json` (settings, versions, timings,
    outputs), written last. Returns the run record.

    The outputs are written into a temporary folder beside `output_dir` (`.partial-run-<name>-*`); only once they are
    complete does `output_dir` become exactly the new run, in one atomic step (`replace_run`), keeping its files that
    are not outputs of the previous run (a saved inversion, the user's files). A run that fails, is interrupted or is
    killed leaves the previous run as it was (a killed run's temporary folder is removed by the next run:
    `remove_killed_run`); a saved inversion, complete, is kept. Where `output_dir` cannot be swapped (a mount point,
    an unwritable parent: `can_swap`) the temporary folder is inside it and the files are moved in one by one
    (`replace_in_place`): a failure or a signal still keeps the previous run; only a SIGKILL during those renames
    can leave a mix (without run.json). `write_outputs=False` computes everything and writes
    nothing (context parallelism: every process computes the edit, process 0 writes it); its record lists no
    outputs."""
    log = log or (lambda message: None)
    if not write_outputs:
        return _edit_into(pipe, dataclasses.replace(settings, save_inversion=None), None, None, {}, load_info, log,
                          stop)
    folder = os.path.realpath(output_dir)
    parent = os.path.dirname(folder)
    made = []  # folders above the output folder made for it, removed again if the run fails
    ancestor = parent
    while not os.path.exists(ancestor):
        made.append(ancestor)
        ancestor = os.path.dirname(ancestor)
    os.makedirs(parent, exist_ok=True)  # checked by `prepare_edit`; made only now that there is work to write
    remove_killed_run(output_dir, log)
    had_run = "run.json" in previous_outputs(folder)
    swap = can_swap(folder)
    if not swap:
        os.makedirs(folder, exist_ok=True)
    temporary = tempfile.mkdtemp(prefix=f"{RUN_TEMPORARY}{os.path.basename(folder)}-", dir=parent if swap else folder)
    os.chmod(temporary, 0o777 & ~user_umask())  # mkdtemp makes it private; the output folder is the user's
    outputs = {}
    try:
        record = _edit_into(pipe, settings, temporary, output_dir, outputs, load_info, log, stop)
        (replace_run if swap else replace_in_place)(temporary, output_dir, log if had_run else None)
        return record
    except BaseException as error:
        shutil.rmtree(temporary, ignore_errors=True)
        for path in made:
            try:
                os.rmdir(path)  # only if empty
            except OSError:
                pass
        _interrupted_note(error, output_dir, had_run, outputs.get("inversion"))
        raise


def _edit_into(pipe, settings: EditSettings, write_dir: str | None, output_dir: str | None, outputs: dict,
               load_info: dict | None, log, stop=None) -> dict:
    """`edit_video`'s work, written into `write_dir` and recorded by the paths the files will have in `output_dir`;
    each file written is added to `outputs` as soon as it exists (none without `write_dir`)."""
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
        if write_dir is not None:
            write_video_whole(writer, video, os.path.join(write_dir, f"{name}.mp4"), fps,
                              final=os.path.join(output_dir, f"{name}.mp4"))
            outputs[name] = os.path.join(output_dir, f"{name}.mp4")

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
    if write_dir is not None:
        write_json(record, os.path.join(write_dir, "run.json"))
        record["outputs"]["run"] = outputs["run"] = os.path.join(output_dir, "run.json")
    return record


def print_log(message: str):
    print(message, file=sys.stderr, flush=True)
