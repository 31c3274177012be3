"""Score an edit against its source with metrics that need no model weights.

- PSNR and SSIM (Wang et al., 2004: Gaussian window of sigma 1.5, per RGB channel) over the whole frames and, with a
  mask (white = may change), inside it (how much the edit changed there) and outside it (how well the rest is kept).
- Flow-warp error (as TokenFlow's "warp error"): optical flow of the *source* (OpenCV's DIS, a classical method) warps
  each edited frame onto the next; the mean absolute difference says whether the edit moves as the source does. The
  source's own warp error (the flow's imperfection) is reported beside it, and the ratio of the two.
- Seam ratio at given window boundaries: the mean frame-to-frame change across the boundaries over the mean change
  elsewhere, for the edit, for the source, and the edit's divided by the source's (1: no seam beyond the source's own
  motion; a visible jump where windows meet gives more).

Frames are compared as floats in [0, 1]. Everything is deterministic: the same inputs give the same numbers. SSIM and
the flow use OpenCV (`pip install opencv-python-headless`; `--no-flow` scores without it).
"""

import math
import os

import numpy as np
import torch

from .cogvideox_ddim_video_io import frames_to_tensor, read_mask_video, read_video


SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # an 11-tap window, as Wang et al.
SSIM_C1, SSIM_C2 = 0.01**2, 0.03**2  # (K * L)^2 with L = 1 for frames in [0, 1]


def load_frames(video, name: str = "video", **read_options) -> torch.Tensor:
    """One video as a float32 tensor `[F, 3, H, W]` in [0, 1]: a file path (read with `read_video` and
    `read_options`), a list of PIL frames, an array `[F, H, W, 3]` or a tensor `[F, 3, H, W]` (uint8 or [0, 1])."""
    if isinstance(video, (str, os.PathLike)):
        video, _ = read_video(video, **read_options)
    frames = frames_to_tensor(video)
    if frames.shape[0] != 1:
        raise ValueError(f"`{name}` holds {frames.shape[0]} videos: pass one.")
    return frames[0]


def load_mask(mask, name: str = "mask", **read_options) -> torch.Tensor:
    """A mask as float32 `[F, H, W]` in [0, 1] (white = may change): a mask video path (`read_mask_video`), or an
    array/tensor `[F, H, W]` (bool, uint8 or float in [0, 1]; `[1, F, H, W]` such as `inv.mask` too)."""
    if isinstance(mask, (str, os.PathLike)):
        mask = read_mask_video(mask, **read_options)
    mask = torch.as_tensor(np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask))
    if mask.ndim == 4 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim != 3:
        raise ValueError(f"`{name}` must be [F, H, W] (one video), got shape {tuple(mask.shape)}.")
    mask = mask.float() / 255.0 if mask.dtype == torch.uint8 else mask.float()
    if mask.min() < 0 or mask.max() > 1:
        raise ValueError(f"`{name}` values must be in [0, 1] (or uint8 / bool), got [{mask.min()}, {mask.max()}].")
    return mask


def psnr(mse: float) -> float:
    """Peak signal-to-noise ratio in dB for frames in [0, 1]: infinite for identical frames."""
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> float | None:
    """Mean of `[F, H, W]` values, weighted by `weights` (None: plain); None where the weights are all zero."""
    if weights is None:
        return values.mean(dtype=torch.float64).item()
    total = weights.sum(dtype=torch.float64)
    return None if total == 0 else ((values * weights).sum(dtype=torch.float64) / total).item()


def gaussian_blur(x: torch.Tensor, radius: int = None, sigma: float = None) -> torch.Tensor:
    """A Gaussian filter of images `[N, C, H, W]` (as OpenCV's GaussianBlur with reflected edges, `cba|abc`),
    separably in float32 with torch: no OpenCV needed for SSIM."""
    radius = SSIM_RADIUS if radius is None else radius
    sigma = SSIM_SIGMA if sigma is None else sigma
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(torch.float32)
    channels = x.shape[1]

    def reflect(t: torch.Tensor, dim: int) -> torch.Tensor:
        head = t.narrow(dim, 0, radius).flip(dim)
        tail = t.narrow(dim, t.shape[dim] - radius, radius).flip(dim)
        return torch.cat([head, t, tail], dim=dim)

    x = torch.nn.functional.conv2d(reflect(x, 2), kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)
    return torch.nn.functional.conv2d(reflect(x, 3), kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1),
                                      groups=channels)


