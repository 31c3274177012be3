"""Seams of long-clip edits: frame-to-frame change at window boundaries against inside windows (issue 26).

Colour edits with the committed toy checkpoint of clips three windows long, under each way of editing a long clip:

- (a) independent windows, cut: windows that do not overlap, each inverted and edited with no knowledge of the others,
  concatenated (co-denoising with no overlap is exactly that);
- (b) independent windows, cross-faded: overlapping windows, each inverted and edited alone, their edited latents
  cross-faded (pyramid weights) before decoding;
- (c) co-denoised windows (`invert()`/`__call__` on the whole clip) with each weighting, flat, pyramid and hann, at
  overlaps of 4 and 8 video frames (1 and 2 latent frames). Conditions whose per-frame weights are equal are one and
  the same function of the latents, so each such group runs once and the table says so.

Windows (`--window`, latent frames): 3 is the toy model's native 9 frames. There every weighting is the same at
overlap 4 (each shared frame is the edge of both windows), and overlap 8 leaves no latent-frame edge that is not a
window boundary (nothing to compare with), so only (a), (b) and one (c) are measured. `--window 5` (17 frames) runs the
toy model beyond its training length (its RoPE takes any length) with room to tell flat, pyramid and hann apart.

Clips (3 windows' worth of latent frames: 33 frames at `--window 3`, 57 at 5): held-out long toy-world clips (a shape
moving slowly enough to stay in the frame), a generated long real-looking clip (`testing.generated_clips.
textured_pan_clip`: a pan over fractal noise) and, when ../shared is present, horse.mp4 seen through a panning window,
played forwards then backwards past its 49 frames (`panned_video_clip`). The toy model knows only toy-world words, so
the real-looking clips are "edited" with toy captions: their rows measure whether windows agree with each other, not
edit quality.

Metric: `evaluate.evaluate_edit`'s `seam_ratio_normalised` at each condition's own window boundaries with
`temporal_compression=4` (the mean change across window boundaries over the mean change at the other latent-frame
edges, divided by the same ratio on the source: 1 is no seam). For toy clips also colour-edit success and centroid
error (toy-world detectors) per window, against one-window edits of single-window clips (the native-length clip from
each window's first frame, encoded and edited alone).

python benchmarks/long_video_seams.py [--window 3|5] [--clips 8] [--steps 10] [--horse horse.mp4] [--json out.json]
    [--quick]
"""

import argparse
import json
import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from cogvideox_ddim_inversion import cogvideox_ddim_windows as windows_module
from cogvideox_ddim_inversion.cogvideox_ddim_windows import DEFAULT_WINDOW_WEIGHTING, WindowSchedule
from cogvideox_ddim_inversion.evaluate import evaluate_edit
from cogvideox_ddim_inversion.pipeline_cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline
from cogvideox_ddim_inversion.testing.generated_clips import panned_video_clip, textured_pan_clip
from cogvideox_ddim_inversion.toy import world
from cogvideox_ddim_inversion.toy.demo import TOY_CHECKPOINT


TEMPORAL_COMPRESSION = 4
SHARED_VIDEO = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "videos", "horse.mp4")
# The toy model knows only its grammar's words: the real-looking clips are edited with these captions.
REAL_SOURCE_PROMPT = "a yellow square moving right on a gray background"
REAL_EDIT_PROMPT = "a blue square moving right on a gray background"


@dataclass(frozen=True)
class Condition:
    name: str
    window_overlap: int  # video frames
    scheme: str  # the weighting: of the co-denoised windows, or of the cross-fade
    mode: str = "co-denoised"  # or "cross-faded" (independent overlapping windows)


CONDITIONS = (
    Condition("(a) independent windows, cut", 0, "flat"),  # no overlap: co-denoising is independent windows
    Condition("(b) independent windows, cross-faded (overlap 4)", 4, "pyramid", "cross-faded"),
    *(Condition(f"(c) co-denoised, {scheme}, overlap {overlap}", overlap, scheme)
      for overlap in (4, 8) for scheme in windows_module.WEIGHTING_SCHEMES),
)
QUICK_CONDITIONS = tuple(c for c in CONDITIONS if c.window_overlap != 8)


