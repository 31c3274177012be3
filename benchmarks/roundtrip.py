"""Round-trip error of DDIM inversion on CogVideoX schedules, with a Bayes-optimal denoiser whose answer is exact.

For per-channel Gaussian latents the deterministic sampler is the exact probability-flow map, so inverting clean
latents and regenerating them with guidance 1 should return them; what is left is the inversion's error. Compares:

- published: the published recipe's inverse scheduler, `DDIMInverseScheduler(**scheduler.config)` (drops
  `snr_shift_scale`), then the pipeline's forward sampler;
- plain: `invert()` (the pipeline's own DDIM step, matched schedule, 1 evaluation per step);
- naive-k: k plain fixed-point refinements per step (k + 1 evaluations);
- anderson-k: k Anderson-accelerated refinements per step (k + 1 evaluations);
- default: `fixed_point_iterations=4` with the default tolerance (early stop).

Usage: python benchmarks/roundtrip.py [--plot docs/roundtrip.png] [--json out.json]
"""

import argparse
import functools
import json
import time

import torch
from diffusers import DDIMInverseScheduler

from cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline
from cogvideox_ddim_inversion import cogvideox_ddim_sampling as sampling
from cogvideox_ddim_inversion.cogvideox_ddim_reference import guided_prediction
from cogvideox_ddim_inversion.testing.analytic_denoiser import GaussianVDenoiser
from cogvideox_ddim_inversion.testing.tiny_checkpoint import build_components


SCHEDULES = {"5B (snr_shift_scale 1.0)": "cogvideox-5b", "2B (snr_shift_scale 3.0)": "cogvideox-2b"}
LATENT_SHAPE = (1, 13, 16, 8, 12)
TEXT_LENGTH = 16


def analytic_pipeline(variant):
    components = build_components(variant)
    components["transformer"] = GaussianVDenoiser.for_pipeline_components(components)
    pipe = CogVideoXDDIMInversionPipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    data = pipe.transformer.sample_data(LATENT_SHAPE, torch.Generator().manual_seed(1))
    return pipe, data


def regenerate(pipe, start, steps):
    return pipe(
        prompt="",
        latents=start,
        guidance_scale=1.0,
        num_inference_steps=steps,
        output_type="latent",
        max_sequence_length=TEXT_LENGTH,
    ).frames


def relative_error(pipe, data, start, steps):
    return ((regenerate(pipe, start, steps) - data).norm() / data.norm()).item()


def published_round_trip(pipe, data, steps):
    """The published recipe's inversion: DDIMInverseScheduler built from the config, stepping forward in time."""
    inverse = DDIMInverseScheduler(**pipe.scheduler.config)
    inverse.set_timesteps(steps)
    latents = data
    for t in inverse.timesteps:
        model_output = guided_prediction(pipe.transformer, latents, None, t, sample_rows=1)
        latents = inverse.step(model_output, t, latents).prev_sample.float()
    return relative_error(pipe, data, latents, steps), 1.0


def our_round_trip(pipe, data, steps, iterations=0, tolerance=None, history=3):
    solve = sampling.solve_inverse_step
    sampling.solve_inverse_step = functools.partial(solve, history=history)
    try:
        inv = pipe.invert(
            latents=data,
            num_inference_steps=steps,
            fixed_point_iterations=iterations,
            fixed_point_tolerance=tolerance,
            max_sequence_length=TEXT_LENGTH,
        )
    finally:
        sampling.solve_inverse_step = solve
    return relative_error(pipe, data, inv.trajectory[0], steps), inv.model_evaluations / steps


