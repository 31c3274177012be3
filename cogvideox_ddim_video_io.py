"""Video file I/O without decord or torchvision.

Reading runs the ffmpeg binary that imageio-ffmpeg ships inside its wheel (no system ffmpeg, no compiled bindings to
match) and streams raw RGB frames from it, so memory is bounded by the frames kept, not by the file:

- ffmpeg picks the frames (`select` on the frame number) and stops after the last one (`-frames:v`), so nothing after
  the last selected frame is decoded and only selected frames cross the pipe;
- a selected frame far from the previous one is reached by input seeking (`-ss` before `-i`: ffmpeg jumps to the
  keyframe before it and decodes from there), not by decoding everything in between;
- with a target size, ffmpeg converts, scales and crops or pads each selected frame (`resize_filter`), so a 1080p or
  4K source never reaches Python at full size.

Seeking is frame-exact because frames are located by their timestamps, listed without decoding by ffmpeg's `framecrc`
muxer over a stream copy (one line per packet: timestamp, keyframe flag). That listing also gives the exact frame
count, for variable frame rates too; ffmpeg seeks to a point halfway between the wanted frame and the one before it.
This is what seeking with PyAV would give, so PyAV (a second, compiled copy of the FFmpeg libraries) is not needed.
When a file's timestamps cannot be listed (missing or repeated), reading falls back to decoding from the start, still
keeping only the selected frames. The binary is run directly rather than through `imageio_ffmpeg.read_frames` to read
exactly one frame's bytes per selected frame and ffmpeg's own count of the frames it decoded (its verbose log), which
tests and `benchmarks/read_video.py` check.

Probing and indexing a file (`probe_video`, `index_frames`, `count_frames`) live in `cogvideox_ddim_video_probe`,
writing (`write_video`, `write_mask_video`: the encoding settings of `diffusers.utils.export_to_video`) in
`cogvideox_ddim_video_writer`; both are re-exported here, the names callers import from this module (or from
`video_io`, its alias). The pipeline file imports all three directly (diffusers' `custom_pipeline` loader ships only
its direct relative imports).
"""

import itertools
import math
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass

import imageio_ffmpeg
import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers.utils import logging

from .cogvideox_ddim_video_probe import (  # noqa: F401  (re-exported: callers import them from here)
    FrameIndex,
    VideoInfo,
    _decode_count,
    _ffmpeg_error,
    count_frames,
    index_frames,
    probe_video,
)
from .cogvideox_ddim_video_writer import write_mask_video, write_video  # noqa: F401  (re-exported)


logger = logging.get_logger(__name__)  # pylint: disable=invalid-name

# CogVideoX's VAE compresses time by 4 after the first frame (4k + 1 frames -> k + 1 latent frames), and diffusers'
# decoder returns 4k + 1 frames only for an odd number of latent frames: an even number decodes to 4 frames each, which
# no longer line up with the source. So videos here have 8k + 1 frames (an odd latent count), as the public
# checkpoints' 49 and 81 do.
MIN_NUM_FRAMES = 9
from .cogvideox_ddim_checkpoint import aspect_preserving_size  # noqa: E402,F401  (re-exported)
from .cogvideox_ddim_choices import RESIZE_MODES, SAMPLING_MODES  # noqa: E402  (torch-free, shared with the front ends)
# A seek starts a new ffmpeg process: about 0.1 s of CPU, the time to decode some 20 1080p H.264 frames. A gap between
# selected frames is crossed by seeking when decoding it would cost more than that plus decoding from the keyframe.
SEEK_OVERHEAD_FRAMES = 24


def frame_count_for_vae(num_frames: int, temporal_compression: int = 4) -> int:
    """Largest count of the form `2 * temporal_compression * k + 1` (an odd number of latent frames) not above
    `num_frames`."""
    step = 2 * temporal_compression
    return (num_frames - 1) // step * step + 1 if num_frames > 0 else 0


