"""Reconstruction and colour-edit quality of DDIM inversion modes on the toy world, scored with exact ground truth.

    python benchmarks/edit_quality.py                     # 50 held-out clips, 50 steps, toy/checkpoint/
    python benchmarks/edit_quality.py --clips 20 --steps 25 --json /tmp/edit_quality.json
    python benchmarks/edit_quality.py --only-masks --mask-latent-dilation 0   # the ceilings and the mask rows only

Source clips are rendered by `toy_world` from held-out (shape, colour, direction, background) combinations and a
seed the training never used, so the model never saw them. Every mode runs the same number of steps:

- plain inversion: `pipe.invert` with the source caption, regenerate from `trajectory[0]`, no reference attention;
- refined inversion: the same with `invert(fixed_point_iterations=...)`, when the pipeline has that argument;
- shared / paired: reference attention to the inverted trajectory (`reference_mode`), starting from `trajectory[0]`;
- shared with ramped guidance: shared mode whose edit starts at low guidance and raises it half-way
  (`callbacks.GuidanceScaleCallback`; reconstruction is the shared row's, at guidance 1);
- published recipe: `DDIMInverseScheduler(**pipe.scheduler.config)` inversion of an empty prompt with
  classifier-free guidance, regeneration from fresh noise with guidance and paired reference rows;
- local edits (masks) in the shared, ramped and paired modes: the true shape mask (`clip.masks`) or the automatic
  mask that `invert(video=..., mask_words=[colour, shape])` records from the model's own text attention, passed as
  `__call__(mask=..., source_latents=inv.latents)` (latent blending after every step), and the same with
  `paste_back=True, source_video=clip.frames` (the source's pixels composited outside the mask, feathered by
  `--mask-feather` pixels). The automatic mask's IoU against the true mask is reported.

(a) reconstruction with the source caption: PSNR / SSIM against the source, and the VAE-only ceiling;
(b) colour edit (the caption with another colour): edit success (detected colour = target), motion kept (mean
centroid error in pixels against the source's ground truth), background kept (PSNR and SSIM outside the shape mask
dilated by 3 pixels, which leaves out the VAE's blur of the shape's edge; clips whose background is exactly the
source's, as paste-back can make it, are counted apart and the PSNR is the mean over the others), and the VAE-only
edit ceiling: the exactly recoloured clips (`toy_world.recolour`) through encode/decode.
Prints a markdown table and writes JSON. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time

import numpy as np
import torch
from diffusers import DDIMInverseScheduler

from cogvideox_ddim_inversion.toy import world as toy_world
from cogvideox_ddim_inversion.callbacks import GuidanceScaleCallback
from cogvideox_ddim_inversion.pipeline_cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def dilate(masks: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of [F, H, W] masks by a square of half-width `radius` (edges of the VAE blur are excluded)."""
    out = masks.copy()
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            out |= np.roll(np.roll(masks, dy, axis=1), dx, axis=2)
    return out


@torch.no_grad()
def encode(pipe, clips) -> torch.Tensor:
    """Scaled posterior-mode latents [B, F, C, h, w] of toy clips, via the pipeline's own preprocessing."""
    videos = [pipe.preprocess_source_video(clip.frames, toy_world.HEIGHT, toy_world.WIDTH, None)[0] for clip in clips]
    return pipe.prepare_video_latents(torch.cat(videos), torch.float32, pipe._execution_device)


@torch.no_grad()
def decode(pipe, latents: torch.Tensor) -> np.ndarray:
    video = pipe.decode_latents(latents)
    return toy_world.to_uint8(pipe.video_processor.postprocess_video(video=video, output_type="np"))


@torch.no_grad()
def published_inversion(pipe, latents: torch.Tensor, steps: int, guidance_scale: float, text_length: int):
    """The published recipe's inversion: diffusers' `DDIMInverseScheduler` built from the pipeline scheduler's config
    (it has no `snr_shift_scale`, so any SNR shift is dropped), an empty prompt and classifier-free guidance.
    Returns the trajectory in denoising order, aligned with the forward timesteps."""
    inverse = DDIMInverseScheduler(**pipe.scheduler.config)
    inverse.set_timesteps(steps)
    batch = latents.shape[0]
    positive, negative = pipe.encode_prompt([""] * batch, [""] * batch, do_classifier_free_guidance=True,
                                            max_sequence_length=text_length)
    embeds = torch.cat([negative, positive])
    rotary = pipe._rotary_embeddings(latents, latents.device)
    trajectory = []
    for t in inverse.timesteps:
        model_input = torch.cat([latents] * 2)
        output = pipe.transformer(hidden_states=model_input, encoder_hidden_states=embeds,
                                  timestep=t.expand(model_input.shape[0]), image_rotary_emb=rotary,
                                  return_dict=False)[0].float()
        uncond, cond = output.chunk(2)
        output = uncond + guidance_scale * (cond - uncond)
        latents = inverse.step(output, t, latents).prev_sample
        trajectory.append(latents)
    return torch.stack(trajectory[::-1])


