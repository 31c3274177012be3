"""Temporal co-denoising over overlapping windows: clips longer than the model's native length, as one function.

CogVideoX is trained on one window of latent frames (13 for 49 video frames; 21 for CogVideoX 1.5's 81) and collapses
at longer lengths. A long clip's latents are therefore split into overlapping windows of the native length, the model
runs on every window (each with its own positions from 0), and each latent frame's prediction is the weighted average
of the predictions of the windows that hold it. This is MultiDiffusion (Bar-Tal et al., 2023) along time, as in
Gen-L-Video (Wang et al., 2023) and FreeNoise (Qiu et al., 2024; diffusers' `FreeNoiseMixin` for AnimateDiff, whose
"flat" and "pyramid" weightings are the ones here).

The window schedule is fixed by the clip's length, so the combined prediction is one deterministic function of the
whole latent. It is a drop-in for "predict(latents, t) -> model output" on the whole clip: DDIM inversion, its
fixed-point refinement (exact round trips) and reference-guided regeneration use it unchanged. Memory is bounded by
the window, not the clip: the model sees `window_batch_size` windows per call.

Windows: W latent frames each, overlapping by O, start at 0, W - O, 2 (W - O), ... and the last one is shifted back to
end at the last frame, so a clip of F latent frames takes ceil((F - O) / (W - O)) windows.
"""

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .cogvideox_ddim_checkpoint import is_image_to_video, latent_frame_count, padding_frames, pixel_frame_count
# The weightings, and the one `invert()` and `__call__` use when none is given (`window_weighting`): one constant in
# the torch-free choices module, so that a measured choice (docs/long_videos.md, seams) is a one-line change. Saved
# inversions record theirs, so changing it keeps them.
from .cogvideox_ddim_choices import DEFAULT_WINDOW_WEIGHTING
from .cogvideox_ddim_choices import WINDOW_WEIGHTINGS as WEIGHTING_SCHEMES
from .cogvideox_ddim_errors import ParameterError


def window_starts(latent_frames: int, window: int, overlap: int) -> list[int]:
    """First latent frame of each window: every `window - overlap` frames, the last window ending at the last frame.

    A clip no longer than one window is one window (starting at 0).
    """
    for name, value in (("latent_frames", latent_frames), ("window", window), ("overlap", overlap)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"`{name}` must be an int, got {value!r}.")
    if latent_frames < 1 or window < 1:
        raise ValueError(f"`latent_frames` and `window` must be positive, got {latent_frames} and {window}.")
    if not 0 <= overlap < window:
        raise ValueError(
            f"A window overlap of {overlap} latent frames does not fit windows of {window}: pass an overlap from 0 "
            f"to {window - 1}."
        )
    if latent_frames <= window:
        return [0]
    count = math.ceil((latent_frames - overlap) / (window - overlap))
    return [i * (window - overlap) for i in range(count - 1)] + [latent_frames - window]


def check_window_weighting(window_weighting: str | None, name: str = "window_weighting"):
    """Refuse a weighting that is not one of `WEIGHTING_SCHEMES` (None: the default, `DEFAULT_WINDOW_WEIGHTING`)."""
    if window_weighting is not None and window_weighting not in WEIGHTING_SCHEMES:
        raise ValueError(
            f"Unknown `{name}={window_weighting!r}`: choose one of {', '.join(map(repr, WEIGHTING_SCHEMES))} (how "
            f"the predictions of overlapping windows are averaged; default {DEFAULT_WINDOW_WEIGHTING!r})."
        )


