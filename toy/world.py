"""A toy video world with exact ground truth: one coloured shape moving in a straight line over a plain background.

Clips are generated from a seed, captioned from a fixed grammar ("a red circle moving left on a black background"),
and carry the ground truth of every frame (shape mask, centroid, colour). The detectors below read a frame the way the
ground truth was written (no learned classifier), so generated videos can be scored exactly: which colour the shape
has, where its centroid is in every frame, and which way it moves.

Some (shape, colour, direction, background) combinations are held out of training (`HELD_OUT`), so a model trained on
`TRAIN_COMBOS` can be scored on captions it never saw.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

import numpy as np


HEIGHT, WIDTH, NUM_FRAMES = 64, 64, 9  # 9 frames = 3 latent frames (odd, see the VAE decode quirk)

SHAPES = ("circle", "square", "triangle")
# Saturated colours far from each other and from every background, so nearest-palette reads are unambiguous.
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (40, 70, 230),
    "yellow": (235, 215, 40),
}
BACKGROUNDS = {
    "black": (10, 10, 10),
    "gray": (128, 128, 128),
    "white": (240, 240, 240),
}
# (dx, dy) in image coordinates: y grows downwards.
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}

ALL_COMBOS = tuple(itertools.product(SHAPES, COLOURS, DIRECTIONS, BACKGROUNDS))


def _is_held_out(combo: tuple[str, str, str, str]) -> bool:
    # A modular rule holds out ~1/5 of the combinations while every pair of attribute values still occurs in
    # training, so held-out captions test composition of seen words rather than unseen words.
    shape, colour, direction, background = combo
    index_sum = (SHAPES.index(shape) + list(COLOURS).index(colour) + list(DIRECTIONS).index(direction)
                 + list(BACKGROUNDS).index(background))
    return index_sum % 5 == 0


HELD_OUT = tuple(combo for combo in ALL_COMBOS if _is_held_out(combo))
TRAIN_COMBOS = tuple(combo for combo in ALL_COMBOS if not _is_held_out(combo))

# Every word the caption grammar can produce (the toy tokenizer's vocabulary).
GRAMMAR_WORDS = ("a", "moving", "on", "background", *SHAPES, *COLOURS, *DIRECTIONS,
                 *[name for name in BACKGROUNDS if name not in COLOURS])


def caption(shape: str, colour: str, direction: str, background: str) -> str:
    return f"a {colour} {shape} moving {direction} on a {background} background"


def parse_caption(text: str) -> tuple[str, str, str, str]:
    """Inverse of `caption`: (shape, colour, direction, background)."""
    words = text.split()
    if len(words) != 9 or words[0] != "a" or words[3] != "moving" or words[5:7] != ["on", "a"]:
        raise ValueError(f"Not a toy-world caption: {text!r}")
    return words[2], words[1], words[4], words[7]


@dataclass
class Clip:
    """A generated clip and its exact ground truth."""

    frames: np.ndarray  # uint8 [F, H, W, 3]
    masks: np.ndarray  # bool [F, H, W], the shape's pixels
    centroids: np.ndarray  # float [F, 2], (x, y) mean of the mask's pixel coordinates
    shape: str
    colour: str
    direction: str
    background: str
    centers: np.ndarray = field(repr=False, default=None)  # float [F, 2], the drawing centre (x, y)
    size: float = 0.0  # half-size of the shape in pixels

    @property
    def caption(self) -> str:
        return caption(self.shape, self.colour, self.direction, self.background)

    @property
    def combo(self) -> tuple[str, str, str, str]:
        return (self.shape, self.colour, self.direction, self.background)


def shape_mask(shape: str, center_x: float, center_y: float, size: float, height: int = HEIGHT,
               width: int = WIDTH) -> np.ndarray:
    """Binary mask of `shape` centred at (center_x, center_y) with half-size `size`, tested at pixel centres."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    dx, dy = cols - center_x, rows - center_y
    if shape == "circle":
        return dx**2 + dy**2 <= size**2
    if shape == "square":
        half = size * 0.85  # same area scale as the circle, roughly
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    if shape == "triangle":
        # Upward-pointing isosceles triangle: apex at (0, -size), base at y = +size from -size to +size.
        inside_y = (dy >= -size) & (dy <= size)
        half_width_at_y = (dy + size) / 2.0  # 0 at the apex, `size` at the base
        return inside_y & (np.abs(dx) <= half_width_at_y)
    raise ValueError(f"Unknown shape {shape!r}; choose one of {SHAPES}.")