def score_reconstruction(videos: np.ndarray, clips) -> dict:
    psnrs = [toy_world.psnr(video, clip.frames) for video, clip in zip(videos, clips)]
    ssims = [toy_world.ssim(video, clip.frames) for video, clip in zip(videos, clips)]
    return {"recon_psnr": float(np.mean(psnrs)), "recon_ssim": float(np.mean(ssims)),
            "recon_psnr_per_clip": psnrs}


def score_edit(videos: np.ndarray, clips, targets) -> dict:
    success, errors, background, background_ssim = [], [], [], []
    for video, clip, target in zip(videos, clips, targets):
        found = toy_world.describe(video)
        success.append(found["colour"] == target)
        errors.append(toy_world.centroid_error(found["centroids"], clip.centroids))
        outside = ~dilate(clip.masks, 3)
        background.append(toy_world.psnr(video, clip.frames, outside))
        background_ssim.append(toy_world.ssim(video, clip.frames, outside))
    finite = [e for e in errors if np.isfinite(e)]
    inexact = [p for p in background if np.isfinite(p)]
    return {"edit_success": float(np.mean(success)),
            "centroid_error_px": float(np.mean(finite)) if finite else float("inf"),
            "centroid_missing": len(errors) - len(finite),
            "background_psnr": float(np.mean(inexact)) if inexact else float("inf"),
            "background_exact": len(background) - len(inexact),
            "background_ssim": float(np.mean(background_ssim)),
            "detected_colours": [toy_world.describe(v)["colour"] for v in videos]}


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    pipe = CogVideoXDDIMInversionPipeline.from_pretrained(args.checkpoint)
    pipe.set_progress_bar_config(disable=True)
    text_length = pipe.transformer.config.max_text_seq_length
    steps, guidance = args.steps, args.guidance

    clips = toy_world.make_clips(args.clips, seed=args.seed, split=args.split)
    colours = list(toy_world.COLOURS)
    # Deterministic target colour, never the source's: cycle through the other three.
    targets = [colours[(colours.index(c.colour) + 1 + i % 3) % len(colours)] for i, c in enumerate(clips)]
    sources = [c.caption for c in clips]
    edits = [toy_world.caption(c.shape, t, c.direction, c.background) for c, t in zip(clips, targets)]

    results = {}
    t0 = time.time()
    latents = encode(pipe, clips)
    ceiling = score_reconstruction(decode(pipe, latents), clips)
    results["VAE ceiling (encode/decode)"] = {**ceiling, "seconds": round(time.time() - t0, 1)}
    # The best any edit can score through this VAE: the exactly recoloured source clips, encoded and decoded.
    t0 = time.time()
    recoloured = [toy_world.recolour(clip, target) for clip, target in zip(clips, targets)]
    results["VAE edit ceiling (true recolour, encode/decode)"] = {
        **score_edit(decode(pipe, encode(pipe, recoloured)), clips, targets), "seconds": round(time.time() - t0, 1)}

    common = dict(num_inference_steps=steps, max_sequence_length=text_length, height=toy_world.HEIGHT,
                  width=toy_world.WIDTH, num_frames=toy_world.NUM_FRAMES, output_type="np")
    attention_kwargs = {"reference_weight": args.reference_weight} if args.reference_weight != 1.0 else None

    def chunks():
        for start in range(0, len(clips), args.batch):
            yield slice(start, start + args.batch)

    def edit_negative(part):
        # Guiding away from the source caption rather than from "" changes only what the captions disagree on.
        return sources[part] if args.edit_negative == "source" else None

    def our_mode(name, invert_kwargs, reference_mode, edit_guidance=guidance, edit_callback=None):
        start_time = time.time()
        recon, edit = [], []
        for part in chunks():
            inv = pipe.invert(latents=latents[part], prompt=sources[part], num_inference_steps=steps,
                              max_sequence_length=text_length, **invert_kwargs)
            reference = {}
            if reference_mode:
                reference = dict(reference_latents=inv.trajectory, reference_timesteps=inv.timesteps,
                                 reference_prompt=sources[part], reference_mode=reference_mode,
                                 attention_kwargs=attention_kwargs)
            recon.append(pipe(prompt=sources[part], guidance_scale=1.0, latents=inv.trajectory[0],
                              **reference, **common).frames)
            edit.append(pipe(prompt=edits[part], negative_prompt=edit_negative(part), guidance_scale=edit_guidance,
                             latents=inv.trajectory[0], callback_on_step_end=edit_callback, **reference,
                             **common).frames)
        recon, edit = toy_world.to_uint8(np.concatenate(recon)), toy_world.to_uint8(np.concatenate(edit))
        results[name] = {**score_reconstruction(recon, clips), **score_edit(edit, clips, targets),
                         "seconds": round(time.time() - start_time, 1)}
        print(f"{name}: {time.time() - start_time:.0f} s", file=sys.stderr, flush=True)
        return recon, edit

    if not args.only_masks:
        our_mode("plain inversion", {}, None)
        if "fixed_point_iterations" in inspect.signature(pipe.invert).parameters:
            our_mode(f"refined inversion ({args.fixed_point_iterations} fixed-point iterations)",
                     {"fixed_point_iterations": args.fixed_point_iterations}, None)
            if args.refined_reference:
                our_mode("refined inversion + shared reference",
                         {"fixed_point_iterations": args.fixed_point_iterations}, "shared")
        our_mode("reference, shared", {}, "shared")
        our_mode("reference, paired", {}, "paired")
        early, late = args.ramped_guidance
        our_mode(f"reference, shared, guidance {early:g} then {late:g} from {args.ramp_from:.0%} of the steps", {},
                 "shared", edit_guidance=early,
                 edit_callback=GuidanceScaleCallback(guidance_scale=late, cutoff_step_ratio=args.ramp_from))

        # The published recipe, rebuilt from the pipeline's pieces.
        start_time = time.time()
        recon, edit = [], []
        for part in chunks():
            trajectory = published_inversion(pipe, latents[part], steps, guidance, text_length)
            generator = torch.Generator().manual_seed(args.seed)
            recon.append(pipe(prompt=sources[part], guidance_scale=guidance, generator=generator,
                              reference_latents=trajectory, reference_mode="paired", **common).frames)
            generator = torch.Generator().manual_seed(args.seed)
            edit.append(pipe(prompt=edits[part], guidance_scale=guidance, generator=generator,
                             reference_latents=trajectory, reference_mode="paired", **common).frames)
        recon, edit = toy_world.to_uint8(np.concatenate(recon)), toy_world.to_uint8(np.concatenate(edit))
        results["published recipe"] = {**score_reconstruction(recon, clips), **score_edit(edit, clips, targets),
                                        "seconds": round(time.time() - start_time, 1)}
    if args.masks:
        mask_rows(pipe, args, clips, sources, edits, targets, common, results)

    report = {"checkpoint": args.checkpoint, "clips": len(clips), "split": args.split, "seed": args.seed,
              "steps": steps, "edit_guidance": guidance, "reference_weight": args.reference_weight,
              "edit_negative": args.edit_negative, "mask_threshold": args.mask_threshold,
              "mask_feather": args.mask_feather, "mask_latent_dilation": args.mask_latent_dilation,
              "source_captions": sources, "edit_captions": edits, "modes": results}
    return report


