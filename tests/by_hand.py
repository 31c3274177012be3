"""Reference computations for the tests, written out from diffusers' parts and the DDIM formulas.

The pipeline is checked against these rather than against its own helpers (`pad_frames`, `inverse_step`, its row
layout), so that a change to one of those shows up as a difference instead of being copied into the expected value.
They handle one video at a time.
"""

import torch

from cogvideox_ddim_inversion import CogVideoXRefAttnProcessor


TEXT_LENGTH = 16  # max_text_seq_length of the tiny checkpoints
CPU = torch.device("cpu")


def pad_as_diffusers(pipe, latents: torch.Tensor) -> torch.Tensor:
    """CogVideoX 1.5 (temporal patches of `patch_size_t`): latent frames copied in front, the expression
    `CogVideoXImageToVideoPipeline.prepare_latents` pads its image latents with."""
    patch_size_t = pipe.transformer.config.patch_size_t
    if patch_size_t is None:
        return latents
    return torch.cat([latents[:, : latents.size(1) % patch_size_t], latents], dim=1)


def encode(pipe, prompt: str) -> torch.Tensor:
    embeds, _ = pipe.encode_prompt(
        prompt, do_classifier_free_guidance=False, max_sequence_length=TEXT_LENGTH, device=CPU
    )
    return embeds


@torch.no_grad()
def run_transformer(pipe, rows, t, text, image_latents=None, attention_kwargs=None) -> torch.Tensor:
    """The transformer's output for unpadded latent `rows` [N, F, C, H, W] at timestep `t`, on the video's frames
    (1.5's padding frames dropped), with the inputs diffusers' CogVideoX pipelines give it."""
    padded = pad_as_diffusers(pipe, rows)
    padding = padded.shape[1] - rows.shape[1]
    if image_latents is not None:  # image-to-video: the same conditioning, padded the same way, beside every row
        padded = torch.cat([padded, pad_as_diffusers(pipe, image_latents).expand(len(rows), -1, -1, -1, -1)], dim=2)
    config = pipe.transformer.config
    rope = None
    if config.use_rotary_positional_embeddings:
        height, width = (size * pipe.vae_scale_factor_spatial for size in rows.shape[3:])
        rope = pipe._prepare_rotary_positional_embeddings(height, width, padded.shape[1], CPU)
    ofs = {} if config.get("ofs_embed_dim", None) is None else {"ofs": torch.full((1,), 2.0)}
    out = pipe.transformer(
        hidden_states=padded,
        encoder_hidden_states=text,
        timestep=t.expand(len(rows)),
        image_rotary_emb=rope,
        attention_kwargs=attention_kwargs,
        return_dict=False,
        **ofs,
    )[0]
    return out[:, padding:].float()


def ddim_inverse_step(v: torch.Tensor, x_s: torch.Tensor, alpha_t, alpha_s) -> torch.Tensor:
    """Plain DDIM inversion for v-prediction: from x_s (level `alpha_s`) up to level `alpha_t`, with the clean sample
    and noise the model's v (evaluated at x_s and the timestep of `alpha_t`) gives,
    x_t = sqrt(alpha_t) x0 + sqrt(1 - alpha_t) eps. Where alpha_t = 0 the noise is read off x_s instead."""
    v, x_s = v.double(), x_s.double()
    alpha_t, alpha_s = torch.as_tensor(alpha_t).double(), torch.as_tensor(alpha_s).double()
    if alpha_t > 0:
        eps = (1 - alpha_t).sqrt() * x_s + alpha_t.sqrt() * v
        x0 = (x_s - (1 - alpha_s).sqrt() * eps) / alpha_s.sqrt()
    else:
        x0 = -v  # v = sqrt(a) eps - sqrt(1 - a) x0 at a = 0
        eps = (x_s - alpha_s.sqrt() * x0) / (1 - alpha_s).sqrt()
    return (alpha_t.sqrt() * x0 + (1 - alpha_t).sqrt() * eps).float()


@torch.no_grad()
def invert_by_hand(pipe, clean, steps: int, prompt: str = "", image_latents=None, model=None) -> torch.Tensor:
    """The inversion trajectory in denoising order: entry i at the level of the forward sampler's timestep i, made
    from entry i + 1 (the clean latents after the last) by one plain DDIM inverse step. `model(x, t)` defaults to
    the pipeline's transformer with diffusers' inputs."""
    scheduler = pipe.scheduler
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps
    if model is None:
        text = encode(pipe, prompt)

        def model(x, t):
            return run_transformer(pipe, x, t, text, image_latents)

    trajectory = [None] * steps
    x = clean
    for i in reversed(range(steps)):
        alpha_s = scheduler.alphas_cumprod[timesteps[i + 1]] if i + 1 < steps else scheduler.final_alpha_cumprod
        x = ddim_inverse_step(model(x, timesteps[i]), x, scheduler.alphas_cumprod[timesteps[i]], alpha_s)
        trajectory[i] = x
    return torch.stack(trajectory)


@torch.no_grad()
def edit_by_hand(pipe, start, trajectory, prompt, guidance_scale, mode, image_latents=None) -> torch.Tensor:
    """Reference-guided regeneration of one video: per step the rows [uncond; cond; reference...] through the
    transformer with `CogVideoXRefAttnProcessor` in every block, classifier-free guidance on the first two, and the
    scheduler's DDIM step. `mode="shared"`: one reference row with the text ""; `"paired"`: one per branch, with
    that branch's text. Returns the final latents."""
    scheduler = pipe.scheduler
    steps = trajectory.shape[0]
    scheduler.set_timesteps(steps)
    uncond, cond = encode(pipe, ""), encode(pipe, prompt)
    reference_texts = [encode(pipe, "")] if mode == "shared" else [uncond, cond]
    text = torch.cat([uncond, cond, *reference_texts])
    processors = pipe.transformer.attn_processors
    pipe.transformer.set_attn_processor(CogVideoXRefAttnProcessor())
    try:
        latents = start
        for i, t in enumerate(scheduler.timesteps):
            rows = torch.cat([latents, latents] + [trajectory[i]] * len(reference_texts))
            out = run_transformer(
                pipe, rows, t, text, image_latents, attention_kwargs={"reference_rows": len(reference_texts)}
            )
            v = out[0:1] + guidance_scale * (out[1:2] - out[0:1])
            latents = scheduler.step(v, t, latents, return_dict=False)[0]
    finally:
        pipe.transformer.set_attn_processor(processors)
    return latents
