"""The source video of an edit: what a run will read of it, checked from its header and packet list before any weights
load (`check_source`), and its frames, frame rate and mask as the run reads them (`read_source`, `read_mask`)."""

from __future__ import annotations

from dataclasses import dataclass

from ..cogvideox_ddim_checkpoint import default_video_size
from ..cogvideox_ddim_errors import literal
from .settings import EditSettings, SettingsError
from .window_plan import WindowPlan, plan_windows


@dataclass(frozen=True)
class SourceShape:
    """What the edit will read of the source: frames (8k + 1) at the size they are brought to."""

    num_frames: int
    height: int
    width: int
    plan: WindowPlan  # the windows the run edits the frames in (one window: the clip as one)


def check_source(settings: EditSettings, config: dict) -> SourceShape:
    """Refuse a video that cannot be read or has too few frames for this selection, from its header and packet list
    alone (no frame is decoded); `config` is `checkpoint_config()`. Returns what the edit will read of it."""
    from ..cogvideox_ddim_video_io import count_frames, probe_video, select_frame_indices

    selection = (
        settings.skip_frames_start,
        settings.skip_frames_end,
        settings.frame_stride,
        None if settings.num_frames == "all" else settings.num_frames or config["transformer"]["sample_frames"],
        config["vae"].get("temporal_compression_ratio", 4),
        settings.sampling,
    )
    try:
        info = probe_video(settings.video)
        frames = select_frame_indices(count_frames(settings.video), *selection)
    except ValueError as error:
        raise SettingsError("video", literal(error)) from None
    if settings.mask is not None:  # read with the same selection, frame for frame
        probe_video(settings.mask)
        mask_count = count_frames(settings.mask)
        try:
            mask_frames = len(select_frame_indices(mask_count, *selection))
        except ValueError:  # fewer frames than any source needs: say how many it gives
            mask_frames = len(range(settings.skip_frames_start, mask_count - settings.skip_frames_end,
                                    settings.frame_stride))
        if mask_frames != len(frames):
            raise SettingsError(
                "mask", f"The mask video {literal(repr(settings.mask))} gives {mask_frames} frames with this frame selection, the "
                f"video {len(frames)}: give a mask video with a frame for every frame of the source."
            )
    plan = plan_windows(settings, config, len(frames))  # all frames: the clip's length decides
    default = default_video_size(config["transformer"], *info.display_size)
    return SourceShape(len(frames), settings.height or default[0], settings.width or default[1], plan)


@dataclass
class SourceVideo:
    """The source frames an edit inverts, and the frame rate its outputs are written at (`playback_rate`)."""

    frames: object  # numpy.ndarray (uint8 [F, H, W, 3], 8k + 1 frames at the model's size for this source)
    fps: float
    fps_from: str  # how `fps` was chosen, recorded in run.json
    indices: list[int]  # the frames' numbers in the source


def read_source(pipe, settings: EditSettings) -> SourceVideo:
    """The source frames to invert, selected and resized while decoding, and the rate to write its edits at."""
    import numpy as np

    read = _read_selected_frames(pipe, settings, settings.video, settings.height, settings.width)
    fps, fps_from = playback_rate(read, settings.sampling, pipe.transformer.config)
    return SourceVideo(np.stack([np.asarray(frame) for frame in read.frames]), fps, fps_from, read.indices)


def checkpoint_fps(transformer_config) -> float:
    """The frame rate the checkpoint's videos play at (model cards): 8 fps, 16 for CogVideoX 1.5 (temporal patches)."""
    return 16.0 if transformer_config.get("patch_size_t") is not None else 8.0


def playback_rate(read, sampling: str, transformer_config) -> tuple[float, str]:
    """The frame rate an edit of the frames `read` is written at, and how it was chosen: the pace of the frames used,
    from their timestamps (a stride or a variable frame rate included; the container's average rate over the stride
    where the file lists no usable timestamps). Frames spread over a clip (`sampling="spread"`) whose pace is slower
    than the checkpoint's frame rate (`checkpoint_fps`) play at that rate instead, a time-lapse: 9 frames of a
    5-minute clip would otherwise play for 5 minutes."""
    from ..cogvideox_ddim_video_io import index_frames

    fps, fps_from = read.fps, "the source's average frame rate over the stride"
    first, last = read.indices[0], read.indices[-1]
    index = index_frames(read.source.path) if last > first else None
    if index is not None and last < len(index) and index.times[last] > index.times[first]:
        fps = (len(read.indices) - 1) / float(index.times[last] - index.times[first])
        fps_from = "the timestamps of the frames used"
    native = checkpoint_fps(transformer_config)
    if sampling == "spread" and fps < native:
        return native, f"the checkpoint's frame rate: the spread frames' own pace ({fps:.3g} fps) is slower"
    return round(fps, 3), fps_from


def _read_selected_frames(pipe, settings: EditSettings, path: str, height: int | None, width: int | None):
    """`path`'s frames with the edit's frame selection and resize mode: the source, or a mask frame for frame."""
    return pipe.read_source_video(
        path,
        height=height,
        width=width,
        resize_mode=settings.resize_mode,
        num_frames=settings.num_frames,
        sampling=settings.sampling,
        skip_frames_start=settings.skip_frames_start,
        skip_frames_end=settings.skip_frames_end,
        frame_stride=settings.frame_stride,
    )


def read_mask(pipe, settings: EditSettings, inv):
    """The edit mask `[1, F, H, W]` (bool): `settings.mask` read with the source's frame selection and brought to the
    inversion's size with its resize mode (white = may change), or the inversion's own (`--mask-words`); None
    without either."""
    import numpy as np
    import torch

    if settings.mask is None:
        return inv.mask if settings.mask_words else None
    height, width = (size * pipe.vae_scale_factor_spatial for size in inv.latents.shape[3:])
    read = _read_selected_frames(pipe, settings, settings.mask, height, width)
    gray = np.stack([np.asarray(frame.convert("L")) for frame in read.frames])
    return torch.from_numpy(gray > 127)[None]  # compression blurs a black and white video: threshold at half
