"""Exact and partial-depth inversion: fixed-point refinement, strength, every spacing and scheduler class."""

import logging

import pytest
import torch
from conftest import TEXT_LENGTH
from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler, DDIMScheduler

from cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline
from cogvideox_ddim_inversion import cogvideox_ddim_sampling as sampling
from cogvideox_ddim_inversion.testing.analytic_denoiser import GaussianVDenoiser
from cogvideox_ddim_inversion.testing.tiny_checkpoint import build_components


def analytic_pipeline(variant="cogvideox-5b", spacing="trailing", scheduler_class=CogVideoXDDIMScheduler):
    components = build_components(variant)
    scheduler = CogVideoXDDIMScheduler.from_config(components["scheduler"].config, timestep_spacing=spacing)
    scheduler = scheduler_class.from_config(scheduler.config)
    generator = torch.Generator().manual_seed(0)
    mean, std = torch.rand(16, generator=generator) - 0.5, 0.5 + torch.rand(16, generator=generator)
    denoiser = GaussianVDenoiser(components["transformer"].config, scheduler.alphas_cumprod, mean, std)
    pipe = CogVideoXDDIMInversionPipeline(**{**components, "scheduler": scheduler, "transformer": denoiser})
    pipe.set_progress_bar_config(disable=True)
    return pipe, denoiser.sample_data((1, 3, 16, 8, 12), generator)


def round_trip(pipe, data, steps=50, strength=1.0, reference=False, **invert_kwargs):
    inv = pipe.invert(
        latents=data, num_inference_steps=steps, strength=strength, max_sequence_length=TEXT_LENGTH, **invert_kwargs
    )
    extra = {"reference_latents": inv.trajectory, "reference_timesteps": inv.timesteps} if reference else {}
    regenerated = pipe(
        prompt="",
        latents=inv.trajectory[0],
        guidance_scale=1.0,
        num_inference_steps=steps,
        strength=strength,
        output_type="latent",
        max_sequence_length=TEXT_LENGTH,
        **extra,
    ).frames
    error = ((regenerated - data).norm() / data.norm()).item()
    return error, inv.model_evaluations / len(inv.timesteps), inv


@pytest.mark.parametrize("variant", ["cogvideox-5b", "cogvideox-2b"])  # snr_shift_scale 1.0 and 3.0
def test_refined_inversion_is_exact_within_five_evaluations_per_step(variant):
    pipe, data = analytic_pipeline(variant)
    plain, plain_evaluations, _ = round_trip(pipe, data)
    refined, evaluations, _ = round_trip(pipe, data, fixed_point_iterations=4)
    print(variant, f"plain {plain:.2e} at {plain_evaluations} eval/step, refined {refined:.2e} at {evaluations:.2f}")
    assert plain_evaluations == 1 and plain < 0.025
    assert refined <= 1e-4 and evaluations <= 5
    # the error falls with every refinement until float32 noise
    errors = [round_trip(pipe, data, fixed_point_iterations=k, fixed_point_tolerance=None)[0] for k in (1, 2)]
    assert plain > errors[0] > errors[1]


def test_naive_iteration_needs_more_evaluations_than_anderson(monkeypatch):
    pipe, data = analytic_pipeline("cogvideox-5b")
    anderson = round_trip(pipe, data, fixed_point_iterations=2, fixed_point_tolerance=None)[0]
    solve = sampling.solve_inverse_step
    monkeypatch.setattr(sampling, "solve_inverse_step", lambda *args, **kwargs: solve(*args, **kwargs, history=0))
    naive = round_trip(pipe, data, fixed_point_iterations=2, fixed_point_tolerance=None)[0]
    assert anderson < naive / 10


def test_both_degenerate_ends_are_inverted_exactly():
    """Refined, the forward step undoes each end step: into alpha_cumprod = 1 (the clean latents) and from
    alpha_cumprod = 0 (zero terminal SNR)."""
    pipe, data = analytic_pipeline("cogvideox-2b")
    _, _, inv = round_trip(pipe, data, steps=10, fixed_point_iterations=8, fixed_point_tolerance=None)
    scheduler = pipe.ddim_scheduler()
    scheduler.set_timesteps(10)
    assert scheduler.alphas_cumprod[int(inv.timesteps[0])] == 0 and scheduler.final_alpha_cumprod == 1
    for start, target, t in (
        (inv.trajectory[-1], data, inv.timesteps[-1]),
        (inv.trajectory[0], inv.trajectory[1], inv.timesteps[0]),
    ):
        model_output = pipe.transformer(start, timestep=t.expand(1))[0]
        landed = scheduler.step(model_output, t, start, return_dict=False)[0].float()
        torch.testing.assert_close(landed, target, rtol=0, atol=1e-5)


