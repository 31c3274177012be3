"""DDIM inversion as functions of tensors and a scheduler, in the manner of k-diffusion's `sampling.py`.

No pipeline object: the model enters as `predict(sample, timestep) -> model output`. The inverse step mirrors
`CogVideoXDDIMScheduler.step` / `DDIMScheduler.step` exactly (same `alphas_cumprod`, SNR shift and zero-terminal-SNR
rescaling included, same previous-timestep rule), so that a forward step undoes it.

Its only relative import is `cogvideox_ddim_errors` (a leaf): the pipeline file imports both directly, so diffusers'
`custom_pipeline` loader ships them beside the pipeline.
"""

import math
from collections.abc import Callable

import torch
from diffusers.schedulers import CogVideoXDDIMScheduler, DDIMScheduler
from diffusers.utils import logging

from .cogvideox_ddim_errors import ParameterError


logger = logging.get_logger(__name__)  # pylint: disable=invalid-name


def ddim_alphas(scheduler, timestep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(alpha_cumprod at `timestep`, alpha_cumprod where the forward DDIM step from `timestep` lands), float64.

    The scheduler's own `alphas_cumprod`, its `final_alpha_cumprod`, and its previous-timestep rule (also where that
    rule is off the timestep grid), as `CogVideoXDDIMScheduler.step` reads them.
    """
    step_ratio = scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    timestep = int(timestep)
    prev_timestep = timestep - step_ratio
    alpha_prod_t = scheduler.alphas_cumprod[timestep]
    alpha_prod_prev = scheduler.alphas_cumprod[prev_timestep] if prev_timestep >= 0 else scheduler.final_alpha_cumprod
    return torch.as_tensor(alpha_prod_t).double(), torch.as_tensor(alpha_prod_prev).double()


def predicted_noise(prediction_type: str, model_output, sample, alpha_prod) -> torch.Tensor:
    """The noise implied by `model_output` for `sample` read at noise level `alpha_prod`."""
    if prediction_type == "v_prediction":
        return (1 - alpha_prod) ** 0.5 * sample + alpha_prod**0.5 * model_output
    if prediction_type == "epsilon":
        return model_output
    if prediction_type == "sample":
        return (sample - alpha_prod**0.5 * model_output) / (1 - alpha_prod) ** 0.5
    raise ValueError(f"Unsupported prediction_type {prediction_type!r}.")


def predicted_original(prediction_type: str, model_output, sample, alpha_prod) -> torch.Tensor:
    """The clean sample implied by `model_output` for `sample` read at noise level `alpha_prod`."""
    if prediction_type == "v_prediction":
        return alpha_prod**0.5 * sample - (1 - alpha_prod) ** 0.5 * model_output
    if prediction_type == "epsilon":
        return (sample - (1 - alpha_prod) ** 0.5 * model_output) / alpha_prod**0.5
    if prediction_type == "sample":
        return model_output
    raise ValueError(f"Unsupported prediction_type {prediction_type!r}.")


def check_invertible(scheduler, timesteps: torch.Tensor):
    """Refuse a schedule whose single step goes from pure noise (zero terminal SNR, alpha_cumprod 0) straight to a
    clean sample (alpha_cumprod 1): the forward step there reads only the clean estimate, so no noise can be
    recovered from a clean sample (the inverse step would divide 0 by 0: a NaN trajectory, a black video)."""
    for timestep in timesteps:
        alpha_prod_t, alpha_prod_s = ddim_alphas(scheduler, timestep)
        if alpha_prod_t == 0 and alpha_prod_s == 1:
            raise ValueError(
                f"{len(timesteps)} step(s) from pure noise straight to a clean video cannot be inverted (the "
                "zero-terminal-SNR step determines no noise): pass `num_inference_steps` >= 2."
            )


def inverse_step(
    scheduler, model_output: torch.Tensor, timestep: torch.Tensor, sample: torch.Tensor, guess=None
) -> torch.Tensor:
    r"""
    One deterministic DDIM step backwards: from `sample` (x_s, at the level where the forward step from `timestep`
    lands) to the level of `timestep` (x_t).

    `model_output` is the model evaluated at (`guess`, `timestep`); `guess` defaults to `sample`, which is plain DDIM
    inversion. The result is the image of `guess` under a fixed-point map whose fixed point is exactly the x_t that the
    forward step sends to x_s: the forward step's clean estimate and noise at x_t, recombined at the level of x_s, give
    x_s back.

    Both degenerate ends are written so that nothing divides by zero. Normally the noise is read from the model and
    the clean estimate from x_s, which also covers a clean x_s (alpha_cumprod = 1). At the zero-terminal-SNR end
    (alpha_cumprod = 0 at `timestep`) the model input *is* the noise, so the noise form would return its input
    unchanged; there the clean estimate is read from the model and the noise from x_s (see `check_invertible` for
    the one step where both ends meet).
    """
    prediction_type = scheduler.config.prediction_type
    alpha_prod_t, alpha_prod_s = ddim_alphas(scheduler, timestep)
    guess = sample if guess is None else guess
    model_output, sample_64, guess_64 = model_output.double(), sample.double(), guess.double()
    if alpha_prod_t > 0:
        noise = predicted_noise(prediction_type, model_output, guess_64, alpha_prod_t)
        original = (sample_64 - (1 - alpha_prod_s) ** 0.5 * noise) / alpha_prod_s**0.5
    else:
        original = predicted_original(prediction_type, model_output, guess_64, alpha_prod_t)
        noise = (sample_64 - alpha_prod_s**0.5 * original) / (1 - alpha_prod_s) ** 0.5
    return (alpha_prod_t**0.5 * original + (1 - alpha_prod_t) ** 0.5 * noise).to(sample.dtype)


def solve_inverse_step(
    scheduler,
    predict: Callable[[torch.Tensor], torch.Tensor],
    timestep: torch.Tensor,
    sample: torch.Tensor,
    iterations: int,
    tolerance: float | None,
    history: int = 3,
) -> tuple[torch.Tensor, int]:
    """A plain inverse step, then up to `iterations` Anderson-accelerated fixed-point refinements. Returns the latent
    and the number of model evaluations; stops early once the relative residual is below `tolerance`."""
    latents = inverse_step(scheduler, predict(sample), timestep, sample)
    evaluations = 1
    past_latents, past_residuals = [], []
    for _ in range(iterations):
        mapped = inverse_step(scheduler, predict(latents), timestep, sample, guess=latents).double().flatten(1)
        evaluations += 1
        current = latents.double().flatten(1)
        residual = mapped - current
        relative = residual.norm(dim=1) / current.norm(dim=1).clamp_min(1e-12)
        if tolerance is not None and bool((relative <= tolerance).all()):
            return mapped.view_as(latents).to(sample.dtype), evaluations
        past_latents = (past_latents + [current])[-history - 1 :]
        past_residuals = (past_residuals + [residual])[-history - 1 :]
        if len(past_residuals) > 1:
            # Anderson mixing (type II): the combination of recent maps whose linearised residual is least squares.
            d_residuals = torch.stack([b - a for a, b in zip(past_residuals, past_residuals[1:])], dim=2)
            d_latents = torch.stack([b - a for a, b in zip(past_latents, past_latents[1:])], dim=2)
            gamma = torch.linalg.lstsq(d_residuals, residual.unsqueeze(2)).solution
            mapped = mapped - ((d_latents + d_residuals) @ gamma).squeeze(2)
        latents = mapped.view_as(latents).to(sample.dtype)
    return latents, evaluations


def invert_ddim(
    predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    timesteps: torch.Tensor,
    scheduler,
    iterations: int = 0,
    tolerance: float | None = 1e-5,
    on_step: Callable[[int, int, torch.Tensor, torch.Tensor], torch.Tensor | None] | None = None,
    before_step: Callable[[int], None] | None = None,
    store: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[list[torch.Tensor], int]:
    """Walk `timesteps` (denoising order) backwards from clean latents `x` to noise.

    Returns the trajectory (`trajectory[i]` at the level of `timesteps[i]`, so `trajectory[0]` is the noisiest) and
    the number of model evaluations. `before_step(i)` runs before step `i` is solved (e.g. to switch attention
    recording on); `on_step(step, i, t, latents)` after it (`step` counts inverse steps from 0, least noisy first),
    and may return replacement latents (a callback's), which are stored and carried on. `store` maps a latent to
    its trajectory entry (e.g. moved to the host); by default the latent itself.
    """
    trajectory = [None] * len(timesteps)
    evaluations = 0
    for step, i in enumerate(reversed(range(len(timesteps)))):
        t = timesteps[i]
        if before_step is not None:
            before_step(i)
        x, count = solve_inverse_step(scheduler, lambda sample: predict(sample, t), t, x, iterations, tolerance)
        evaluations += count
        if on_step is not None:
            replaced = on_step(step, i, t, x)
            x = x if replaced is None else replaced
        trajectory[i] = x if store is None else store(x)
    return trajectory, evaluations


def cut_timesteps(timesteps: torch.Tensor, strength: float) -> torch.Tensor:
    """The last `strength` fraction of `timesteps` (SDEdit / video-to-video style): `int(len * strength)` steps."""
    if not 0 < strength <= 1:
        raise ValueError(f"`strength` must be in (0, 1], got {strength}.")
    kept = min(int(len(timesteps) * strength), len(timesteps))
    if kept < 1:
        raise ValueError(
            f"`strength={strength}` keeps no step of {len(timesteps)}: raise `strength` or `num_inference_steps`."
        )
    return timesteps[len(timesteps) - kept :]


def _round_half_up(value: float) -> int:
    # Python's round() rounds halves to even (round(2.5) == 2): windows would then shift with the step count's parity.
    return math.floor(value + 0.5)


def step_window(window: float | tuple[float, float], num_steps: int, name: str = "reference_steps") -> range:
    """The indices of the denoising steps in a window given as fractions of `num_steps` (`reference_steps`,
    `mask_steps`): `f` is `(0, f)`; `(start, end)` covers steps `round(start * n)` up to, not including,
    `round(end * n)`, rounding halves up (0.25 of 10 steps: 3). A window that selects no step is refused."""
    start, end = (0.0, window) if isinstance(window, (int, float)) else window
    if not 0 <= start < end <= 1:
        raise ParameterError(
            name,
            f"{{{name}}} must be a fraction in (0, 1] or a window (start, end) with 0 <= start < end <= 1, "
            f"got {window!r}.",
        )
    steps = range(_round_half_up(start * num_steps), _round_half_up(end * num_steps))
    if len(steps) == 0:
        raise ParameterError(
            name,
            f"{{{name}}} {window!r} selects no step of {num_steps} (windows are rounded to whole steps, halves up): "
            f"widen it to at least 1/{num_steps} of the steps ({1 / num_steps:.3g}), or raise "
            "{num_inference_steps}.",
        )
    return steps


def ddim_substitute(scheduler, cached: tuple | None = None) -> tuple | None:
    """None for a DDIM scheduler (it steps inversion itself); for a multistep scheduler, `(scheduler, substitute)`: a
    `CogVideoXDDIMScheduler` of the same config (`cached` when it was made for this scheduler), with a warning when it
    is made."""
    if isinstance(scheduler, (CogVideoXDDIMScheduler, DDIMScheduler)):
        return None
    if cached is None or cached[0] is not scheduler:
        logger.warning(
            f"{scheduler.__class__.__name__} is a multistep scheduler and cannot be inverted step by step: "
            "inversion and reference-guided regeneration use a deterministic CogVideoXDDIMScheduler with the same "
            "noise schedule and timestep spacing instead."
        )
        cached = (scheduler, CogVideoXDDIMScheduler.from_config(scheduler.config))
    return cached


def stored_on(latents: torch.Tensor, device) -> torch.Tensor:
    """A trajectory entry on `device` (default: where it is), pinned on the host when CUDA is there to copy to."""
    if device is None or torch.device(device) == latents.device:
        return latents
    stored = latents.to(device)
    if stored.device.type == "cpu" and torch.cuda.is_available():
        stored = stored.pin_memory()
    return stored


def check_finite_latents(latents: torch.Tensor) -> torch.Tensor:
    """`latents`, refused when they hold NaN or inf (they would decode to a black video)."""
    if not torch.isfinite(latents).all():
        raise FloatingPointError(
            "CogVideoXDDIMInversionPipeline.__call__ produced latents with NaN or inf values (they would decode "
            "to a black video): check the inputs (`latents`, `reference_latents`: an inversion with NaN), or "
            "run in float32/bfloat16 rather than float16."
        )
    return latents