def check_frame_selection(
    skip_frames_start: int = 0,
    skip_frames_end: int = 0,
    frame_stride: int = 1,
    max_num_frames: int | None = None,
    sampling: str = "first",
):
    """Refuse frame-selection arguments that select nothing sensible, before any decoding."""
    if skip_frames_start < 0 or skip_frames_end < 0:
        raise ValueError("`skip_frames_start` and `skip_frames_end` must be >= 0.")
    if frame_stride < 1:
        raise ValueError(f"`frame_stride` must be >= 1, got {frame_stride}.")
    if max_num_frames is not None and max_num_frames < MIN_NUM_FRAMES:
        raise ValueError(f"`max_num_frames` must be at least {MIN_NUM_FRAMES}, got {max_num_frames}.")
    if sampling not in SAMPLING_MODES:
        raise ValueError(
            f"`sampling` must be 'first' (consecutive frames from `skip_frames_start`, every `frame_stride`-th) or "
            f"'spread' (`max_num_frames` frames evenly spaced over the clip), got {sampling!r}."
        )
    if sampling == "spread" and frame_stride != 1:
        raise ValueError(
            "sampling='spread' chooses the stride itself (the largest that fits `max_num_frames` frames in the clip): "
            f"leave `frame_stride` at 1 (got {frame_stride}), or use sampling='first' with your stride."
        )
    if sampling == "spread" and max_num_frames is None:
        raise ValueError("sampling='spread' needs `max_num_frames`: the number of frames to spread over the clip.")