def window_weights(window: int, scheme: str = DEFAULT_WINDOW_WEIGHTING) -> torch.Tensor:
    """Per-frame weights (float64, strictly positive) of one window of `window` latent frames.

    "flat": all 1, a plain average where windows overlap. "pyramid" (diffusers' FreeNoise): 1, 2, ... up to the
    middle and back down, so in an overlap the window whose middle is nearer weighs more (a linear cross-fade).
    "hann": a raised cosine, sin^2(pi (i + 1) / (window + 1)), falling off smoothly towards both edges.
    Only the ratios between windows matter: `WindowSchedule.frame_weights` normalises them per frame.
    """
    if scheme not in WEIGHTING_SCHEMES:
        raise ValueError(f"Unknown window weighting {scheme!r}: choose one of {', '.join(WEIGHTING_SCHEMES)}.")
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"`window` must be a positive int, got {window!r}.")
    position = torch.arange(window, dtype=torch.float64)
    if scheme == "flat":
        return torch.ones(window, dtype=torch.float64)
    if scheme == "pyramid":
        # 4 -> [1, 2, 2, 1], 5 -> [1, 2, 3, 2, 1], as diffusers' FreeNoiseMixin._get_pyramid_weights
        return torch.minimum(position + 1, window - position)
    return torch.sin(math.pi * (position + 1) / (window + 1)) ** 2


def default_window_overlap(window: int, temporal_compression: int = 4) -> int:
    """The default overlap in VIDEO frames: a quarter of the window's video frames, rounded to a multiple of the VAE's
    temporal compression (12 for 49-frame windows, 20 for 81), and less than the window."""
    video_frames = (window - 1) * temporal_compression + 1
    overlap = round(video_frames / 4 / temporal_compression) * temporal_compression
    return min(overlap, (window - 1) * temporal_compression)