def long_toy_clip(index: int, rng: np.random.Generator, num_frames: int) -> world.Clip:
    """A held-out toy clip of `num_frames`: the shape moves 0.8 px per frame (the training clips: 2.5 to 3.5 over 9
    frames), so that it stays inside the frame for the whole long clip."""
    shape, colour, direction, background = world.HELD_OUT[(7 * index) % len(world.HELD_OUT)]
    speed, size = 0.8, 9.0
    dx, dy = world.DIRECTIONS[direction]
    travel, margin = speed * (num_frames - 1), size + 2.0
    start = [float(rng.uniform(margin, world.WIDTH - margin)), float(rng.uniform(margin, world.HEIGHT - margin))]
    for axis, step in ((0, dx), (1, dy)):
        if step:
            start[axis] = margin + travel if step < 0 else margin
    return world.render_clip(shape, colour, direction, background, tuple(start), speed, size, num_frames)


def edit_latents(pipe, latents, prompts, steps, window_overlap=None, scheme=DEFAULT_WINDOW_WEIGHTING):
    """Invert `latents` in windows weighted by `scheme` (`window_weighting`) and edit them with the source prompt's
    reference (shared mode, guidance 4; `__call__` reuses the inversion's windows): the edited latents and the windows
    used."""
    source_prompt, edit_prompt = prompts
    text_length = pipe.transformer.config.max_text_seq_length
    inv = pipe.invert(latents=latents, prompt=source_prompt, num_inference_steps=steps,
                      max_sequence_length=text_length, window_overlap=window_overlap, window_weighting=scheme)
    edited = pipe(prompt=edit_prompt, negative_prompt=source_prompt, guidance_scale=4.0, latents=inv.trajectory[0],
                  reference_latents=inv.trajectory, reference_prompt=source_prompt, reference_windows=inv.windows,
                  num_inference_steps=steps, max_sequence_length=text_length, output_type="latent").frames
    windows = inv.windows
    if windows is None:  # a clip of one window
        windows = WindowSchedule.for_clip(latents.shape[1], latents.shape[1], scheme=scheme)
    elif isinstance(windows, dict):
        windows = WindowSchedule.from_dict(windows)
    if windows.scheme != scheme and windows.num_windows > 1:
        raise RuntimeError(f"Asked for the {scheme} weighting, the inversion ran with {windows.scheme}.")
    return edited, windows


def decode(pipe, latents) -> np.ndarray:
    return world.to_uint8(pipe.video_processor.postprocess_video(pipe.decode_latents(latents), output_type="np")[0])


def schedule_of(latent_frames: int, condition: Condition, window: int) -> WindowSchedule:
    return WindowSchedule.for_clip(latent_frames, window, condition.window_overlap, condition.scheme,
                                   TEMPORAL_COMPRESSION)


def same_function_as(conditions, latent_frames: int, window: int) -> dict[str, str]:
    """For each condition, the first earlier condition that computes the same function (same mode, same windows, equal
    per-frame weights, to 1e-12), or itself: only those run."""
    runs, representative = [], {}
    for condition in conditions:
        schedule = schedule_of(latent_frames, condition, window)
        for other in runs:
            other_schedule = schedule_of(latent_frames, other, window)
            if other.mode == condition.mode and other_schedule.starts == schedule.starts and torch.allclose(
                other_schedule.frame_weights(), schedule.frame_weights(), rtol=0, atol=1e-12
            ):
                representative[condition.name] = other.name
                break
        else:
            runs.append(condition)
            representative[condition.name] = condition.name
    return representative


def encode(pipe, frames: np.ndarray) -> torch.Tensor:
    video = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 255 * 2 - 1  # [1, C, F, H, W]
    return pipe.prepare_video_latents(video, torch.float32, pipe.device)