def ordinal(number: int) -> str:
    """2 -> "2nd", 3 -> "3rd", 11 -> "11th": how a stride reads in a message."""
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def select_frame_indices(
    total_frames: int,
    skip_frames_start: int = 0,
    skip_frames_end: int = 0,
    frame_stride: int = 1,
    max_num_frames: int | None = None,
    temporal_compression: int = 4,
    sampling: str = "first",
) -> list[int]:
    """
    Indices of the frames to keep, 8k + 1 of them (an odd number of latent frames), from the frames left after
    skipping both ends.

    `sampling="first"` takes every `frame_stride`-th frame from the start, at most `max_num_frames`. `"spread"` takes
    `max_num_frames` frames (fewer if the clip is shorter) evenly over the whole clip, with the largest whole stride
    that fits them, so that motion stays uniform; the published CogVideo inversion script samples a clip this way.
    """
    check_frame_selection(skip_frames_start, skip_frames_end, frame_stride, max_num_frames, sampling)
    start, end = skip_frames_start, total_frames - skip_frames_end
    indices = list(range(start, end, frame_stride))
    if sampling == "spread" and len(indices) >= MIN_NUM_FRAMES:
        count = frame_count_for_vae(min(max_num_frames, len(indices)), temporal_compression)
        indices = indices[:: max(1, (len(indices) - 1) // (count - 1))][:count]
    elif max_num_frames is not None:
        indices = indices[:max_num_frames]
    if len(indices) < MIN_NUM_FRAMES:
        taking = "every frame" if frame_stride == 1 else f"every {ordinal(frame_stride)} frame"
        raise ValueError(
            f"Only {len(indices)} frame(s) remain of {total_frames} after skipping {skip_frames_start} at the start, "
            f"{skip_frames_end} at the end and taking {taking}; CogVideoX needs at least {MIN_NUM_FRAMES}. Lower the "
            "skips or the stride, or use a longer video."
        )
    return indices[: frame_count_for_vae(len(indices), temporal_compression)]


# Sizes and resizing ---------------------------------------------------------------------------------------------------


def check_resize_mode(resize_mode: str):
    if resize_mode not in RESIZE_MODES:
        raise ValueError(
            f"`resize_mode` must be 'crop' (scale to cover the target size, centre crop), 'pad' (scale to fit, black "
            f"bars) or 'stretch' (scale each axis on its own), got {resize_mode!r}."
        )


@dataclass(frozen=True)
class ResizeGeometry:
    """How a frame reaches `height` x `width`: scale to `scaled_height` x `scaled_width`, then crop or pad.

    With `mode="crop"`, `top`/`left` are where the crop starts in the scaled frame; with `"pad"`, where the scaled
    frame is placed on the black canvas; with `"stretch"` they are 0.
    """

    height: int
    width: int
    scaled_height: int
    scaled_width: int
    top: int
    left: int
    mode: str


def resize_geometry(
    source_height: int,
    source_width: int,
    height: int,
    width: int,
    resize_mode: str = "crop",
    pixel_aspect_ratio: float = 1.0,
) -> ResizeGeometry:
    """The scale and offsets that bring a `source_height` x `source_width` frame to `height` x `width`.

    `pixel_aspect_ratio` (a video's sample aspect ratio, width over height of one pixel) makes the source's displayed
    aspect the one kept by "crop" and "pad".
    """
    check_resize_mode(resize_mode)
    if min(source_height, source_width, height, width) < 1:
        raise ValueError(f"Sizes must be positive: {source_width}x{source_height} -> {width}x{height} (w x h).")
    display_width = source_width * pixel_aspect_ratio
    if resize_mode == "stretch":
        return ResizeGeometry(height, width, height, width, 0, 0, resize_mode)
    if resize_mode == "crop":
        scale = max(height / source_height, width / display_width)
        scaled_height = max(height, round(source_height * scale))
        scaled_width = max(width, round(display_width * scale))
        top, left = (scaled_height - height) // 2, (scaled_width - width) // 2
    else:
        scale = min(height / source_height, width / display_width)
        scaled_height = min(height, max(1, round(source_height * scale)))
        scaled_width = min(width, max(1, round(display_width * scale)))
        top, left = (height - scaled_height) // 2, (width - scaled_width) // 2
    return ResizeGeometry(height, width, scaled_height, scaled_width, top, left, resize_mode)


def resize_frames(frames: torch.Tensor, height: int, width: int, resize_mode: str = "crop") -> torch.Tensor:
    """
    Resize frames `[..., C, H, W]` (float, in [0, 1]) to `height` x `width` with `resize_mode`.

    "crop" scales the frame to cover the target and cuts the centre, "pad" scales it to fit and centres it on black,
    "stretch" scales each axis to the target. Scaling is bicubic (Keys, a = -0.75) with antialiasing; `resize_filter`
    is the same operation in ffmpeg, for files. Frames already at the target size are returned unchanged.
    """
    *leading, channels, source_height, source_width = frames.shape
    geometry = resize_geometry(source_height, source_width, height, width, resize_mode)
    if (source_height, source_width) == (height, width):
        return frames
    frames = frames.reshape(-1, channels, source_height, source_width)
    if (geometry.scaled_height, geometry.scaled_width) != (source_height, source_width):
        frames = F.interpolate(
            frames.float(), size=(geometry.scaled_height, geometry.scaled_width), mode="bicubic", antialias=True
        ).clamp(0, 1)
    if resize_mode == "crop":
        frames = frames[..., geometry.top : geometry.top + height, geometry.left : geometry.left + width]
    elif resize_mode == "pad":
        bottom = height - geometry.scaled_height - geometry.top
        right = width - geometry.scaled_width - geometry.left
        frames = F.pad(frames, (geometry.left, right, geometry.top, bottom), value=0.0)
    return frames.reshape(*leading, channels, height, width)


def frames_to_tensor(video) -> torch.Tensor:
    """
    In-memory frames as a float tensor `[B, F, 3, H, W]` in [0, 1].

    Takes a list of PIL images, of `[H, W, 3]` arrays or of `[3, H, W]` tensors (one video), a list of such lists or of
    4-D arrays/tensors (a batch), an array `[F, H, W, 3]` / `[B, F, H, W, 3]` or a tensor `[F, 3, H, W]` /
    `[B, F, 3, H, W]`, each uint8 or float in [0, 1].
    """
    if isinstance(video, (list, tuple)):
        if len(video) == 0:
            raise ValueError("`video` is an empty list: pass at least one frame.")
        first = video[0]
        if isinstance(first, (list, tuple)) or (isinstance(first, (np.ndarray, torch.Tensor)) and first.ndim == 4):
            return torch.cat([frames_to_tensor(item) for item in video])  # a batch of videos
        if isinstance(first, PIL.Image.Image):
            video = np.stack([np.asarray(frame.convert("RGB")) for frame in video])
        elif isinstance(first, np.ndarray):
            video = np.stack(video)
        elif isinstance(first, torch.Tensor):
            video = torch.stack(list(video))
        else:
            raise TypeError(f"`video` as a list must hold PIL images (frames), arrays or tensors, got {type(first)}.")
    if isinstance(video, np.ndarray):
        if video.ndim not in (4, 5) or video.shape[-1] != 3:
            raise ValueError(f"A video array must be [F, H, W, 3] or [B, F, H, W, 3] (RGB), got {video.shape}.")
        video = torch.from_numpy(np.ascontiguousarray(video)).movedim(-1, -3)
    elif not isinstance(video, torch.Tensor):
        raise TypeError(
            f"`video` must be a file path, a list of PIL images, a numpy array or a torch tensor, got {type(video)}."
        )
    elif video.ndim not in (4, 5) or video.shape[-3] != 3:
        raise ValueError(f"A video tensor must be [F, 3, H, W] or [B, F, 3, H, W] (RGB), got {tuple(video.shape)}.")
    if video.dtype == torch.uint8:
        video = video.float() / 255.0
    elif video.is_floating_point():
        video = video.float()
        low, high = video.min().item(), video.max().item()
        if low < -1e-3 or high > 1 + 1e-3:
            raise ValueError(
                f"Float frames must be in [0, 1], got values in [{low:.3g}, {high:.3g}]: pass uint8 frames, or "
                "(frames + 1) / 2 for frames in [-1, 1]."
            )
        video = video.clamp(0, 1)
    else:
        raise ValueError(f"Frames must be uint8 or float in [0, 1], got {video.dtype}.")
    return video if video.ndim == 5 else video.unsqueeze(0)


def resize_filter(geometry: ResizeGeometry) -> str:
    """The ffmpeg filter chain doing `resize_frames`' work on decoded frames (converted to RGB first, as it sees them)."""
    # swscale's bicubic with B = 0, C = 0.75 is torch's bicubic (Keys, a = -0.75); swscale widens it when shrinking,
    # as torch's antialias does.
    chain = [
        "format=gbrp",  # planar RGB: swscale scales it a little faster than packed rgb24, to the same values
        f"scale=w={geometry.scaled_width}:h={geometry.scaled_height}:flags=bicubic:param0=0:param1=0.75",
    ]
    if geometry.mode == "crop":
        chain.append(f"crop=w={geometry.width}:h={geometry.height}:x={geometry.left}:y={geometry.top}")
    elif geometry.mode == "pad":
        chain.append(f"pad=w={geometry.width}:h={geometry.height}:x={geometry.left}:y={geometry.top}:color=black")
    return ",".join(chain + ["setsar=1"])


@dataclass
class VideoFrames:
    """
    Frames read from a video file by `read_video_frames`, with where they came from.

    Args:
        frames: RGB PIL frames (8k + 1 of them).
        fps: the frame rate at which they play at the source's speed (source fps / the stride between them).
        indices: the source frame numbers they are (counting from 0, in presentation order).
        source: what the file's header says (`probe_video`).
        num_source_frames: the file's frame count, when reading needed it (`None` otherwise).
        frames_decoded: frames ffmpeg decoded to produce them (its own count).
        bytes_read: bytes of raw frames read from ffmpeg (the selected frames only).
    """

    frames: list[PIL.Image.Image]
    fps: float
    indices: list[int]
    source: VideoInfo
    num_source_frames: int | None
    frames_decoded: int
    bytes_read: int

    @property
    def height(self) -> int:
        return self.frames[0].height

    @property
    def width(self) -> int:
        return self.frames[0].width


def _select_expression(offsets: list[int]) -> str:
    """ffmpeg `select` expression keeping the frames numbered `offsets` (counting from 0) of its input."""
    steps = {b - a for a, b in itertools.pairwise(offsets)}
    if len(steps) <= 1:  # an arithmetic sequence, as both samplings make
        return _stride_expression(offsets[0], steps.pop() if steps else 1)
    return "select='" + "+".join(f"eq(n,{offset})" for offset in offsets) + "'"


def _stride_expression(first: int, stride: int) -> str:
    return f"select='gte(n,{first})*not(mod(n-{first},{stride}))'"


def _plan_runs(indices: list[int], index: FrameIndex) -> list[tuple[int, list[int]]]:
    """
    Split the wanted frames into runs, each decoded by one ffmpeg process: `(start, frames)`, where `start` is 0 (decode
    from the file's start) or `frames[0]` (seek there).

    A frame starts a new run when a seek to it (decoding from the keyframe before it) costs fewer decoded frames than
    decoding on from the previous wanted frame.
    """
    runs, position = [], 0
    for frame in indices:
        # the seek time lies just before `frame`, so ffmpeg starts at the keyframe before that time
        from_keyframe = frame - index.keyframe_before(frame - 1) if frame > 0 else 0
        if not runs:  # a first process starts either way: seek only if that decodes less than starting at 0
            runs.append((frame, [frame]) if frame > 0 and from_keyframe < frame else (0, [frame]))
        elif frame - position <= from_keyframe + SEEK_OVERHEAD_FRAMES:
            runs[-1][1].append(frame)
        else:
            runs.append((frame, [frame]))
        position = frame + 1
    return runs


def _decode_run(
    path: str,
    select: str,
    seek_time: float,
    frame_size: tuple[int, int],
    filters: str | None,
    limit: int | None,
) -> tuple[list[PIL.Image.Image], int, int]:
    """
    Decode with one ffmpeg process: seek to `seek_time` (0: none), keep the frames `select` picks, resize them with
    `filters`, stop after `limit` frames (`None`: at the end of the file).

    Returns the frames, ffmpeg's count of the frames it decoded, and the bytes read from it.
    """
    width, height = frame_size
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-v", "verbose"]
    if seek_time > 0:
        command += ["-ss", f"{seek_time:.6f}"]
    command += ["-i", path, "-map", "0:v:0", "-vf", ",".join([select] + ([filters] if filters else []))]
    # passthrough: every decoded frame once, never duplicated or dropped to make a constant frame rate
    command += ["-fps_mode", "passthrough"] + (["-frames:v", str(limit)] if limit is not None else [])
    command += ["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    frame_bytes = width * height * 3
    frames, bytes_read = [], 0
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: ffmpeg's log can never fill up and stall it
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
        try:
            while limit is None or len(frames) < limit:
                raw = process.stdout.read(frame_bytes)
                bytes_read += len(raw)
                if len(raw) < frame_bytes:
                    break
                frames.append(PIL.Image.frombytes("RGB", (width, height), raw))
            process.wait(timeout=60)  # after `-frames:v` frames ffmpeg stops decoding and exits by itself
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            process.stdout.close()
        log.seek(0)
        text = log.read().decode(errors="replace")
    if process.returncode != 0:
        raise ValueError(f"Could not decode {path!r} as a video ({_ffmpeg_error(text)}).")
    decoded = re.findall(r"\(video\): \d+ packets read \(\d+ bytes\); (\d+) frames decoded", text)
    if not decoded:
        raise RuntimeError(f"ffmpeg did not report how many frames it decoded; its log ends: {_ffmpeg_error(text)}")
    return frames, int(decoded[-1]), bytes_read


def read_video_frames(
    path: str | os.PathLike,
    skip_frames_start: int = 0,
    skip_frames_end: int = 0,
    frame_stride: int = 1,
    max_num_frames: int | None = None,
    temporal_compression: int = 4,
    *,
    sampling: str = "first",
    height: int | None = None,
    width: int | None = None,
    resize_mode: str = "crop",
) -> VideoFrames:
    """
    Read the frames `select_frame_indices` selects from a video file, decoding as little as it can.

    Memory holds the selected frames and one frame in flight, whatever the file's length. With `height` and `width`,
    ffmpeg brings each selected frame to that size with `resize_mode` ("crop", "pad" or "stretch", see
    `resize_frames`) before it reaches Python; without them frames keep the source's size. Frame numbers count the
    frames the file holds, in presentation order (a variable frame rate is not resampled).
    """
    path = os.fspath(path)
    check_frame_selection(skip_frames_start, skip_frames_end, frame_stride, max_num_frames, sampling)
    check_resize_mode(resize_mode)
    if (height is None) != (width is None) or (height is not None and min(height, width) < 1):
        raise ValueError(f"Pass both `height` and `width` (positive) or neither, got height={height}, width={width}.")
    source = probe_video(path)
    filters = None
    frame_size = (source.width, source.height)
    if height is not None:
        geometry = resize_geometry(source.height, source.width, height, width, resize_mode, source.pixel_aspect_ratio)
        frame_size = (width, height)
        if (source.height, source.width) != (height, width) or source.pixel_aspect_ratio != 1:
            filters = resize_filter(geometry)
    selection = (skip_frames_start, skip_frames_end, frame_stride, max_num_frames, temporal_compression, sampling)

    # 1. With the frame list (needed to seek, or to know where the clip ends): seek to each run of wanted frames.
    needs_count = sampling == "spread" or skip_frames_end > 0
    index = index_frames(path) if needs_count or skip_frames_start > 0 else None
    if index is not None:
        indices = select_frame_indices(len(index), *selection)
        frames, decoded, bytes_read = [], 0, 0
        for start, run in _plan_runs(indices, index):
            select = _select_expression([frame - start for frame in run])
            got, run_decoded, run_bytes = _decode_run(
                path, select, index.seek_time(start), frame_size, filters, len(run)
            )
            frames, decoded, bytes_read = frames + got, decoded + run_decoded, bytes_read + run_bytes
            if len(got) < len(run):
                break
        if len(frames) == len(indices):
            return _result(frames, source, indices, len(index), decoded, bytes_read)
        logger.warning(
            f"{path!r}: the decoder gave fewer frames than the file lists packets; decoding from the start instead."
        )

    # 2. Decoding from the start, without seeking: the decoder numbers the frames.
    if needs_count:
        total = _decode_count(path)
        wanted = select_frame_indices(total, *selection)
        frames, decoded, bytes_read = _decode_run(
            path, _select_expression(wanted), 0.0, frame_size, filters, len(wanted)
        )
        return _result(frames, source, wanted, total, decoded, bytes_read)
    # "first" sampling up to `max_num_frames` or the end of the clip: the decode tells where the clip ends
    limit = None if max_num_frames is None else frame_count_for_vae(max_num_frames, temporal_compression)
    select = _stride_expression(skip_frames_start, frame_stride)
    frames, decoded, bytes_read = _decode_run(path, select, 0.0, frame_size, filters, limit)
    total = decoded if limit is None or len(frames) < limit else None  # None: the clip goes on
    if total is None:
        indices = list(range(skip_frames_start, skip_frames_start + frame_stride * limit, frame_stride))
    else:
        indices = select_frame_indices(total, *selection)
    return _result(frames[: len(indices)], source, indices, total, decoded, bytes_read)


def _result(frames, source, indices, total, decoded, bytes_read) -> VideoFrames:
    stride = indices[1] - indices[0] if len(indices) > 1 else 1
    fps = (source.fps or 8.0) / stride
    return VideoFrames(frames, fps, indices, source, total, decoded, bytes_read)


def read_video(
    path: str | os.PathLike,
    skip_frames_start: int = 0,
    skip_frames_end: int = 0,
    frame_stride: int = 1,
    max_num_frames: int | None = None,
    temporal_compression: int = 4,
    *,
    sampling: str = "first",
    height: int | None = None,
    width: int | None = None,
    resize_mode: str = "crop",
) -> tuple[list[PIL.Image.Image], float]:
    """
    Decode the selected frames of a video file (see `read_video_frames`) into RGB PIL frames.

    Returns the frames and the frame rate at which they play at the source's speed (source fps / stride).
    """
    result = read_video_frames(
        path,
        skip_frames_start,
        skip_frames_end,
        frame_stride,
        max_num_frames,
        temporal_compression,
        sampling=sampling,
        height=height,
        width=width,
        resize_mode=resize_mode,
    )
    return result.frames, result.fps


def read_mask_video(path: str | os.PathLike, **selection) -> np.ndarray:
    """
    Read a mask video (white = may change) as a float32 array `[F, H, W]` of 0s and 1s.

    Frames are selected as `read_video` selects them (pass the same `skip_frames_start`, `frame_stride`,
    `max_num_frames`, ... as for the source video so that mask frames line up with video frames). Pixels brighter than
    half are 1 (8-bit gray level > 127.5, i.e. 128 and up): video compression blurs exact values, so the mask is read
    back as black and white. This is the one rule for mask videos: read them with this function.
    """
    frames, _ = read_video(path, **selection)
    gray = np.stack([np.asarray(frame.convert("L"), dtype=np.float32) for frame in frames])
    return (gray > 127.5).astype(np.float32)