def mask_rows(pipe, args, clips, sources, edits, targets, common, results):
    """Local edits: the true and the automatic mask, latent blending alone and with paste-back, in three modes."""
    start_time = time.time()
    # The inversion records the automatic masks on its own forward passes: each clip's colour and shape words.
    inversions = []
    for start in range(0, len(clips), args.batch):
        part = clips[start : start + args.batch]
        inversions.append(pipe.invert(
            video=np.stack([clip.frames for clip in part]), prompt=[clip.caption for clip in part],
            num_inference_steps=args.steps, height=toy_world.HEIGHT, width=toy_world.WIDTH,
            max_sequence_length=common["max_sequence_length"], mask_words=[[clip.colour, clip.shape] for clip in part],
            mask_threshold=args.mask_threshold))
    inversion_seconds = time.time() - start_time
    automatic = torch.cat([inv.mask for inv in inversions]).numpy()
    true = np.stack([clip.masks for clip in clips])
    ious = [float((a & t).sum() / (a | t).sum()) for a, t in zip(automatic, true)]
    print(f"automatic masks: mean IoU {np.mean(ious):.3f} ({inversion_seconds:.0f} s)", file=sys.stderr, flush=True)
    trajectory = torch.cat([inv.trajectory for inv in inversions], dim=1)
    source_latents = torch.cat([inv.latents for inv in inversions])
    early, late = args.ramped_guidance
    modes = [("shared", "shared", args.guidance, None),
             (f"shared, guidance {early:g} then {late:g}", "shared", early,
              GuidanceScaleCallback(guidance_scale=late, cutoff_step_ratio=args.ramp_from)),
             ("paired", "paired", args.guidance, None)]
    for mask_name, masks, iou in (("true mask", true, None), ("automatic mask", automatic, ious)):
        for mode_name, reference_mode, guidance_scale, callback in modes:
            for paste_back in (False, True):
                name = f"{mask_name}{' + paste-back' if paste_back else ''}, {mode_name}"
                row_start = time.time()
                edit = []
                for start in range(0, len(clips), args.batch):
                    part = slice(start, start + args.batch)
                    edit.append(pipe(
                        prompt=edits[part], negative_prompt=sources[part] if args.edit_negative == "source" else None,
                        guidance_scale=guidance_scale, callback_on_step_end=callback,
                        latents=trajectory[0, part], reference_latents=trajectory[:, part],
                        reference_prompt=sources[part], reference_mode=reference_mode, mask=masks[part],
                        source_latents=source_latents[part], mask_feather=args.mask_feather,
                        mask_latent_dilation=args.mask_latent_dilation, paste_back=paste_back,
                        source_video=np.stack([clip.frames for clip in clips[part]]) if paste_back else None,
                        **common).frames)
                edit = toy_world.to_uint8(np.concatenate(edit))
                results[name] = {**score_edit(edit, clips, targets), "seconds": round(time.time() - row_start, 1)}
                if iou is not None:
                    results[name]["mask_iou"] = float(np.mean(iou))
                print(f"{name}: {time.time() - row_start:.0f} s", file=sys.stderr, flush=True)


