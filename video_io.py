"""Video file I/O without decord or torchvision.

Reading uses imageio-ffmpeg, which ships a static ffmpeg binary inside its wheel (no system ffmpeg, no compiled
bindings to match) and streams raw RGB frames, so only the selected frames are kept in memory. Writing streams frames
to the same ffmpeg with the encoding settings of `diffusers.utils.export_to_video`.
"""

import os
import tempfile
from collections.abc import Sequence

import imageio_ffmpeg
import numpy as np
import PIL.Image


# CogVideoX's VAE compresses time by 4 after the first frame: pixel videos have 4k + 1 frames.
MIN_NUM_FRAMES = 5


def frame_count_for_vae(num_frames: int, temporal_compression: int = 4) -> int:
    """Largest count of the form `temporal_compression * k + 1` not above `num_frames`."""
    return (num_frames - 1) // temporal_compression * temporal_compression + 1 if num_frames > 0 else 0


def select_frame_indices(
    total_frames: int,
    skip_frames_start: int = 0,
    skip_frames_end: int = 0,
    frame_stride: int = 1,
    max_num_frames: int | None = None,
    temporal_compression: int = 4,
) -> list[int]:
    """Indices of the frames to keep: skip both ends, take every `frame_stride`-th, cap, then trim to 4k + 1."""
    if skip_frames_start < 0 or skip_frames_end < 0:
        raise ValueError("`skip_frames_start` and `skip_frames_end` must be >= 0.")
    if frame_stride < 1:
        raise ValueError(f"`frame_stride` must be >= 1, got {frame_stride}.")
    if max_num_frames is not None and max_num_frames < MIN_NUM_FRAMES:
        raise ValueError(f"`max_num_frames` must be at least {MIN_NUM_FRAMES}, got {max_num_frames}.")
    indices = list(range(skip_frames_start, total_frames - skip_frames_end, frame_stride))
    if max_num_frames is not None:
        indices = indices[:max_num_frames]
    if len(indices) < MIN_NUM_FRAMES:
        raise ValueError(
            f"Only {len(indices)} frame(s) remain of {total_frames} after skipping {skip_frames_start} at the start, "
            f"{skip_frames_end} at the end and taking every {frame_stride}-th; CogVideoX needs at least "
            f"{MIN_NUM_FRAMES}. Lower the skips or the stride, or use a longer video."
        )
    return indices[: frame_count_for_vae(len(indices), temporal_compression)]


def read_video(
    path: str | os.PathLike,
    skip_frames_start: int = 0,
    skip_frames_end: int = 0,
    frame_stride: int = 1,
    max_num_frames: int | None = None,
    temporal_compression: int = 4,
) -> tuple[list[PIL.Image.Image], float]:
    """
    Decode a video file into RGB PIL frames, selected as `select_frame_indices` describes (4k + 1 frames).

    Returns the frames and the frame rate at which they play at the source's speed (source fps / `frame_stride`).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Video file not found: {path!r}. Check the path.")
    try:
        reader = imageio_ffmpeg.read_frames(path)
        meta = next(reader)
        width, height = meta["size"]
        frames = [np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3) for raw in reader]
    except (RuntimeError, OSError, StopIteration, KeyError, ValueError) as error:
        raise ValueError(
            f"Could not decode {path!r} as a video ({error}). Pass a video file that ffmpeg can read, e.g. an MP4."
        ) from error
    indices = select_frame_indices(
        len(frames), skip_frames_start, skip_frames_end, frame_stride, max_num_frames, temporal_compression
    )
    fps = float(meta.get("fps") or 8.0) / frame_stride
    return [PIL.Image.fromarray(frames[i]) for i in indices], fps


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