def run_condition(pipe, latents, prompts, steps, condition, window):
    """The edited video of one condition and its windows."""
    if condition.mode == "co-denoised":
        edited, used = edit_latents(pipe, latents, prompts, steps, condition.window_overlap, condition.scheme)
        return decode(pipe, edited), used
    schedule = schedule_of(latents.shape[1], condition, window)
    combined = torch.zeros_like(latents)
    for k, weights in enumerate(schedule.frame_weights()):
        part, _ = edit_latents(pipe, latents[:, schedule.window_slice(k)], prompts, steps)
        combined[:, schedule.window_slice(k)] += part * weights.view(1, -1, 1, 1, 1).to(part.dtype)
    return decode(pipe, combined), schedule


def one_window_edits(pipe, clip: world.Clip, prompts, steps, schedule: WindowSchedule, target: str) -> list[dict]:
    """One-window edits of single-window clips: for each window of `schedule`, the native-length clip of the long
    clip's frames from the window's first frame (the last one ending at the clip's end), encoded, inverted, edited and
    scored on its own."""
    native = (schedule.window - 1) * TEMPORAL_COMPRESSION + 1
    scores = []
    for k in range(schedule.num_windows):
        first = min(window_frames(schedule, k).start, len(clip.frames) - native)
        frames = slice(first, first + native)
        edited, _ = edit_latents(pipe, encode(pipe, clip.frames[frames]), prompts, steps)
        scores.append(toy_scores(decode(pipe, edited), clip_frames(clip, frames), target))
    return scores


def window_frames(schedule: WindowSchedule, index: int) -> slice:
    """The video frames window `index` decodes to (latent frame 0: frame 0; latent frame L >= 1: 4 (L - 1) + 1 ...)."""
    start, end = schedule.starts[index], schedule.starts[index] + schedule.window
    first = 0 if start == 0 else (start - 1) * TEMPORAL_COMPRESSION + 1
    return slice(first, (end - 1) * TEMPORAL_COMPRESSION + 1)


def clip_frames(clip: world.Clip, frames: slice) -> world.Clip:
    return world.Clip(frames=clip.frames[frames], masks=clip.masks[frames], centroids=clip.centroids[frames],
                      shape=clip.shape, colour=clip.colour, direction=clip.direction, background=clip.background)


def toy_scores(frames: np.ndarray, clip: world.Clip, target: str) -> dict:
    found = world.describe(frames)
    return {"colour_success": found["colour"] == target,
            "centroid_error_px": world.centroid_error(found["centroids"], clip.centroids)}


def per_window_scores(video: np.ndarray, schedule: WindowSchedule, clip: world.Clip, target: str) -> list[dict]:
    return [toy_scores(video[window_frames(schedule, k)], clip_frames(clip, window_frames(schedule, k)), target)
            for k in range(schedule.num_windows)]


def measure_clip(pipe, frames, prompts, steps, conditions, clip=None, target=None) -> dict:
    """Every condition's seam ratio (and for toy clips whole-clip and per-window scores) on one clip."""
    window = windows_module.native_latent_frames(pipe.transformer.config, pipe.vae_scale_factor_temporal)
    latents = encode(pipe, frames)
    representative = same_function_as(conditions, latents.shape[1], window)
    results, cache = {}, {}
    for condition in conditions:
        name = representative[condition.name]
        if name not in cache:
            cache[name] = run_condition(pipe, latents, prompts, steps, condition, window)
        edited, used = cache[name]
        scores = evaluate_edit(edited, frames, window_boundaries=used.video_boundaries(TEMPORAL_COMPRESSION),
                               temporal_compression=TEMPORAL_COMPRESSION, flow=False)
        result = {"same_run_as": name, "windows": list(used.starts), "boundaries": scores["window_boundaries"],
                  "seam_ratio_normalised": scores["seam_ratio_normalised"], "seam_ratio": scores["seam_ratio"],
                  "source_seam_ratio": scores["source_seam_ratio"]}
        if clip is not None:
            result.update(toy_scores(edited, clip, target))
            result["per_window"] = per_window_scores(edited, used, clip, target)
            if condition.mode == "cross-faded":  # the baseline, at the cross-fade's windows
                result["one_window"] = one_window_edits(pipe, clip, prompts, steps, used, target)
        results[condition.name] = result
    return results


