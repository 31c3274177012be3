"""Video file I/O without decord or torchvision.

Reading uses imageio-ffmpeg, which ships a static ffmpeg binary inside its wheel (no system ffmpeg, no compiled
bindings to match) and streams raw RGB frames, so only the selected frames are kept in memory. Writing goes through
`diffusers.utils.export_to_video`, which uses the same ffmpeg through imageio.
"""

import os
import tempfile

import imageio_ffmpeg
import numpy as np
import PIL.Image
from diffusers.utils import export_to_video


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


def write_video(frames, path: str | os.PathLike, fps: float = 8.0) -> str:
    """
    Write frames (PIL images or HxWx3 arrays, uint8 or float in [0, 1]) to an MP4 with `export_to_video`.

    The file is written under a temporary name and moved into place at the end, so a failure leaves no partial file.
    """
    path = os.fspath(path)
    if len(frames) == 0:
        raise ValueError(f"No frames to write to {path!r}.")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, partial = tempfile.mkstemp(suffix=".mp4", prefix=".partial-", dir=directory)
    os.close(handle)
    try:
        # export_to_video scales arrays by 255 (it expects floats in [0, 1]): hand it uint8 frames as images
        frames = [PIL.Image.fromarray(f) if isinstance(f, np.ndarray) and f.dtype == np.uint8 else f for f in frames]
        export_to_video(frames, partial, fps=fps)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(partial, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return path


def read_mask_video(path: str | os.PathLike, **selection) -> np.ndarray:
    """
    Read a mask video (white = may change) as a float32 array `[F, H, W]` of 0s and 1s.

    Frames are selected as `read_video` selects them (pass the same `skip_frames_start`, `frame_stride`,
    `max_num_frames`, ... as for the source video so that mask frames line up with video frames). Pixels brighter than
    half are 1: video compression blurs exact values, so the mask is read back as black and white.
    """
    frames, _ = read_video(path, **selection)
    gray = np.stack([np.asarray(frame.convert("L"), dtype=np.float32) for frame in frames])
    return (gray > 127.5).astype(np.float32)


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