def markdown(report: dict) -> str:
    lines = [
        (f"{report['clips']} held-out toy clips, {report['steps']} steps, edit guidance {report['edit_guidance']}, "
         f"negative prompt of our edits: {report['edit_negative']}, reference weight {report['reference_weight']}"),
        "",
        ("| mode | recon PSNR (dB) | recon SSIM | colour-edit success | centroid error (px) | background PSNR (dB) "
         "| background SSIM | mask IoU | time (s) |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    columns = [("recon_psnr", "{:.2f}"), ("recon_ssim", "{:.3f}"), ("edit_success", "{:.0%}"),
               ("centroid_error_px", "{:.2f}"), ("background_psnr", "{:.2f}"), ("background_ssim", "{:.3f}"),
               ("mask_iou", "{:.2f}"), ("seconds", "{:.0f}")]
    for name, row in report["modes"].items():
        cells = [style.format(row[key]) if key in row else "-" for key, style in columns]
        if row.get("background_exact"):  # clips whose background is exactly the source's have no finite PSNR
            exact = f"{row['background_exact']}/{report['clips']} exact"
            cells[4] = f"{cells[4]} ({exact})" if np.isfinite(row["background_psnr"]) else f"exact ({exact})"
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=os.path.join(REPO_ROOT, "toy", "checkpoint"))
    parser.add_argument("--clips", type=int, default=50)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--guidance", type=float, default=4.0, help="guidance of edits and of the published recipe")
    parser.add_argument("--reference-weight", type=float, default=1.0)
    parser.add_argument("--edit-negative", default="source", choices=["source", "empty"],
                        help="negative prompt of our modes' edits: the source caption (default) or empty; the "
                        "published recipe always uses an empty one")
    parser.add_argument("--ramped-guidance", type=float, nargs=2, default=(2.0, 10.0), metavar=("EARLY", "LATE"),
                        help="edit guidance of the ramped shared row: EARLY, then LATE from --ramp-from on")
    parser.add_argument("--ramp-from", type=float, default=0.5, help="fraction of the steps where LATE starts")
    parser.add_argument("--fixed-point-iterations", type=int, default=3)
    parser.add_argument("--refined-reference", action="store_true", help="also run refined inversion + shared")
    parser.add_argument("--no-masks", dest="masks", action="store_false", help="skip the local-edit (mask) rows")
    parser.add_argument("--mask-threshold", type=float, default=0.5, help="threshold of the automatic mask")
    parser.add_argument("--mask-feather", type=int, default=2, help="feather (pixels) of the masks")
    parser.add_argument("--mask-latent-dilation", type=int, default=1, help="latent cells added around the mask")
    parser.add_argument("--only-masks", action="store_true", help="run only the ceilings and the mask rows")
    parser.add_argument("--split", default="held_out", choices=["held_out", "train", "all"])
    parser.add_argument("--seed", type=int, default=12345, help="clip seed (training used seeds 0-3)")
    parser.add_argument("--batch", type=int, default=25, help="clips per pipeline call")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is faster on 2 shared cores)")
    parser.add_argument("--json", default=os.path.join(REPO_ROOT, ".benchmarks", "edit_quality.json"))
    args = parser.parse_args(argv)

    report = run(args)
    table = markdown(report)
    print(table)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({**report, "table": table}, f, indent=2)
        print(f"\nwrote {args.json}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