def overlap_latent_frames(window_overlap: int | None, window: int, temporal_compression: int = 4) -> int:
    """Latent frames of an overlap of `window_overlap` VIDEO frames (None: `default_window_overlap`) between windows of
    `window` latent frames. Every latent frame after the first holds `temporal_compression` video frames, so the
    overlap must be a multiple of it."""
    if window_overlap is None:
        window_overlap = default_window_overlap(window, temporal_compression)
    if not isinstance(window_overlap, int) or isinstance(window_overlap, bool):
        raise TypeError(f"`window_overlap` must be an int (video frames), got {window_overlap!r}.")
    if window_overlap < 0 or window_overlap % temporal_compression:
        lower = max(window_overlap // temporal_compression, 0) * temporal_compression
        raise ParameterError(
            "window_overlap",
            f"{{window_overlap}} {window_overlap} video frames is not a non-negative multiple of the VAE's temporal "
            f"compression {temporal_compression} (one latent frame): pass {lower} or {lower + temporal_compression}.",
        )
    overlap = window_overlap // temporal_compression
    if overlap >= window:
        window_video = (window - 1) * temporal_compression + 1
        raise ParameterError(
            "window_overlap",
            f"{{window_overlap}} {window_overlap} video frames leaves windows of {window_video} frames nothing new: "
            f"pass at most {(window - 1) * temporal_compression} (the default is "
            f"{default_window_overlap(window, temporal_compression)}).",
        )
    return overlap


@dataclass(frozen=True)
class WindowSchedule:
    """Which latent frames each window holds, and how their predictions are weighted. Saved with an inversion
    (`to_dict`/`from_dict`) so that regeneration runs the same windows over the trajectory."""

    latent_frames: int
    window: int
    overlap: int
    starts: tuple[int, ...]
    scheme: str = DEFAULT_WINDOW_WEIGHTING  # the window weighting (`window_weighting`): one of WEIGHTING_SCHEMES

    def __post_init__(self):
        object.__setattr__(self, "starts", tuple(self.starts))
        if self.window > self.latent_frames:
            raise ValueError(
                f"Windows of {self.window} latent frames do not fit a clip of {self.latent_frames}: use one window of "
                f"the clip's length ({self.latent_frames})."
            )
        expected = window_starts(self.latent_frames, self.window, self.overlap)
        if list(self.starts) != expected:
            raise ValueError(
                f"Window starts {list(self.starts)} are not the schedule of {self.latent_frames} latent frames in "
                f"windows of {self.window} overlapping by {self.overlap} ({expected}): build it with "
                "`WindowSchedule.for_clip`."
            )
        window_weights(self.window, self.scheme)  # checks the scheme

    @classmethod
    def for_clip(
        cls,
        latent_frames: int,
        window: int,
        window_overlap: int | None = None,
        scheme: str = DEFAULT_WINDOW_WEIGHTING,
        temporal_compression: int = 4,
    ) -> "WindowSchedule":
        """The schedule of a clip of `latent_frames` in windows of (at most) `window` latent frames overlapping by
        `window_overlap` VIDEO frames (None: a quarter of the window, see `default_window_overlap`)."""
        overlap = overlap_latent_frames(window_overlap, window, temporal_compression)
        window = min(window, latent_frames)
        overlap = min(overlap, window - 1)
        return cls(latent_frames, window, overlap, window_starts(latent_frames, window, overlap), scheme)

    @property
    def num_windows(self) -> int:
        return len(self.starts)

    def model_calls(self, window_batch_size: int = 1) -> int:
        """Model calls of one prediction on the whole clip (`windowed`): `window_batch_size` windows per call."""
        return math.ceil(self.num_windows / window_batch_size)

    def window_slice(self, index: int) -> slice:
        """The latent frames of window `index`."""
        return slice(self.starts[index], self.starts[index] + self.window)

    def frame_weights(self) -> torch.Tensor:
        """`[num_windows, window]` float64 weights, normalised so that each latent frame's weights over the windows
        holding it sum to 1 (exactly 1.0 for a frame only one window holds)."""
        raw = window_weights(self.window, self.scheme)
        total = torch.zeros(self.latent_frames, dtype=torch.float64)
        for start in self.starts:
            total[start : start + self.window] += raw
        return torch.stack([raw / total[start : start + self.window] for start in self.starts])

    def latent_boundaries(self) -> list[int]:
        """Latent frames L where a window starts or ends (between frames L - 1 and L): where seams could show."""
        edges = {start for start in self.starts} | {start + self.window for start in self.starts}
        return sorted(edge for edge in edges if 0 < edge < self.latent_frames)

    def video_boundaries(self, temporal_compression: int = 4) -> list[int]:
        """`latent_boundaries` in video frames: b where the change from frame b - 1 to frame b crosses a window edge
        (latent frame L >= 1 decodes to video frames (L - 1) * tc + 1 ... L * tc)."""
        return [(edge - 1) * temporal_compression + 1 for edge in self.latent_boundaries()]

    def check_frames(self, latent_frames: int, name: str = "latents"):
        """Refuse latents of another length than the schedule's."""
        if latent_frames != self.latent_frames:
            raise ValueError(
                f"`{name}` has {latent_frames} latent frames but the window schedule is for {self.latent_frames}: "
                "pass latents of the inverted clip's length, or invert this clip again."
            )

    def to_dict(self) -> dict:
        return {
            "latent_frames": self.latent_frames,
            "window": self.window,
            "overlap": self.overlap,
            "starts": list(self.starts),
            "scheme": self.scheme,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "WindowSchedule":
        fields = ("latent_frames", "window", "overlap", "starts", "scheme")
        missing = [field for field in fields if field not in data]
        if missing:
            raise ValueError(f"A saved window schedule lacks {missing}: save the inversion again with this version.")
        return cls(**{field: data[field] for field in fields})


def windowed(
    predict_window: Callable[..., torch.Tensor],
    schedule: WindowSchedule,
    window_batch_size: int = 1,
    on_window_call: Callable[[tuple[int, ...]], None] | None = None,
) -> Callable[..., torch.Tensor]:
    """
    Turn a model call on windows into `predict(latents, *args, **kwargs)` on the whole clip.

    `predict(latents, ...)` takes `[B, F, C, H, W]` latents of the schedule's F latent frames and calls
    `predict_window(window_latents, window_indices, ...)` on batches of at most `window_batch_size` windows:
    `window_latents` is `[k * B, window, C, H, W]`, window-major (window_indices[0]'s B rows, then the next window's),
    and `window_indices` the k windows' indices into `schedule.starts` (for what else is per window: reference rows,
    conditioning frames, masks). `predict_window` returns `[k * B, window, ...]` in the same order. Each frame's result
    is the weighted average of its windows' predictions (`schedule.frame_weights`), accumulated in at least float32
    and returned in the prediction's dtype; a frame only one window holds gets that window's prediction bit for bit,
    and a one-window schedule calls `predict_window(latents, (0,), ...)` and returns its result unchanged.
    `on_window_call(window_indices)` runs after every model call (progress: `WindowProgress.window_call`).
    """
    if not isinstance(window_batch_size, int) or isinstance(window_batch_size, bool) or window_batch_size < 1:
        raise ValueError(
            f"`window_batch_size` must be a positive int (windows per model call; 1 uses the least memory), got "
            f"{window_batch_size!r}."
        )
    weights = schedule.frame_weights()

    def predict(latents: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        schedule.check_frames(latents.shape[1])
        if schedule.num_windows == 1:
            prediction = predict_window(latents, (0,), *args, **kwargs)
            if on_window_call is not None:
                on_window_call((0,))
            return prediction
        batch = latents.shape[0]
        combined = None
        for first in range(0, schedule.num_windows, window_batch_size):
            indices = tuple(range(first, min(first + window_batch_size, schedule.num_windows)))
            window_latents = torch.cat([latents[:, schedule.window_slice(i)] for i in indices])
            prediction = predict_window(window_latents, indices, *args, **kwargs)
            if on_window_call is not None:
                on_window_call(indices)
            if tuple(prediction.shape[:2]) != (len(indices) * batch, schedule.window):
                raise ValueError(
                    f"`predict_window` returned shape {tuple(prediction.shape)} for {len(indices)} windows of "
                    f"{batch} rows and {schedule.window} frames: it must return [windows * rows, frames, ...]."
                )
            if combined is None:
                dtype = torch.promote_types(prediction.dtype, torch.float32)
                combined = prediction.new_zeros((batch, schedule.latent_frames, *prediction.shape[2:]), dtype=dtype)
            for k, i in enumerate(indices):
                weight = weights[i].to(combined.device, combined.dtype).view(1, -1, *[1] * (prediction.ndim - 2))
                combined[:, schedule.window_slice(i)] += prediction[k * batch : (k + 1) * batch] * weight
        return combined.to(prediction.dtype)

    predict.schedule = schedule
    predict.window_batch_size = window_batch_size
    return predict


def split_windows(
    tensor: torch.Tensor, schedule: WindowSchedule, indices: Sequence[int], dim: int = 1
) -> torch.Tensor:
    """The frames of windows `indices` of a per-frame tensor (reference latents, masks), stacked window-major on the
    batch axis as `windowed` stacks the latents: what a `predict_window` takes of other inputs for its windows."""
    return torch.cat([tensor.narrow(dim, schedule.starts[i], schedule.window) for i in indices])


def check_window_options(windows, native_latent_frames: int, temporal_compression: int = 4):
    """Refuse a bad `window_overlap` (video frames), `window_batch_size` or `window_weighting` (`windows`:
    `WindowOptions`), before any model work."""
    check_window_weighting(windows.weighting)
    overlap_latent_frames(windows.overlap, native_latent_frames, temporal_compression)
    if not isinstance(windows.batch_size, int) or isinstance(windows.batch_size, bool) or windows.batch_size < 1:
        raise ValueError(
            f"`window_batch_size` must be a positive int (windows per model call; 1 uses the least memory), got "
            f"{windows.batch_size!r}."
        )


def clip_windows(
    latent_frames: int,
    native_latent_frames: int,
    window_overlap: int | None = None,
    temporal_compression: int = 4,
    image_to_video: bool = False,
    scheme: str = DEFAULT_WINDOW_WEIGHTING,
) -> WindowSchedule:
    """The windows of a clip of `latent_frames` on a model trained on `native_latent_frames`: one window (the whole
    clip, which runs exactly as without windows) when the clip fits, else overlapping native windows.

    Image-to-video checkpoints are refused long clips: every window would need its own conditioning frame, and
    whichever frame is chosen for a later window (the source's, for the reference rows; none, or the edit's, for the
    sample rows) conditions the sample on something the first window does not, which is not designed or measured yet.
    """
    schedule = WindowSchedule.for_clip(
        latent_frames, native_latent_frames, window_overlap, scheme, temporal_compression
    )
    if image_to_video and schedule.num_windows > 1:
        native = (native_latent_frames - 1) * temporal_compression + 1
        frames = (latent_frames - 1) * temporal_compression + 1
        raise ParameterError(
            "num_frames",
            f"A clip of {frames} frames is longer than this image-to-video checkpoint's {native}: long clips run in "
            "overlapping windows, which image-to-video checkpoints do not support (each window would need its own "
            f"conditioning frame). Pass {{num_frames}} at most {native} frames, or use the text-to-video checkpoint "
            "of the family.",
        )
    return schedule


def window_rows(tensor: torch.Tensor, count: int, branches: int = 1) -> torch.Tensor:
    """Per-row inputs (text embeddings) for `count` windows stacked as `windowed` stacks their latents: within each of
    `branches` guidance branches ([uncond ; cond]), the branch's rows once per window, window-major. One window: the
    tensor itself."""
    if count == 1:
        return tensor
    return torch.cat([chunk.repeat(count, *[1] * (tensor.ndim - 1)) for chunk in tensor.chunk(branches)])


def native_latent_frames(transformer_config, temporal_compression: int = 4) -> int:
    """The latent frames the transformer (`transformer_config`) was trained on (`sample_frames`: 13 for 49 frames;
    21 for 1.5's 81)."""
    return latent_frame_count(transformer_config["sample_frames"], temporal_compression)


def pipeline_windows(
    transformer_config, latent_frames: int, windows, *, temporal_compression: int, mask_words=None
) -> WindowSchedule:
    """The windows `invert()`/`__call__` run a clip of `latent_frames` in on the checkpoint of `transformer_config`
    (`clip_windows`), with `windows` (`WindowOptions`, checked by `check_inputs`: `check_window_options`) weighted by
    its `weighting` (None: `DEFAULT_WINDOW_WEIGHTING`). Built once per call."""
    native = native_latent_frames(transformer_config, temporal_compression)
    schedule = clip_windows(
        latent_frames, native, window_overlap=windows.overlap, temporal_compression=temporal_compression,
        image_to_video=is_image_to_video(transformer_config), scheme=windows.weighting or DEFAULT_WINDOW_WEIGHTING,
    )
    if mask_words is not None and schedule.num_windows > 1:
        raise ParameterError(
            "mask_words",
            "{mask_words} records the attention of one window: for a clip longer than the native "
            f"{pixel_frame_count(native, temporal_compression)} frames, pass a {{mask}} (e.g. a mask video) to the "
            "edit instead.",
        )
    return schedule


def call_windows(transformer_config, num_frames: int, windows, *, temporal_compression: int) -> WindowSchedule:
    """`__call__`'s windows for `num_frames` video frames, checked before any model work (`windows`: `WindowOptions`):
    the reference trajectory's recorded ones (`inv.windows`, a `WindowSchedule` or its dict) when given, else those of
    `window_overlap` and `window_weighting`. A `window_overlap` or `window_weighting` that gives other windows than
    the reference's is refused: the edit must predict with the function the trajectory was inverted with, or the
    round trip is lost."""
    latent_frames = latent_frame_count(num_frames, temporal_compression)
    schedule = pipeline_windows(transformer_config, latent_frames, windows, temporal_compression=temporal_compression)
    reference_windows = windows.reference_windows
    if reference_windows is None:
        return schedule
    if isinstance(reference_windows, dict):
        reference_windows = WindowSchedule.from_dict(reference_windows)
    reference_windows.check_frames(latent_frames, "the video (`num_frames`)")
    if windows.overlap is not None and schedule.starts != reference_windows.starts:
        raise ParameterError(
            "window_overlap",
            f"{{window_overlap}} {windows.overlap} gives windows starting at latent frames {list(schedule.starts)}, "
            f"but the reference was inverted in windows starting at {list(reference_windows.starts)}: leave "
            "{window_overlap} unset to use the reference's windows, or invert again with it.",
        )
    if windows.weighting is not None and windows.weighting != reference_windows.scheme:
        raise ValueError(
            f"`window_weighting={windows.weighting!r}`, but the reference was inverted with windows weighted "
            f"{reference_windows.scheme!r}: leave `window_weighting` unset to use the reference's, or invert again "
            "with it (the edit must combine the windows as the inversion did for the round trip to stay exact)."
        )
    return reference_windows


def long_clip_frames(
    transformer_config, num_frames: int | None, *, temporal_compression: int, latents=None, reference_windows=None
) -> int | None:
    """`__call__`'s `num_frames` when it is not given but a long clip's length is: that of `reference_windows` (a
    `WindowSchedule` or its dict), or of start `latents` `[B, F, C, H, W]` longer than one native window (with 1.5's
    padding frames, which diffusers' own start latents hold). Otherwise `num_frames` as given."""
    if num_frames is not None:
        return num_frames
    if reference_windows is not None:
        latent_frames = dict(reference_windows)["latent_frames"] if isinstance(reference_windows, dict) else (
            reference_windows.latent_frames
        )
        return pixel_frame_count(latent_frames, temporal_compression)
    native = native_latent_frames(transformer_config, temporal_compression)
    longest = native + padding_frames(transformer_config, native)
    if isinstance(latents, torch.Tensor) and latents.ndim == 5 and latents.shape[1] > longest:
        return pixel_frame_count(latents.shape[1], temporal_compression)
    return None


def sample_windows(
    transformer_config, schedule: WindowSchedule, *, latent_count: int, padding: int
) -> tuple[WindowSchedule, int]:
    """`__call__`'s windows and per-window padding once its start latents (`latent_count` frames) are made: one window
    is the whole clip as laid out (diffusers' fresh 1.5 noise holds its padding frames; `padding` as made), several
    windows are each padded as a native clip."""
    if schedule.num_windows == 1:
        return WindowSchedule.for_clip(latent_count, latent_count), padding
    return schedule, padding_frames(transformer_config, schedule.window)


class WindowProgress:
    """Counts a progress bar in window model calls for a long clip: `total(steps)` is steps x model calls per step
    (`WindowSchedule.model_calls`), `window_call` (`windowed`'s `on_window_call`) advances it by one, and `end_step`
    brings it to the step's end. A step that makes more calls than its share (the inversion's fixed-point refinement:
    a variable number of evaluations) holds at its end until `end_step`, so the bar never runs ahead of the steps and
    its total stays honest. For one window the bar counts steps, as without windows.
    """

    def __init__(self, schedule: WindowSchedule, window_batch_size: int = 1):
        self.windows = schedule.num_windows
        self.calls_per_step = schedule.model_calls(window_batch_size) if self.windows > 1 else 1
        self.bar, self.count, self.steps_done = None, 0, 0

    def total(self, steps: int) -> int:
        return steps * self.calls_per_step

    def start(self, bar, action: str):
        """Follow `bar` (a tqdm), naming the windows in its description (e.g. "Inverting 6 windows") unless it has
        one (`pipe.set_progress_bar_config(desc=...)`)."""
        self.bar, self.count, self.steps_done = bar, 0, 0
        if self.windows > 1 and not getattr(bar, "desc", ""):
            bar.set_description(f"{action} {self.windows} windows")

    @contextlib.contextmanager
    def bar_of(self, pipe, steps: int, action: str):
        """`pipe.progress_bar` for `steps` steps, counted in window calls and followed (`start`)."""
        with pipe.progress_bar(total=self.total(steps)) as bar:
            self.start(bar, action)
            yield bar

    def window_call(self, window_indices=None):
        step_end = (self.steps_done + 1) * self.calls_per_step
        if self.bar is not None and self.windows > 1 and self.count < step_end:
            self.bar.update(1)
            self.count += 1

    def end_step(self):
        self.steps_done += 1
        step_end = self.steps_done * self.calls_per_step
        if self.bar is not None:
            self.bar.update(step_end - self.count)
        self.count = step_end