def render_clip(shape: str, colour: str, direction: str, background: str, start: tuple[float, float], speed: float,
                size: float, num_frames: int = NUM_FRAMES, height: int = HEIGHT, width: int = WIDTH) -> Clip:
    """Draw the clip of a shape starting at `start` (x, y) moving `speed` pixels per frame in `direction`."""
    dx, dy = DIRECTIONS[direction]
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    masks = np.empty((num_frames, height, width), dtype=bool)
    centers = np.empty((num_frames, 2))
    centroids = np.empty((num_frames, 2))
    rows, cols = np.mgrid[0:height, 0:width]
    for index in range(num_frames):
        cx, cy = start[0] + dx * speed * index, start[1] + dy * speed * index
        mask = shape_mask(shape, cx, cy, size, height, width)
        frame = np.empty((height, width, 3), dtype=np.uint8)
        frame[:] = BACKGROUNDS[background]
        frame[mask] = COLOURS[colour]
        frames[index], masks[index], centers[index] = frame, mask, (cx, cy)
        centroids[index] = (cols[mask].mean(), rows[mask].mean())
    return Clip(frames=frames, masks=masks, centroids=centroids, shape=shape, colour=colour, direction=direction,
                background=background, centers=centers, size=size)


def random_clip(rng: np.random.Generator, combo: tuple[str, str, str, str] | None = None,
                combos: tuple = TRAIN_COMBOS, num_frames: int = NUM_FRAMES, height: int = HEIGHT,
                width: int = WIDTH) -> Clip:
    """A clip of `combo` (or of a combination drawn from `combos`) with random size, speed and start position."""
    if combo is None:
        combo = combos[rng.integers(len(combos))]
    shape, colour, direction, background = combo
    size = float(rng.uniform(8.0, 11.0))
    speed = float(rng.uniform(2.5, 3.5))
    travel = speed * (num_frames - 1)
    margin = size + 2.0
    dx, dy = DIRECTIONS[direction]
    # Along the motion axis, start so the whole path stays inside the frame; across it, anywhere inside.
    along_x = (margin + travel, width - margin) if dx < 0 else (margin, width - margin - travel)
    along_y = (margin + travel, height - margin) if dy < 0 else (margin, height - margin - travel)
    start_x = rng.uniform(*along_x) if dx else rng.uniform(margin, width - margin)
    start_y = rng.uniform(*along_y) if dy else rng.uniform(margin, height - margin)
    return render_clip(shape, colour, direction, background, (float(start_x), float(start_y)), speed, size,
                       num_frames, height, width)


def make_clips(count: int, seed: int, split: str = "train", **kwargs) -> list[Clip]:
    """`count` clips from `seed`, cycling through the split's combinations (shuffled) so all are covered evenly."""
    combos = {"train": TRAIN_COMBOS, "held_out": HELD_OUT, "all": ALL_COMBOS}[split]
    rng = np.random.default_rng(seed)
    order = []
    while len(order) < count:
        order.extend(rng.permutation(len(combos)).tolist())
    return [random_clip(rng, combos[order[index]], **kwargs) for index in range(count)]


def recolour(clip: Clip, colour: str) -> Clip:
    """The same clip with the shape painted `colour`: the exact answer of a colour edit (same masks and motion)."""
    if colour not in COLOURS:
        raise ValueError(f"Unknown colour {colour!r}; choose one of {tuple(COLOURS)}.")
    frames = clip.frames.copy()
    frames[clip.masks] = COLOURS[colour]
    return replace(clip, frames=frames, colour=colour)


# ----------------------------------------------------------------------------------------------------- detectors


def to_uint8(frames) -> np.ndarray:
    """Pipeline `output_type="np"` frames (floats in [0, 1]) -> the uint8 frames the detectors read."""
    return np.clip(np.asarray(frames) * 255.0, 0, 255).round().astype(np.uint8)


def _nearest(rgb: np.ndarray, palette: dict) -> str:
    names = list(palette)
    distances = [np.linalg.norm(np.asarray(palette[name], dtype=np.float64) - rgb) for name in names]
    return names[int(np.argmin(distances))]


def detect_background(frames: np.ndarray) -> tuple[str, np.ndarray]:
    """(nearest background name, measured colour): the median of the 2-pixel border of every frame."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    border = np.concatenate([frames[:, :2].reshape(-1, 3), frames[:, -2:].reshape(-1, 3),
                             frames[:, :, :2].reshape(-1, 3), frames[:, :, -2:].reshape(-1, 3)])
    rgb = np.median(border.astype(np.float64), axis=0)
    return _nearest(rgb, BACKGROUNDS), rgb


def foreground_masks(frames: np.ndarray, background_rgb=None, threshold: float = 60.0) -> np.ndarray:
    """bool [F, H, W]: pixels farther than `threshold` (RGB distance, 0-255 scale) from the background colour."""
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim == 3:
        frames = frames[None]
    if background_rgb is None:
        background_rgb = detect_background(frames)[1]
    return np.linalg.norm(frames - np.asarray(background_rgb, dtype=np.float64), axis=-1) > threshold


def detect_centroids(frames: np.ndarray, background_rgb=None, threshold: float = 60.0) -> np.ndarray:
    """float [F, 2]: (x, y) centroid of the foreground of each frame; NaN where a frame has no foreground."""
    masks = foreground_masks(frames, background_rgb, threshold)
    rows, cols = np.mgrid[0 : masks.shape[1], 0 : masks.shape[2]]
    centroids = np.full((masks.shape[0], 2), np.nan)
    for index, mask in enumerate(masks):
        if mask.any():
            centroids[index] = (cols[mask].mean(), rows[mask].mean())
    return centroids


def detect_colour(frames: np.ndarray, background_rgb=None, threshold: float = 60.0) -> tuple[str | None, np.ndarray]:
    """(nearest palette colour, measured colour) of the shape: the per-channel median of the foreground pixels of
    all frames. (None, NaN) when no pixel differs from the background."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    masks = foreground_masks(frames, background_rgb, threshold)
    if not masks.any():
        return None, np.full(3, np.nan)
    rgb = np.median(frames[masks].astype(np.float64), axis=0)
    return _nearest(rgb, COLOURS), rgb