def ssim_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM `[F, H, W]` (mean over the RGB channels) of two videos `[F, 3, H, W]` in [0, 1], frame by frame
    (a Gaussian filter with reflected edges, as OpenCV's)."""
    maps = []
    for x, y in zip(a.to(torch.float32), b.to(torch.float32)):
        x, y = x[None], y[None]
        mu_x, mu_y = gaussian_blur(x), gaussian_blur(y)
        var_x = gaussian_blur(x * x) - mu_x * mu_x
        var_y = gaussian_blur(y * y) - mu_y * mu_y
        cov = gaussian_blur(x * y) - mu_x * mu_y
        numerator = (2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)
        denominator = (mu_x * mu_x + mu_y * mu_y + SSIM_C1) * (var_x + var_y + SSIM_C2)
        maps.append((numerator / denominator)[0].mean(dim=0))
    return torch.stack(maps)


def _import_cv2():
    try:
        import cv2
    except ImportError as error:
        raise ImportError(
            f"Scoring an edit needs OpenCV ({error}): `pip install opencv-python-headless`."
        ) from None
    return cv2


def source_flows(source: torch.Tensor) -> list[np.ndarray]:
    """Backward optical flow of each frame pair of `source` `[F, 3, H, W]`: flows[t] `[H, W, 2]` maps each pixel of
    frame t + 1 to where it was in frame t (OpenCV's DIS, medium preset, on the grey frames)."""
    cv2 = _import_cv2()
    frames = (source.movedim(1, -1) * 255).round().to(torch.uint8).numpy()
    grey = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in frames]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return [dis.calc(grey[t + 1], grey[t], None) for t in range(len(grey) - 1)]