def summary(values) -> str:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{np.mean(values):.2f} ({np.min(values):.2f}, {np.max(values):.2f})"


def seam_table(toy: list[dict], real: dict[str, dict], conditions) -> list[str]:
    """Per condition: the seam ratio over toy clips, over the toy clips where (a) shows a seam (> 1.1), and on each
    real-looking clip."""
    names = list(real)
    cut = conditions[0].name
    seamy = [clip for clip in toy if clip[cut]["seam_ratio_normalised"] > 1.1]
    lines = [
        "| condition | toy clips: seam ratio, mean (min, max) | toy clips with seam ratio <= 1.1 | "
        f"the {len(seamy)} toy clips where (a) > 1.1: mean, clips <= 1.1 | "
        + "".join(f"{name}: seam ratio | " for name in names) + "runs as |",
        "|---|---|---|---|" + "---|" * len(names) + "---|",
    ]
    for condition in conditions:
        seams = [clip[condition.name]["seam_ratio_normalised"] for clip in toy]
        on_seamy = [clip[condition.name]["seam_ratio_normalised"] for clip in seamy]
        same = next(iter(toy or real.values()))[condition.name]["same_run_as"]
        lines.append(
            f"| {condition.name} | {summary(seams)} | {sum(s <= 1.1 for s in seams)}/{len(seams)} | "
            f"{summary([np.mean(on_seamy)]) if on_seamy else '-'}, {sum(s <= 1.1 for s in on_seamy)}/{len(seamy)} | "
            + "".join(summary([real[name][condition.name]["seam_ratio_normalised"]]) + " | " for name in names)
            + f"{'itself' if same == condition.name else 'as ' + same} |"
        )
    return lines


def quality_table(toy: list[dict], conditions, window_video_frames: int) -> list[str]:
    """Whole-clip and per-window colour success and centroid error; per window: the mean over clips at each window
    position, min and max over positions (uniform: close to the one-window row)."""

    def row(name, whole, per_window):
        positions = range(len(per_window[0]))
        success = [np.mean([clip[k]["colour_success"] for clip in per_window]) for k in positions]
        error = [np.mean([clip[k]["centroid_error_px"] for clip in per_window]) for k in positions]
        whole_text = "- | -" if whole is None else (
            f"{sum(w['colour_success'] for w in whole)}/{len(whole)} | "
            f"{np.mean([w['centroid_error_px'] for w in whole]):.2f}"
        )
        return (f"| {name} | {whole_text} | {100 * min(success):.0f}% - {100 * max(success):.0f}% | "
                f"{min(error):.2f} - {max(error):.2f} |")

    lines = ["| condition | whole clip: colour edits applied | whole clip: centroid error (px) | per window: colour "
             "edits applied, min - max over window positions | per window: centroid error (px), min - max |",
             "|---|---|---|---|---|"]
    cross_faded = next(c.name for c in conditions if c.mode == "cross-faded")
    one_window = [clip[cross_faded]["one_window"] for clip in toy]
    lines.append(row(f"one window: the {window_video_frames} frames from each window's start edited alone", None,
                     one_window))
    for condition in conditions:
        lines.append(row(condition.name, [clip[condition.name] for clip in toy],
                         [clip[condition.name]["per_window"] for clip in toy]))
    return lines


def measurable(conditions, latent_frames: int, window: int) -> tuple[list, list]:
    """The conditions whose windows leave latent-frame edges that are no window boundary (the seam ratio's
    denominator), and the others (windows of 3 overlapping by 2: every edge is a boundary)."""
    kept, dropped = [], []
    for condition in conditions:
        boundaries = schedule_of(latent_frames, condition, window).latent_boundaries()
        (kept if len(boundaries) < latent_frames - 1 else dropped).append(condition)
    return kept, dropped