def run(steps_list=(10, 25, 50), iterations=(1, 2, 3, 4, 5)):
    rows = []
    for schedule, variant in SCHEDULES.items():
        pipe, data = analytic_pipeline(variant)
        for steps in steps_list:
            recipes = {
                "published": lambda: published_round_trip(pipe, data, steps),
                "plain": lambda: our_round_trip(pipe, data, steps),
            }
            for k in iterations:
                recipes[f"naive-{k}"] = functools.partial(our_round_trip, pipe, data, steps, k, None, 0)
                recipes[f"anderson-{k}"] = functools.partial(our_round_trip, pipe, data, steps, k, None, 3)
            recipes["default (4, tol 1e-5)"] = functools.partial(our_round_trip, pipe, data, steps, 4, 1e-5, 3)
            for recipe, measure in recipes.items():
                error, evaluations = measure()
                rows.append(
                    {
                        "schedule": schedule,
                        "steps": steps,
                        "recipe": recipe,
                        "error": error,
                        "evaluations_per_step": evaluations,
                    }
                )
    return rows


def print_table(rows, steps_list):
    recipes = list(dict.fromkeys(row["recipe"] for row in rows))
    schedules = list(dict.fromkeys(row["schedule"] for row in rows))
    header = (
        "| recipe | eval/step | "
        + " | ".join(f"{s.split(' ')[0]} {n} steps" for s in schedules for n in steps_list)
        + " |"
    )
    print(header)
    print("|" + "---|" * (2 + len(schedules) * len(steps_list)))
    for recipe in recipes:
        cells, evaluations = [], []
        for schedule in schedules:
            for steps in steps_list:
                row = next(
                    r for r in rows if r["recipe"] == recipe and r["schedule"] == schedule and r["steps"] == steps
                )
                cells.append(f"{row['error']:.2e}")
                evaluations.append(row["evaluations_per_step"])
        spread = (
            f"{min(evaluations):.2f}"
            if max(evaluations) - min(evaluations) < 0.005
            else f"{min(evaluations):.2f}-{max(evaluations):.2f}"
        )
        print(f"| {recipe} | {spread} | " + " | ".join(cells) + " |")


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from diffusers import CogVideoXDDIMScheduler

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for schedule, variant in SCHEDULES.items():
        scheduler = CogVideoXDDIMScheduler.from_config(build_components(variant)["scheduler"].config)
        inverse = DDIMInverseScheduler(**scheduler.config)
        line = left.plot(scheduler.alphas_cumprod.numpy(), label=f"{schedule.split(' ')[0]}: pipeline's schedule")
        left.plot(
            inverse.alphas_cumprod.numpy(),
            "--",
            color=line[0].get_color(),
            label=f"{schedule.split(' ')[0]}: DDIMInverseScheduler(**config)",
        )
    left.set(xlabel="timestep", ylabel="alphas_cumprod", title="Schedule mismatch of the published recipe")
    left.legend(fontsize=8)

    for schedule in SCHEDULES:
        for family, style in (("naive", "o--"), ("anderson", "s-")):
            points = sorted(
                (r["evaluations_per_step"], r["error"])
                for r in rows
                if r["schedule"] == schedule
                and r["steps"] == 50
                and (r["recipe"] == "plain" or r["recipe"].startswith(family + "-"))
            )
            right.semilogy(*zip(*points), style, label=f"{schedule.split(' ')[0]} {family}")
        published = next(
            r for r in rows if r["schedule"] == schedule and r["steps"] == 50 and r["recipe"] == "published"
        )
        right.semilogy([1], [published["error"]], "x", markersize=10, label=f"{schedule.split(' ')[0]} published")
    right.axhline(1e-4, color="gray", linewidth=0.8)
    right.set(
        xlabel="model evaluations per step",
        ylabel="relative round-trip error (50 steps)",
        title="Round trip with a Bayes-optimal denoiser",
    )
    right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    print(f"plot: {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", default=None, help="write the figure (needs matplotlib)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    start = time.perf_counter()
    steps_list = (10, 25, 50)
    rows = run(steps_list)
    print(
        f"Relative latent round-trip error, latents {list(LATENT_SHAPE)}, analytic denoiser "
        f"({time.perf_counter() - start:.0f} s)\n"
    )
    print_table(rows, steps_list)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
