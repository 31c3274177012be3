"""Seams on long toy-world clips: frame-to-frame change at window boundaries against inside windows (issue 26).

Colour edits of 33-frame toy clips (9 latent frames; the toy model's window is 3) with the committed toy checkpoint:
(a) independent windows cut and concatenated (windows that do not overlap), (b) independent overlapping windows, each
inverted and edited alone, cross-faded in latent space with the pyramid weights, (c) co-denoised windows with the
flat weighting, (d) co-denoised with the pyramid weighting. Each is scored with `evaluate.evaluate_edit`'s seam ratio at
its own window boundaries (`temporal_compression=4`), normalised by the source's, plus colour success and centroid
error (toy world detectors).

python benchmarks/long_video_seams.py [--clips 4] [--steps 20]
"""

import argparse
import json

import numpy as np
import torch

from cogvideox_ddim_inversion import cogvideox_ddim_windows as windows_module
from cogvideox_ddim_inversion.cogvideox_ddim_windows import WindowSchedule
from cogvideox_ddim_inversion.evaluate import evaluate_edit
from cogvideox_ddim_inversion.pipeline_cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline
from cogvideox_ddim_inversion.toy import world
from cogvideox_ddim_inversion.toy.demo import TOY_CHECKPOINT

FRAMES, LATENT_FRAMES, WINDOW, OVERLAP = 33, 9, 3, 4  # overlap in video frames: one latent frame


def long_clip(index: int, rng: np.random.Generator):
    shape, colour, direction, background = world.HELD_OUT[index % len(world.HELD_OUT)]
    speed, size = 0.8, 9.0
    dx, dy = world.DIRECTIONS[direction]
    travel, margin = speed * (FRAMES - 1), size + 2.0
    start = [float(rng.uniform(margin, world.WIDTH - margin)), float(rng.uniform(margin, world.HEIGHT - margin))]
    for axis, step in ((0, dx), (1, dy)):
        if step:
            start[axis] = margin + travel if step < 0 else margin
    return world.render_clip(shape, colour, direction, background, tuple(start), speed, size, FRAMES)


def schemed(scheme: str):
    """`clip_windows` with another weighting (the pipeline's default is "pyramid")."""
    original = windows_module.clip_windows

    def clip_windows(*args, **kwargs):
        return original(*args, **{**kwargs, "scheme": scheme})

    return original, clip_windows


def edit_latents(pipe, latents, source_prompt, edit_prompt, steps, text_length, overlap=None, scheme="pyramid"):
    original, patched = schemed(scheme)
    windows_module.clip_windows = patched
    try:
        inv = pipe.invert(latents=latents, prompt=source_prompt, num_inference_steps=steps,
                          max_sequence_length=text_length, window_overlap=overlap)
        out = pipe(prompt=edit_prompt, negative_prompt=source_prompt, guidance_scale=4.0, latents=inv.trajectory[0],
                   reference_latents=inv.trajectory, reference_prompt=source_prompt, reference_windows=inv.windows,
                   num_inference_steps=steps, max_sequence_length=text_length, output_type="latent").frames
    finally:
        windows_module.clip_windows = original
    return out, inv.windows


def decode(pipe, latents):
    return world.to_uint8(pipe.video_processor.postprocess_video(pipe.decode_latents(latents), output_type="np")[0])


@torch.no_grad()
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(2)
    pipe = CogVideoXDDIMInversionPipeline.from_pretrained(TOY_CHECKPOINT)
    pipe.set_progress_bar_config(disable=True)
    text_length = pipe.transformer.config.max_text_seq_length
    rng = np.random.default_rng(0)
    rows = {name: [] for name in ("(a) independent, cut", "(b) independent, cross-faded", "(c) co-denoised, flat",
                                  "(d) co-denoised, pyramid")}
    for index in range(args.clips):
        clip = long_clip(index, rng)
        colours = list(world.COLOURS)
        target = colours[(colours.index(clip.colour) + 1) % len(colours)]
        source_prompt = clip.caption
        edit_prompt = world.caption(clip.shape, target, clip.direction, clip.background)
        frames = torch.from_numpy(clip.frames).permute(0, 3, 1, 2)[None].float() / 255
        latents = pipe.prepare_video_latents(frames.permute(0, 2, 1, 3, 4) * 2 - 1, torch.float32, pipe.device)
        assert latents.shape[1] == LATENT_FRAMES
        results = {}
        # (a) windows of 3 that do not overlap: 0, 3, 6 (each edited with no knowledge of the others)
        results["(a) independent, cut"] = edit_latents(pipe, latents, source_prompt, edit_prompt, args.steps,
                                                       text_length, overlap=0)
        # (b) the overlapping windows, each inverted and edited alone, then cross-faded with the pyramid weights
        schedule = WindowSchedule.for_clip(LATENT_FRAMES, WINDOW, OVERLAP, "pyramid")
        combined = torch.zeros_like(latents)
        for k, weights in enumerate(schedule.frame_weights()):
            part, _ = edit_latents(pipe, latents[:, schedule.window_slice(k)], source_prompt, edit_prompt, args.steps,
                                   text_length)
            combined[:, schedule.window_slice(k)] += part * weights.view(1, -1, 1, 1, 1).float()
        results["(b) independent, cross-faded"] = combined, schedule
        for name, scheme in (("(c) co-denoised, flat", "flat"), ("(d) co-denoised, pyramid", "pyramid")):
            results[name] = edit_latents(pipe, latents, source_prompt, edit_prompt, args.steps, text_length,
                                         overlap=OVERLAP, scheme=scheme)
        for name, (edited, used) in results.items():
            video = decode(pipe, edited)
            scores = evaluate_edit(video, clip.frames, window_boundaries=used.video_boundaries(),
                                   temporal_compression=4, flow=False)
            found = world.describe(video)
            rows[name].append({
                "seam_ratio_normalised": scores["seam_ratio_normalised"],
                "colour_success": found["colour"] == target,
                "centroid_error_px": world.centroid_error(found["centroids"], clip.centroids),
                "boundaries": used.video_boundaries(),
            })
        print(json.dumps({name: values[-1] for name, values in rows.items()}))
    print("| method | seam ratio (edit / source), mean over clips | colour edits applied | centroid error (px) |")
    print("|---|---|---|---|")
    for name, values in rows.items():
        seams = [v["seam_ratio_normalised"] for v in values if v["seam_ratio_normalised"] is not None]
        print(f"| {name} | {np.mean(seams):.2f} (min {np.min(seams):.2f}, max {np.max(seams):.2f}) | "
              f"{sum(v['colour_success'] for v in values)}/{len(values)} | "
              f"{np.mean([v['centroid_error_px'] for v in values]):.2f} |")


if __name__ == "__main__":
    main()
