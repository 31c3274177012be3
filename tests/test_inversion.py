"""invert(): the inverse step matches the forward sampler (analytic denoiser round trips) and the trajectory lines up."""

import pytest
import torch
from by_hand import invert_by_hand
from conftest import TEXT_LENGTH
from diffusers import DDIMInverseScheduler

from cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline
from cogvideox_ddim_inversion import cogvideox_ddim_sampling as sampling
from cogvideox_ddim_inversion.testing.analytic_denoiser import GaussianVDenoiser
from cogvideox_ddim_inversion.testing.tiny_checkpoint import build_components


LATENT_SHAPE = (1, 3, 16, 8, 12)  # [B, F, C, H, W] of the tiny models' native 9x64x96 video


def analytic_pipeline(variant: str):
    """A pipeline whose transformer is the Bayes-optimal denoiser for per-channel Gaussian latents."""
    components = build_components(variant)
    generator = torch.Generator().manual_seed(0)
    mean = torch.rand(16, generator=generator) - 0.5
    std = 0.5 + torch.rand(16, generator=generator)
    components["transformer"] = GaussianVDenoiser(
        components["transformer"].config, components["scheduler"].alphas_cumprod, mean, std
    )
    pipe = CogVideoXDDIMInversionPipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    data = components["transformer"].sample_data(LATENT_SHAPE, generator)
    return pipe, data


def round_trip_error(pipe, data, steps: int) -> float:
    inv = pipe.invert(latents=data, num_inference_steps=steps, max_sequence_length=TEXT_LENGTH)
    regenerated = pipe(
        prompt="",
        latents=inv.trajectory[0],
        guidance_scale=1.0,
        num_inference_steps=steps,
        output_type="latent",
        max_sequence_length=TEXT_LENGTH,
    ).frames
    return ((regenerated - data).norm() / data.norm()).item()


@pytest.mark.parametrize("variant,snr_shift_scale", [("cogvideox-5b", 1.0), ("cogvideox-2b", 3.0)])
def test_round_trip_with_analytic_denoiser(variant, snr_shift_scale):
    pipe, data = analytic_pipeline(variant)
    assert pipe.scheduler.config.snr_shift_scale == snr_shift_scale
    errors = {steps: round_trip_error(pipe, data, steps) for steps in (10, 25, 50)}
    print(variant, {steps: f"{error:.2%}" for steps, error in errors.items()})
    assert errors[50] < 0.03
    assert errors[10] > errors[25] > errors[50]


def test_unshifted_inverse_schedule_breaks_the_2b_round_trip(monkeypatch):
    """The published recipe's `DDIMInverseScheduler(**config)` drops snr_shift_scale: on 2B the round trip fails."""
    pipe, data = analytic_pipeline("cogvideox-2b")
    unshifted = DDIMInverseScheduler(**pipe.scheduler.config).alphas_cumprod
    assert abs(unshifted[500].item() - pipe.scheduler.alphas_cumprod[500].item()) > 0.1

    original = sampling.ddim_alphas

    def unshifted_alphas(scheduler, timestep):
        alpha_t, alpha_s = original(scheduler, timestep)
        t, s = int(timestep), int(timestep) - 1000 // pipe.scheduler.num_inference_steps
        return unshifted[t].double(), (unshifted[s].double() if s >= 0 else alpha_s)

    monkeypatch.setattr(sampling, "ddim_alphas", unshifted_alphas)
    assert round_trip_error(pipe, data, 50) > 0.03  # the threshold of the round-trip test above


def test_trajectory_is_aligned_with_the_denoising_timesteps():
    """trajectory[i] is at the level of timesteps[i] (the forward sampler's own grid): made from trajectory[i + 1]
    (or the clean latents) by the DDIM inverse step to that level, written out by hand in tests/by_hand.py."""
    pipe, data = analytic_pipeline("cogvideox-5b")
    steps = 5
    inv = pipe.invert(latents=data, num_inference_steps=steps, max_sequence_length=TEXT_LENGTH)

    pipe.scheduler.set_timesteps(steps)
    assert torch.equal(inv.timesteps.cpu(), pipe.scheduler.timesteps)
    assert inv.trajectory.shape == (steps, *data.shape)
    assert torch.equal(inv.latents, data)
    expected = invert_by_hand(
        pipe, data, steps, model=lambda x, t: pipe.transformer(x, timestep=t.expand(1))[0].float()
    )
    torch.testing.assert_close(inv.trajectory, expected, rtol=1e-5, atol=1e-6)