@torch.no_grad()
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=3,
                        help="window in latent frames: 3 is the toy model's native 9 frames; 5 (17 frames) runs it "
                        "beyond its training length, with room to tell the weightings apart")
    parser.add_argument("--clips", type=int, default=8, help="long toy-world clips (held-out combinations)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: on a shared CPU more threads mostly wait for each other)")
    parser.add_argument("--real", choices=("all", "generated", "none"), default="all",
                        help="the real-looking clips: the generated pan and, when ../shared is present, horse.mp4")
    parser.add_argument("--horse", default=SHARED_VIDEO, help="the real clip to pan over (default: ../shared's)")
    parser.add_argument("--quick", action="store_true",
                        help="one toy clip, 2 steps, overlap 4 only, no real-looking clips (a smoke run)")
    parser.add_argument("--json", help="write every clip's numbers here")
    args = parser.parse_args(argv)
    conditions = CONDITIONS
    if args.quick:
        args.window, args.clips, args.steps, args.real, conditions = 3, 1, 2, "none", QUICK_CONDITIONS
    torch.set_num_threads(args.threads)
    pipe = CogVideoXDDIMInversionPipeline.from_pretrained(TOY_CHECKPOINT)
    pipe.set_progress_bar_config(disable=True)
    if args.window != windows_module.native_latent_frames(pipe.transformer.config, pipe.vae_scale_factor_temporal):
        # the pipeline's windows are the transformer's `sample_frames` (the toy's RoPE takes any length)
        pipe.transformer.register_to_config(sample_frames=(args.window - 1) * TEMPORAL_COMPRESSION + 1)
    # three windows' worth of latent frames (odd, as the toy VAE decodes them): (a) cuts into three whole windows
    latent_frames = 3 * args.window
    num_frames = (latent_frames - 1) * TEMPORAL_COMPRESSION + 1
    conditions, dropped = measurable(conditions, latent_frames, args.window)
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    toy = []
    for index in range(args.clips):
        clip = long_toy_clip(index, rng, num_frames)
        colours = list(world.COLOURS)
        target = colours[(colours.index(clip.colour) + 1) % len(colours)]
        prompts = clip.caption, world.caption(clip.shape, target, clip.direction, clip.background)
        toy.append(measure_clip(pipe, clip.frames, prompts, args.steps, conditions, clip, target))
        print(f"toy clip {index} ({clip.caption} -> {target}):",
              json.dumps({name: round(r["seam_ratio_normalised"], 3) for name, r in toy[-1].items()}), flush=True)
    real = {}
    if args.real != "none":
        real["generated pan"] = textured_pan_clip(num_frames)
        if args.real == "all" and os.path.exists(args.horse):
            real["horse.mp4 pan"] = panned_video_clip(args.horse, num_frames, world.WIDTH)
    for name, frames in list(real.items()):
        real[name] = measure_clip(pipe, frames, (REAL_SOURCE_PROMPT, REAL_EDIT_PROMPT), args.steps, conditions)
        print(f"{name}:", json.dumps({c: round(r["seam_ratio_normalised"], 3) for c, r in real[name].items()}),
              flush=True)
    elapsed = time.perf_counter() - started
    print(f"\nwindows of {args.window} latent frames ({(args.window - 1) * TEMPORAL_COMPRESSION + 1} video frames); "
          f"{args.clips} toy clips and {len(real)} real-looking clips of {num_frames} frames; {args.steps} steps; "
          f"{elapsed:.0f} s")
    for condition in dropped:
        print(f"not measurable: {condition.name} (every latent-frame edge is a window boundary)")
    print()
    print("\n".join(seam_table(toy, real, conditions)))
    if toy:
        print()
        print("\n".join(quality_table(toy, conditions, (args.window - 1) * TEMPORAL_COMPRESSION + 1)))
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"window": args.window, "toy": toy, "real": real, "steps": args.steps, "seconds": elapsed},
                      file, indent=1)
    return toy, real

if __name__ == "__main__":
    main()
