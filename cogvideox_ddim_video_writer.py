"""Writing videos and mask videos to MP4 with the ffmpeg binary imageio-ffmpeg ships, encoded as
`diffusers.utils.export_to_video` encodes. `cogvideox_ddim_video_io` re-exports these functions.

Imports no other module of the package (a leaf): the pipeline file imports it directly, so diffusers'
`custom_pipeline` loader ships it beside the pipeline.
"""

import os
import tempfile
from collections.abc import Sequence

import imageio_ffmpeg
import numpy as np
import PIL.Image


def _frame_as_rgb24(frame, index: int, first_size: tuple[int, int] | None) -> np.ndarray:
    """Frame `index` as a contiguous HxWx3 uint8 array, or an error naming the frame and what is wrong with it."""
    if isinstance(frame, PIL.Image.Image):
        array = np.asarray(frame.convert("RGB"))
    elif isinstance(frame, np.ndarray):
        array = frame
    else:
        raise TypeError(
            f"Frame {index} is a {type(frame).__name__}; write_video takes PIL images or HxWx3 numpy arrays (uint8, "
            "or float in [0, 1])."
        )
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"Frame {index} has shape {array.shape}; expected an HxWx3 RGB array.")
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"Frame {index} has dtype {array.dtype}; expected uint8, or float in [0, 1].")
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise ValueError(
                f"Frame {index} has float values outside [0, 1] (min {np.nanmin(array):.3g}, max "
                f"{np.nanmax(array):.3g}, finite: {bool(np.isfinite(array).all())}); scale it to [0, 1] or pass uint8."
            )
        array = (array * 255).astype(np.uint8)  # as diffusers' export_to_video converts float frames
    size = (array.shape[1], array.shape[0])
    if first_size is not None and size != first_size:
        raise ValueError(
            f"Frame {index} is {size[0]}x{size[1]} (width x height) but frame 0 is {first_size[0]}x{first_size[1]}: "
            "all frames of a video must have the same size."
        )
    return np.ascontiguousarray(array)


def write_video(frames, path: str | os.PathLike, fps: float = 8.0) -> str:
    """
    Write frames (PIL images or HxWx3 arrays, uint8 or float in [0, 1]) to an MP4 with imageio-ffmpeg, encoded as
    `diffusers.utils.export_to_video` encodes (libx264, quality 5, sizes rounded up to multiples of 16).

    `frames` is a sequence, checked whole before anything is written, or any other iterable (e.g. a generator),
    encoded as it comes. The file is written under a temporary name in the target's folder and moved into place at the
    end, so a failure (a bad frame, an error in the iterable, Ctrl-C) leaves neither a partial file nor a changed
    target; a bad frame's error names its index and what is wrong with it.
    """
    path = os.fspath(path)
    if isinstance(frames, (Sequence, np.ndarray)):
        if len(frames) == 0:
            raise ValueError(f"No frames to write to {path!r}.")
        first_size = None
        for index, frame in enumerate(frames):  # every frame checked before ffmpeg starts
            checked = _frame_as_rgb24(frame, index, first_size)
            first_size = first_size or (checked.shape[1], checked.shape[0])
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, partial = tempfile.mkstemp(suffix=".mp4", prefix=".partial-", dir=directory)
    os.close(handle)
    writer = None
    try:
        first_size = None
        for index, frame in enumerate(frames):
            array = _frame_as_rgb24(frame, index, first_size)
            if writer is None:
                first_size = (array.shape[1], array.shape[0])
                writer = imageio_ffmpeg.write_frames(partial, first_size, fps=fps, quality=5, macro_block_size=16)
                writer.send(None)  # starts ffmpeg
            writer.send(array)
        if writer is None:
            raise ValueError(f"No frames to write to {path!r}.")
        # ffmpeg finishes the file when the writer closes: only then is it complete
        writer.close()
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(partial, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(partial, path)
    finally:
        # Stop ffmpeg before removing its output: a writer left open would finish (and recreate) the file later.
        if writer is not None:
            writer.close()
        if os.path.exists(partial):
            os.remove(partial)
    return path


def write_mask_video(mask, path: str | os.PathLike, fps: float = 8.0) -> str:
    """
    Write a video mask (`[F, H, W]`, bool or floats in [0, 1], numpy or torch, e.g. `inv.mask[0]`) as a grayscale
    MP4: white where the video may change. `read_mask_video` reads it back.
    """
    if hasattr(mask, "detach"):
        mask = mask.detach().to("cpu").float().numpy()
    mask = np.asarray(mask, dtype=np.float32)
    if mask.ndim != 3:
        raise ValueError(f"`mask` must be [F, H, W] (one video), got shape {mask.shape}: e.g. pass `inv.mask[0]`.")
    gray = np.clip(mask * 255.0, 0, 255).round().astype(np.uint8)
    return write_video([np.repeat(frame[..., None], 3, axis=-1) for frame in gray], path, fps=fps)