def test_zero_terminal_snr_step_is_inverted_exactly():
    """The last inverse step goes into alpha_cumprod = 0. The forward step from there uses only the clean estimate,
    which the Bayes-optimal model gives exactly, so forward(trajectory[0]) must land on trajectory[1]; the plain
    noise form would instead return trajectory[1] unchanged."""
    for variant in ("cogvideox-5b", "cogvideox-2b"):
        pipe, data = analytic_pipeline(variant)
        inv = pipe.invert(latents=data, num_inference_steps=10, max_sequence_length=TEXT_LENGTH)
        t = inv.timesteps[0]
        assert pipe.scheduler.alphas_cumprod[int(t)] == 0
        assert torch.isfinite(inv.trajectory).all()
        assert (inv.trajectory[0] - inv.trajectory[1]).norm() > 1e-3 * inv.trajectory[1].norm()
        model_output = pipe.transformer(inv.trajectory[0], timestep=t.expand(1))[0]
        landed = pipe.scheduler.step(model_output, t, inv.trajectory[0], return_dict=False)[0].float()
        torch.testing.assert_close(landed, inv.trajectory[1], rtol=1e-4, atol=1e-5)


def test_inversion_runs_one_row_per_step_without_guidance_and_two_with():
    pipe, data = analytic_pipeline("cogvideox-5b")
    pipe.invert(latents=data, num_inference_steps=4, max_sequence_length=TEXT_LENGTH)
    assert [rows for rows, _ in pipe.transformer.calls] == [1, 1, 1, 1]
    # model evaluated at the target timestep of each inverse step, least noisy first
    assert [t for _, t in pipe.transformer.calls] == [249, 499, 749, 999]
    pipe.transformer.calls.clear()
    pipe.invert(latents=data, num_inference_steps=4, guidance_scale=6.0, max_sequence_length=TEXT_LENGTH)
    assert [rows for rows, _ in pipe.transformer.calls] == [2, 2, 2, 2]


def test_invert_rejects_both_or_neither_source():
    pipe, data = analytic_pipeline("cogvideox-5b")
    with pytest.raises(ValueError, match="exactly one of `video`"):
        pipe.invert(num_inference_steps=2)
    with pytest.raises(ValueError, match="exactly one of `video`"):
        pipe.invert(video=[data], latents=data, num_inference_steps=2)
    with pytest.raises(ValueError, match=r"\[B, F, C, H, W\]"):
        pipe.invert(latents=data[0], num_inference_steps=2)


def test_one_step_is_refused_and_non_finite_latents_are_not_decoded():
    """With 1 step the only timestep is the zero-terminal-SNR one (alpha_cumprod 0) and its forward step lands on
    alpha_cumprod 1: the inverse step's noise is (x_s - original) / sqrt(1 - 1), a NaN trajectory (a black edit)."""
    pipe, data = analytic_pipeline("cogvideox-5b")
    scheduler = pipe.ddim_scheduler()
    scheduler.set_timesteps(1)
    t = scheduler.timesteps[0]
    assert sampling.ddim_alphas(scheduler, t) == (0, 1)
    unguarded = sampling.inverse_step(scheduler, pipe.transformer(data, timestep=t.expand(1))[0], t, data)
    assert not torch.isfinite(unguarded).all()  # the root cause, which invert() now refuses up front
    pipe.transformer.calls.clear()
    with pytest.raises(ValueError, match=r"cannot be inverted.*`num_inference_steps` >= 2"):
        pipe.invert(latents=data, num_inference_steps=1, max_sequence_length=TEXT_LENGTH)
    assert pipe.transformer.calls == []
    two_steps = pipe.invert(latents=data, num_inference_steps=2, max_sequence_length=TEXT_LENGTH)
    assert torch.isfinite(two_steps.trajectory).all()

    with pytest.raises(FloatingPointError, match=r"__call__ produced latents with NaN or inf"):
        pipe(prompt="", latents=torch.full_like(data, float("nan")), guidance_scale=1.0, num_inference_steps=2,
             output_type="latent", max_sequence_length=TEXT_LENGTH)
