"""What a run does with a long clip: which frames it edits, in which windows, and the windows x steps of each stage.

The window schedule is made once per run, before any weights load, by `plan_windows` (the clip's header and packet
list with the run's own checks, and `cogvideox_ddim_windows.clip_windows`), which refuses what the windows cannot run.
Every entry point says what it made with these functions: the command line's `edit` and `invert` and each batch job
log `plan_line`; the app shows `length_text` under "Length", names its progress bar with `progress_description` and
says in its status line what ran (`WindowPlan.from_inversion`).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from ..cogvideox_ddim_checkpoint import is_image_to_video, latent_frame_count, pixel_frame_count
from ..cogvideox_ddim_errors import ParameterError, literal
from .settings import DEFAULT_WINDOW_WEIGHTING, EditSettings, SettingsError


@dataclass(frozen=True)
class WindowPlan:
    """What a run edits: `frames` video frames in `windows` windows of `window_frames` frames, neighbours sharing
    `overlap_frames` (one window: the clip as one, sharing nothing)."""

    frames: int
    windows: int
    window_frames: int
    overlap_frames: int
    weighting: str | None = None  # how overlapping windows' predictions are averaged (long clips)

    @classmethod
    def from_schedule(cls, schedule: dict, temporal_compression: int) -> "WindowPlan":
        """From a `WindowSchedule.to_dict()` (as an inversion records it)."""
        windows = len(schedule["starts"])
        return cls(pixel_frame_count(schedule["latent_frames"], temporal_compression), windows,
                   pixel_frame_count(schedule["window"], temporal_compression),
                   schedule["overlap"] * temporal_compression if windows > 1 else 0,
                   schedule["scheme"] if windows > 1 else None)

    @classmethod
    def from_inversion(cls, inversion: dict, temporal_compression: int) -> "WindowPlan":
        """What an inversion ran (its settings, as run.json and a saved inversion record them): its windows, or one
        of its frames."""
        if "windows" in inversion:
            return cls.from_schedule(inversion["windows"], temporal_compression)
        return cls(inversion["num_frames"], 1, inversion["num_frames"], 0)

    def in_windows(self) -> str:
        """" in 2 windows of 9 frames overlapping by 4 (pyramid weighting)"; empty for one window."""
        if self.windows == 1:
            return ""
        return (f" in {self.windows} windows of {self.window_frames} frames overlapping by {self.overlap_frames} "
                f"({self.weighting} weighting)")

    def windows_x_steps(self, steps: int, window_batch_size: int = 1) -> str:
        """"3 windows x 20 steps", and ", 2 per call" where calls batch some but not all windows."""
        per_call = f", {window_batch_size} per call" if 1 < window_batch_size < self.windows else ""
        return f"{self.windows} windows x {steps} steps{per_call}"


def temporal_compression(config: dict) -> int:
    """Video frames per latent frame after the first (`config` is `checkpoint_config()`'s)."""
    return config["vae"].get("temporal_compression_ratio", 4)


def plan_windows(settings: EditSettings, config: dict, frames: int | None = None) -> WindowPlan:
    """The windows a run of `settings` edits `frames` video frames in (default: the frame count asked, or the model's
    window), made once per run before any weights load; raises `SettingsError` for an overlap that does not fit the
    windows, a long clip on an image-to-video checkpoint, and mask words on a long clip."""
    from ..cogvideox_ddim_windows import clip_windows, overlap_latent_frames

    transformer, temporal = config["transformer"], temporal_compression(config)
    native = latent_frame_count(transformer["sample_frames"], temporal)
    if frames is None:
        frames = settings.num_frames if isinstance(settings.num_frames, int) else transformer["sample_frames"]
    try:
        overlap_latent_frames(settings.window_overlap, native, temporal)
        schedule = clip_windows(latent_frame_count(frames, temporal), native, settings.window_overlap,
                                temporal, is_image_to_video(transformer),
                                settings.window_weighting or DEFAULT_WINDOW_WEIGHTING)
    except ParameterError as error:
        raise SettingsError.from_parameter_error(error) from None
    except (ValueError, TypeError) as error:
        field = "window_overlap" if "window_overlap" in str(error) else "num_frames"
        raise SettingsError(field, literal(error)) from None
    plan = WindowPlan.from_schedule(schedule.to_dict(), temporal)
    if plan.windows > 1 and settings.mask_words:
        raise SettingsError(
            "mask_words", f"{{mask_words}} records the attention of one window of {transformer['sample_frames']} "
            f"frames; this clip has {frames}: pass a {{mask}} video instead, or {{num_frames}} "
            f"{transformer['sample_frames']}.")
    return plan


def window_plan(settings: EditSettings, config: dict) -> WindowPlan:
    """The frames and windows a run of `settings` takes, from the clip's header and packets with the run's own checks
    (`check_source`, which makes the plan with `plan_windows`): before any model work."""
    from .sources import check_source

    return check_source(settings, config).plan


def steps_run(settings: EditSettings) -> int:
    """Steps each stage runs: the last `strength` of them."""
    from ..cogvideox_ddim_sampling import cut_timesteps

    return len(cut_timesteps(range(settings.steps), settings.strength))


def progress_description(message: str, plan: WindowPlan, steps: int, window_batch_size: int = 1) -> str:
    """The next progress bar's description for the stage `message` logs: for a long clip with its windows x steps,
    e.g. "Editing under 1 prompt(s): 3 windows x 20 steps"."""
    stage = message.rstrip(".")
    if plan.windows == 1 or not stage.startswith(("Inverting", "Editing", "Reconstructing")):
        return stage
    return f"{re.sub(r' with [0-9]+ steps$', '', stage)}: {plan.windows_x_steps(steps, window_batch_size)}"


STRIDE_FLAG = "--frame-stride {stride}"  # how the stride hint names the stride on the command line


def stride_hint(settings: EditSettings, config: dict, plan: WindowPlan, option: str = STRIDE_FLAG) -> str:
    """For the whole of a clip filmed faster than the model's frame rate (a phone's 30 fps against 8): the frame
    stride that brings it near that rate, and the windows it saves, naming the stride as `option` does (a flag, or a
    page's control). Empty otherwise."""
    from ..cogvideox_ddim_video_io import probe_video

    fps = probe_video(settings.video).fps or 0.0
    from .sources import checkpoint_fps

    stride = round(fps / checkpoint_fps(config["transformer"]))
    if settings.num_frames != "all" or plan.windows == 1 or settings.frame_stride != 1 or stride < 2 or (
            settings.sampling != "first"):
        return ""
    strided = window_plan(dataclasses.replace(settings, frame_stride=stride), config)
    return (f" The clip has {fps:g} fps: {option.format(stride=stride)} edits it at {fps / stride:.3g} fps, "
            f"{strided.frames} frames in {strided.windows} window{'s' * (strided.windows > 1)}.")


def length_text(settings: EditSettings, config: dict, stride_option: str = STRIDE_FLAG) -> str:
    """What a run of `settings` would edit of its clip, as a sentence: "Edits 17 frames (the whole clip) in 2 windows
    of 9 frames overlapping by 4 (pyramid weighting).", and the stride hint (`stride_hint`). Raises the run's own
    errors (`check_source`) for what it cannot run."""
    plan = window_plan(settings, config)
    which = {None: " (the model's window)", "all": " (the whole clip)"}.get(settings.num_frames, "")
    return f"Edits {plan.frames} frames{which}{plan.in_windows()}." + stride_hint(settings, config, plan,
                                                                                  stride_option)


def length_choice_text(num_frames: int | str | None, native_frames: int, longest_s: float) -> str:
    """What a length choice means before a clip is there: the model's window (`num_frames` None), a frame count, or
    the whole clip ("all", up to `longest_s` seconds)."""
    frames = num_frames or native_frames
    if frames == "all":
        return f"Edits the whole clip (up to {longest_s:g} s) in overlapping windows of {native_frames} frames."
    if frames > native_frames:
        return f"Edits up to {frames} frames, in overlapping windows of {native_frames} frames."
    return f"Edits up to {frames} frames" + ("." if num_frames else ": the model's window.")


def plan_line(settings: EditSettings, config: dict, command: str = "edit", plan: WindowPlan | None = None) -> str | None:
    """The line the command line and batch log before any model work on a clip longer than one window, e.g. "Editing
    161 frames in 5 windows of 49 frames overlapping by 12 (pyramid weighting): 5 windows x 50 steps"; None for one
    window. Without a video, the windows are those the saved inversion (`settings.inversion`) recorded; `plan`: the
    run's, when `prepare_edit` made it already."""
    from ..cogvideox_ddim_output import CogVideoXDDIMInversionOutput

    if settings.video is not None:
        plan, source = plan or window_plan(settings, config), ""
    elif settings.inversion is not None:
        recorded = CogVideoXDDIMInversionOutput.read_settings(settings.inversion)
        plan, source = WindowPlan.from_inversion(recorded, temporal_compression(config)), " of the saved inversion"
    else:
        return None
    if plan.windows == 1:
        return None
    if command == "invert" or not (settings.prompts or settings.reconstruction):
        verb = "Inverting"
    else:
        verb = "Editing" if settings.prompts else "Reconstructing"
    hint = stride_hint(settings, config, plan) if settings.video is not None else ""
    return (f"{verb} {plan.frames} frames{source}{plan.in_windows()}: "
            f"{plan.windows_x_steps(steps_run(settings), settings.window_batch_size)}.{hint}")


def log_plan(settings: EditSettings, config: dict, log, command: str = "edit", plan: WindowPlan | None = None):
    """Log `plan_line` with `log` (a stage logger such as `workflow.run.print_log`; None: silent) on a long clip."""
    line = plan_line(settings, config, command, plan) if log is not None else None
    if line is not None:
        log(line)