def warp_error(video: torch.Tensor, flows: list[np.ndarray]) -> float:
    """Mean absolute difference between each frame t + 1 of `video` and frame t warped along `flows[t]`."""
    cv2 = _import_cv2()
    frames = video.movedim(1, -1).contiguous().numpy().astype(np.float32)
    height, width = frames.shape[1:3]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    errors = []
    for t, flow in enumerate(flows):
        warped = cv2.remap(
            frames[t], grid_x + flow[..., 0], grid_y + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        errors.append(float(np.abs(frames[t + 1] - warped).astype(np.float64).mean()))
    return float(np.mean(errors))


def check_boundaries(boundaries, num_frames: int) -> list[int]:
    """Window boundaries as sorted video frame numbers b in [1, F - 1] (the change from frame b - 1 to b)."""
    boundaries = sorted({int(b) for b in boundaries})
    if not boundaries:
        raise ValueError(
            "`window_boundaries` is empty: pass the frames where windows meet (schedule.video_boundaries())."
        )
    if boundaries[0] < 1 or boundaries[-1] > num_frames - 1:
        raise ValueError(
            f"Window boundaries must be frames 1 to {num_frames - 1} of this {num_frames}-frame video (b: the change "
            f"from frame b - 1 to b), got {boundaries}."
        )
    return boundaries


def seam_ratio(video: torch.Tensor, boundaries, temporal_compression: int | None = None) -> float:
    """
    Mean frame-to-frame change (mean absolute difference) across `boundaries` over the mean change elsewhere.

    With `temporal_compression` (CogVideoX: 4), "elsewhere" is only the other latent-frame edges (changes into frames
    1, 5, 9, ...: every window boundary is one), so a VAE that changes more between its frame groups than inside them
    does not read as a seam.
    """
    num_frames = video.shape[0]
    boundaries = check_boundaries(boundaries, num_frames)
    changes = (video[1:] - video[:-1]).abs().mean(dim=(1, 2, 3), dtype=torch.float64)  # changes[b - 1]: b - 1 -> b
    candidates = range(1, num_frames)
    if temporal_compression is not None:
        candidates = [b for b in candidates if (b - 1) % temporal_compression == 0]
        off_grid = [b for b in boundaries if (b - 1) % temporal_compression]
        if off_grid:
            raise ValueError(
                f"Window boundaries {off_grid} are not latent-frame edges (1 + {temporal_compression}k): pass "
                "schedule.video_boundaries(), or leave `temporal_compression` unset."
            )
    inside = [b for b in candidates if b not in boundaries]
    if not inside:
        raise ValueError("Every frame change is a window boundary: nothing to compare the boundaries with.")
    across = changes[[b - 1 for b in boundaries]].mean()
    elsewhere = changes[[b - 1 for b in inside]].mean()
    if elsewhere == 0:
        return math.inf if across > 0 else 1.0
    return (across / elsewhere).item()


def evaluate_edit(
    edit,
    source,
    mask=None,
    window_boundaries=None,
    temporal_compression: int | None = None,
    flow: bool = True,
    resize_mode: str = "crop",
    **read_options,
) -> dict:
    """
    Score `edit` against `source` (each a file path, PIL frames, `[F, H, W, 3]` array or `[F, 3, H, W]` tensor).

    A source file of another size than the edit is read at the edit's size with `resize_mode`, as the edit command
    fitted it; `read_options` (`skip_frames_start`, `frame_stride`, `max_num_frames`, ...) select the source's (and a
    mask file's) frames as the edit selected them. `mask` (white = may change; `[F, H, W]` or a mask video) adds the
    scores inside and outside it. `window_boundaries` (video frames, e.g. `schedule.video_boundaries()`) adds the seam
    ratios (see `seam_ratio`, with `temporal_compression`). `flow=False` skips the flow-warp error (and OpenCV).

    Returns a dict of floats (PSNR in dB, infinite for identical frames; None for an empty mask region).
    """
    edit = load_frames(edit, "edit")
    height, width = edit.shape[-2:]
    if isinstance(source, (str, os.PathLike)):
        source = load_frames(source, "source", height=height, width=width, resize_mode=resize_mode, **read_options)
    else:
        source = load_frames(source, "source")
    if source.shape != edit.shape:
        raise ValueError(
            f"The edit is {edit.shape[0]} frames of {width}x{height} and the source {source.shape[0]} frames of "
            f"{source.shape[-1]}x{source.shape[-2]}: pass the source frames the edit was made from (same frame "
            "selection and size; for a source file, its frame selection as `read_options`)."
        )
    if mask is not None:
        if isinstance(mask, (str, os.PathLike)):
            mask = load_mask(mask, height=height, width=width, resize_mode=resize_mode, **read_options)
        else:
            mask = load_mask(mask)
        if tuple(mask.shape) != (edit.shape[0], height, width):
            raise ValueError(
                f"The mask is {tuple(mask.shape)} (frames, height, width) but the videos are "
                f"{(edit.shape[0], height, width)}: pass the mask of these frames at this size."
            )

    squared = (edit - source).pow(2).mean(dim=1)
    similarity = ssim_map(edit, source)
    scores = {"frames": edit.shape[0], "height": height, "width": width}
    regions = {"": None} if mask is None else {"": None, "_inside": mask, "_outside": 1 - mask}
    for suffix, weights in regions.items():
        mse = _weighted_mean(squared, weights)
        scores[f"psnr{suffix}"] = None if mse is None else psnr(mse)
        scores[f"ssim{suffix}"] = _weighted_mean(similarity, weights)
    if flow:
        flows = source_flows(source)
        scores["warp_error"] = warp_error(edit, flows)
        scores["source_warp_error"] = warp_error(source, flows)
        scores["warp_error_ratio"] = (
            scores["warp_error"] / scores["source_warp_error"] if scores["source_warp_error"] > 0 else None
        )
    if window_boundaries is not None:
        scores["window_boundaries"] = check_boundaries(window_boundaries, edit.shape[0])
        scores["seam_ratio"] = seam_ratio(edit, window_boundaries, temporal_compression)
        scores["source_seam_ratio"] = seam_ratio(source, window_boundaries, temporal_compression)
        source_ratio = scores["source_seam_ratio"]
        scores["seam_ratio_normalised"] = scores["seam_ratio"] / source_ratio if source_ratio > 0 else None
    return scores
