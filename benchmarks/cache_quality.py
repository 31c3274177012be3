"""What step caches and 8-bit weights cost on the toy world: block evaluations skipped and edit quality.

    python benchmarks/cache_quality.py                       # 8 held-out clips, 50 steps, toy/checkpoint/
    python benchmarks/cache_quality.py --clips 4 --steps 25 --json /tmp/cache_quality.json

Every clip is inverted once without a cache (the pipeline never caches `invert()` unless asked), then
reconstructed (source caption, guidance 1) and colour-edited (another colour, guidance 4, negative prompt the source
caption) with shared reference attention to its trajectory, one clip per call as an edit runs: a cache decides to
skip from the whole call's batch. Rows: no cache; FirstBlockCache per `--fbc-thresholds`; TaylorSeer per
`--taylorseer-intervals`; MagCache per `--mag-thresholds` with magnitude ratios calibrated here on the first clip's
edit; fp8 weight storage and torchao int8 weight-only (transformer and T5, when torchao is installed), each inverting
and editing with its own weights. Scored with `benchmarks/edit_quality.py`'s functions: colour-edit success,
centroid error, background PSNR, reconstruction PSNR; `skipped` is the fraction of transformer block evaluations the
edits skipped (TaylorSeer predicts whole blocks between full steps); `PSNR vs plain` compares
each row's edits with the uncached bf16/fp32 run's. Last, the round trip with caching allowed during a refined
inversion (`--fixed-point-iterations`): relative error of the regenerated clean latents against the source's, with
and without the cache. A benchmark, not a test: counts and quality, no timings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from edit_quality import REPO_ROOT, decode, encode, score_edit, score_reconstruction  # noqa: E402

from cogvideox_ddim_inversion.cogvideox_ddim_memory import (  # noqa: E402
    BlockEvaluationCounter,
    MemoryOptions,
    apply_memory_options,
    cache_disabled,
    calibrate_mag_ratios,
    inversion_cache,
    quantization_config,
    torchao_version,
)
from cogvideox_ddim_inversion.pipeline_cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline  # noqa: E402
from cogvideox_ddim_inversion.toy import world as toy_world  # noqa: E402


def load(checkpoint, options: MemoryOptions | None = None, steps: int = 50):
    options = options or MemoryOptions(offload="none")
    pipe = CogVideoXDDIMInversionPipeline.from_pretrained(checkpoint, dtype=torch.float32,
                                                          quantization_config=quantization_config(options))
    pipe.set_progress_bar_config(disable=True)
    apply_memory_options(pipe, options, "cpu", num_inference_steps=steps)
    return pipe


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    clips = toy_world.make_clips(args.clips, seed=args.seed, split="held_out")
    colours = list(toy_world.COLOURS)
    targets = [colours[(colours.index(c.colour) + 1 + i % 3) % len(colours)] for i, c in enumerate(clips)]
    sources = [c.caption for c in clips]
    edits = [toy_world.caption(c.shape, t, c.direction, c.background) for c, t in zip(clips, targets)]
    steps = args.steps

    base = load(args.checkpoint, steps=steps)
    text_length = base.transformer.config.max_text_seq_length
    latents = encode(base, clips)
    common = dict(num_inference_steps=steps, max_sequence_length=text_length, height=toy_world.HEIGHT,
                  width=toy_world.WIDTH, num_frames=toy_world.NUM_FRAMES, output_type="latent")

    def invert_all(pipe, **kwargs):
        with inversion_cache(pipe.transformer):
            return [pipe.invert(latents=latents[i : i + 1], prompt=sources[i], num_inference_steps=steps,
                                max_sequence_length=text_length, **kwargs) for i in range(len(clips))]

    def reference(inv, i):
        return dict(latents=inv.trajectory[0], reference_latents=inv.trajectory, reference_timesteps=inv.timesteps,
                    reference_prompt=sources[i], reference_mode="shared")

    def edit_clip(pipe, inv, i):
        return pipe(prompt=edits[i], negative_prompt=sources[i], guidance_scale=args.guidance, **reference(inv, i),
                    **common).frames

    def row(pipe, inversions):
        recon, edited = [], []
        with BlockEvaluationCounter(pipe.transformer) as counter:
            for i, inv in enumerate(inversions):
                edited.append(edit_clip(pipe, inv, i))
        for i, inv in enumerate(inversions):
            recon.append(pipe(prompt=sources[i], guidance_scale=1.0, **reference(inv, i), **common).frames)
        recon_video, edit_video = decode(base, torch.cat(recon)), decode(base, torch.cat(edited))
        return ({**score_reconstruction(recon_video, clips), **score_edit(edit_video, clips, targets),
                 "block_evaluations": counter.evaluations, "attention_evaluations": counter.attention_evaluations},
                edit_video)

    results = {}
    inversions = invert_all(base)
    plain, plain_video = row(base, inversions)
    results["no cache"] = plain
    print("no cache done", file=sys.stderr, flush=True)

    def add(name, pipe, invs):
        scores, video = row(pipe, invs)
        scores["skipped"] = 1 - scores["block_evaluations"] / plain["block_evaluations"]
        scores["psnr_vs_plain"] = float(np.mean([toy_world.psnr(a, b) for a, b in zip(video, plain_video)]))
        results[name] = scores
        print(f"{name} done", file=sys.stderr, flush=True)

    for threshold in args.fbc_thresholds:
        pipe = load(args.checkpoint, MemoryOptions(offload="none", cache="first-block", cache_threshold=threshold))
        add(f"first-block cache, threshold {threshold:g}", pipe, inversions)
    for interval in args.taylorseer_intervals:
        pipe = load(args.checkpoint, MemoryOptions(offload="none", cache="taylorseer", cache_interval=interval))
        add(f"TaylorSeer, interval {interval}", pipe, inversions)
    if args.mag_thresholds:
        ratios = calibrate_mag_ratios(base, steps, prompt=edits[0], negative_prompt=sources[0],
                                      guidance_scale=args.guidance, **reference(inversions[0], 0),
                                      **{k: v for k, v in common.items() if k != "num_inference_steps"})
        results["_mag_ratios"] = ratios
        for threshold in args.mag_thresholds:
            options = MemoryOptions(offload="none", cache="mag", cache_threshold=threshold, mag_ratios=tuple(ratios))
            add(f"MagCache, threshold {threshold:g}", load(args.checkpoint, options, steps), inversions)

    fp8 = load(args.checkpoint, MemoryOptions(offload="none", weights="fp8", quantize_text_encoder=True))
    add("fp8 weights (transformer + T5)", fp8, invert_all(fp8))
    if torchao_version() is not None:
        int8 = load(args.checkpoint, MemoryOptions(offload="none", quantize="int8", quantize_text_encoder=True))
        add("torchao int8 weight-only (transformer + T5)", int8, invert_all(int8))

    # The round trip when a cache is allowed during a refined inversion.
    roundtrip = {}
    for name, threshold in (("no cache", None), *((f"first-block {t:g}", t) for t in args.fbc_thresholds)):
        options = MemoryOptions(offload="none", cache=None if threshold is None else "first-block",
                                cache_threshold=threshold, cache_inversion=threshold is not None)
        pipe = load(args.checkpoint, options)
        errors = []
        with BlockEvaluationCounter(pipe.transformer) as counter:
            for i in range(len(clips)):
                with inversion_cache(pipe.transformer, allowed=options.cache_inversion):
                    inv = pipe.invert(latents=latents[i : i + 1], prompt=sources[i], num_inference_steps=steps,
                                      max_sequence_length=text_length,
                                      fixed_point_iterations=args.fixed_point_iterations)
                with cache_disabled(pipe.transformer):  # regenerate exactly: only the inversion may be cached
                    regenerated = pipe(prompt=sources[i], guidance_scale=1.0, latents=inv.trajectory[0],
                                       **common).frames
                source = latents[i : i + 1]
                errors.append(((regenerated - source).norm() / source.norm()).item())
        roundtrip[name] = {"relative_latent_error": float(np.mean(errors)), "block_evaluations": counter.evaluations}
        print(f"round trip {name} done", file=sys.stderr, flush=True)

    return {"checkpoint": args.checkpoint, "clips": len(clips), "steps": steps, "guidance": args.guidance,
            "fixed_point_iterations": args.fixed_point_iterations, "rows": results, "roundtrip": roundtrip}


def markdown(report: dict) -> str:
    lines = [f"{report['clips']} held-out toy clips, {report['steps']} steps, edit guidance {report['guidance']}, "
             "shared reference, one clip per call", "",
             "| row | skipped | colour-edit success | centroid error (px) | background PSNR (dB) | recon PSNR (dB) "
             "| edit PSNR vs plain (dB) |", "|---|---|---|---|---|---|---|"]
    for name, row in report["rows"].items():
        if name.startswith("_"):
            continue
        skipped = "-" if "skipped" not in row else f"{row['skipped']:.0%} ({1 / max(1 - row['skipped'], 1e-9):.2f}x)"
        vs_plain = f"{row['psnr_vs_plain']:.2f}" if "psnr_vs_plain" in row else "-"
        lines.append(f"| {name} | {skipped} | {row['edit_success']:.0%} | {row['centroid_error_px']:.2f} | "
                     f"{row['background_psnr']:.2f} | {row['recon_psnr']:.2f} | {vs_plain} |")
    lines += ["", f"Round trip of a refined inversion ({report['fixed_point_iterations']} fixed-point iterations) "
              "regenerated without a cache: relative error of the clean latents", "",
              "| cache during inversion | relative latent error | block evaluations |", "|---|---|---|"]
    for name, row in report["roundtrip"].items():
        lines.append(f"| {name} | {row['relative_latent_error']:.4f} | {row['block_evaluations']} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=os.path.join(REPO_ROOT, "toy", "checkpoint"))
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--fbc-thresholds", type=float, nargs="*", default=[0.05, 0.1, 0.2])
    parser.add_argument("--taylorseer-intervals", type=int, nargs="*", default=[2, 3])
    parser.add_argument("--mag-thresholds", type=float, nargs="*", default=[0.06, 0.12])
    parser.add_argument("--fixed-point-iterations", type=int, default=3)
    parser.add_argument("--seed", type=int, default=12345, help="clip seed (training used seeds 0-3)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=os.path.join(REPO_ROOT, ".benchmarks", "cache_quality.json"))
    args = parser.parse_args(argv)
    report = run(args)
    table = markdown(report)
    print(table)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({**report, "table": table}, f, indent=2)
    return report


if __name__ == "__main__":
    main()