def detect_direction(centroids: np.ndarray, min_travel: float = 4.0) -> str | None:
    """Direction of the centroid track: the dominant axis of the least-squares velocity times the track's length.
    None when it travels less than `min_travel` pixels or has fewer than two valid frames."""
    centroids = np.asarray(centroids, dtype=np.float64)
    valid = ~np.isnan(centroids).any(axis=1)
    if valid.sum() < 2:
        return None
    times = np.arange(len(centroids))[valid]
    velocity = np.polyfit(times, centroids[valid], 1)[0]  # (vx, vy) per frame
    travel = velocity * (len(centroids) - 1)
    if np.abs(travel).max() < min_travel:
        return None
    if abs(travel[0]) >= abs(travel[1]):
        return "right" if travel[0] > 0 else "left"
    return "down" if travel[1] > 0 else "up"


def detect_shape(frames: np.ndarray, background_rgb=None, threshold: float = 60.0) -> str | None:
    """Shape from the median fill ratio of the foreground's bounding box (circle ~0.79, square 1, triangle ~0.5)."""
    masks = foreground_masks(frames, background_rgb, threshold)
    ratios = []
    for mask in masks:
        if mask.sum() < 10:
            continue
        rows, cols = np.nonzero(mask)
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        ratios.append(mask.sum() / box)
    if not ratios:
        return None
    ratio = float(np.median(ratios))
    return "triangle" if ratio < 0.65 else "circle" if ratio < 0.9 else "square"


def describe(frames: np.ndarray) -> dict:
    """Everything the detectors read from a clip: colour, background, shape, direction and per-frame centroids."""
    background, background_rgb = detect_background(frames)
    colour, colour_rgb = detect_colour(frames, background_rgb)
    centroids = detect_centroids(frames, background_rgb)
    return {"colour": colour, "colour_rgb": colour_rgb.tolist(), "background": background,
            "shape": detect_shape(frames, background_rgb), "direction": detect_direction(centroids),
            "centroids": centroids}


def centroid_error(centroids: np.ndarray, reference: np.ndarray) -> float:
    """Mean Euclidean distance (pixels) between two centroid tracks over frames where both exist; inf if none."""
    distances = np.linalg.norm(np.asarray(centroids) - np.asarray(reference), axis=1)
    distances = distances[~np.isnan(distances)]
    return float(distances.mean()) if len(distances) else float("inf")


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of uint8-range images, optionally only over `mask` (broadcast over channels)."""
    diff = (np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2
    if mask is not None:
        diff = diff[np.broadcast_to(np.asarray(mask)[..., None], diff.shape)]
    mse = float(diff.mean())
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean SSIM over frames and channels (11x11 Gaussian window, sigma 1.5, the standard constants); with `mask`
    (bool, the frames' shape without channels), only over the windows centred on its pixels."""
    import torch
    import torch.nn.functional as F

    def as_nchw(x):  # [..., H, W, C] -> [N*C, 1, H, W]
        x = torch.as_tensor(np.asarray(x, dtype=np.float64))
        x = x.reshape(-1, *x.shape[-3:]).permute(0, 3, 1, 2)
        return x.reshape(-1, 1, *x.shape[-2:])

    channels = np.asarray(a).shape[-1]
    a, b = as_nchw(a), as_nchw(b)
    taps = torch.exp(-(torch.arange(-5, 6, dtype=torch.float64) ** 2) / (2 * 1.5**2))
    taps = taps / taps.sum()
    window = (taps[:, None] * taps[None, :])[None, None]

    def blur(x):  # 'valid' region only, as the reference implementation
        return F.conv2d(x, window)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    if mask is None:
        return float(ssim_map.mean())
    centres = as_nchw(np.repeat(np.asarray(mask, dtype=bool)[..., None], channels, axis=-1)) > 0
    return float(ssim_map[centres[..., 5:-5, 5:-5]].mean())  # the centres of the 'valid' windows