@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
@pytest.mark.parametrize("variant", ["cogvideox-5b", "cogvideox-2b"])
def test_every_timestep_spacing(spacing, variant):
    pipe, data = analytic_pipeline(variant, spacing)
    plain, _, inv = round_trip(pipe, data)
    scheduler = pipe.ddim_scheduler()
    scheduler.set_timesteps(50)
    assert torch.equal(inv.timesteps.cpu(), scheduler.timesteps)
    assert plain < 0.025
    assert round_trip(pipe, data, fixed_point_iterations=4)[0] <= 1e-4


@pytest.mark.parametrize("scheduler_class", [CogVideoXDDIMScheduler, CogVideoXDPMScheduler, DDIMScheduler])
def test_every_scheduler_class(scheduler_class, caplog):
    pipe, data = analytic_pipeline("cogvideox-2b", scheduler_class=scheduler_class)
    with caplog.at_level(logging.WARNING):
        refined, _, _ = round_trip(pipe, data, reference=True, fixed_point_iterations=4)
    substituted = "cannot be inverted step by step" in caplog.text
    assert substituted == (scheduler_class is CogVideoXDPMScheduler)
    assert isinstance(pipe.ddim_scheduler(), (CogVideoXDDIMScheduler, DDIMScheduler))
    # the substitute keeps the noise schedule (SNR shift and zero-SNR rescaling) of the pipeline's scheduler
    torch.testing.assert_close(pipe.ddim_scheduler().alphas_cumprod, pipe.scheduler.alphas_cumprod)
    assert refined <= 1e-4


def test_strength_half():
    pipe, data = analytic_pipeline("cogvideox-5b")
    plain, _, inv = round_trip(pipe, data, strength=0.5)
    pipe.scheduler.set_timesteps(50)
    assert len(inv.trajectory) == 25 and torch.equal(inv.timesteps.cpu(), pipe.scheduler.timesteps[25:])
    assert plain < 0.025
    refined, evaluations, _ = round_trip(pipe, data, strength=0.5, fixed_point_iterations=4)
    assert refined <= 1e-4 and evaluations <= 5
    # reference-guided regeneration at strength 0.5 lines up with the shortened trajectory
    assert round_trip(pipe, data, strength=0.5, reference=True, fixed_point_iterations=4)[0] <= 1e-4


def test_strength_mismatches_are_refused():
    pipe, data = analytic_pipeline("cogvideox-5b")
    full = pipe.invert(latents=data, num_inference_steps=10, max_sequence_length=TEXT_LENGTH)
    half = pipe.invert(latents=data, num_inference_steps=10, strength=0.5, max_sequence_length=TEXT_LENGTH)
    call = dict(
        prompt="", guidance_scale=1.0, num_inference_steps=10, output_type="latent", max_sequence_length=TEXT_LENGTH
    )
    with pytest.raises(ValueError, match="has 10 steps but this call runs 5"):
        pipe(latents=full.trajectory[0], reference_latents=full.trajectory, strength=0.5, **call)
    with pytest.raises(ValueError, match="has 5 steps but this call runs 10"):
        pipe(latents=half.trajectory[0], reference_latents=half.trajectory, **call)
    with pytest.raises(ValueError, match="pass `latents` at that noise level"):
        pipe(reference_latents=half.trajectory, strength=0.5, **call)
    with pytest.raises(ValueError, match=r"must be in \(0, 1\]"):
        pipe.invert(latents=data, strength=1.5, max_sequence_length=TEXT_LENGTH)
    with pytest.raises(ValueError, match="keeps no step"):
        pipe.invert(latents=data, num_inference_steps=10, strength=0.05, max_sequence_length=TEXT_LENGTH)
    with pytest.raises(ValueError, match="fixed_point_iterations"):
        pipe.invert(latents=data, fixed_point_iterations=-1, max_sequence_length=TEXT_LENGTH)
