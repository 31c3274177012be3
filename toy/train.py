"""Train a small CogVideoX (real diffusers classes, CogVideoX-5B structure) on the toy world, on CPU.

    python -m cogvideox_ddim_inversion.toy.train --output toy/checkpoint      # about 40 min on 2 CPU cores
    python -m cogvideox_ddim_inversion.toy.train --evaluate toy/checkpoint   # held-out caption accuracy

Stages: (1) the VAE (`AutoencoderKLCogVideoX`) on toy clips with a reconstruction loss, a loss on the shape's mean
colour and a small KL; its scaling factor is then set so that scaled latents have unit standard deviation; (2) the
transformer (`CogVideoXTransformer3DModel` with RoPE and no learned positional embeddings, as CogVideoX-5B) on the VAE
latents of training clips with CogVideoX's v-prediction loss, half of each batch at uniform timesteps and half at low
noise (where a small shape's position is decided), and caption dropout (for classifier-free guidance). The T5 text
encoder is small, randomly initialised and frozen; the tokenizer is a word-level `T5Tokenizer` over the caption
grammar. Everything is saved with `save_pretrained` as a `CogVideoXPipeline` folder.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import sys
import time

import numpy as np
import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel
from transformers import T5Config, T5EncoderModel, T5Tokenizer

from . import world as toy_world


TEXT_LENGTH = 16  # captions are 9 words + </s>
LATENT_FRAMES = (toy_world.NUM_FRAMES - 1) // 4 + 1


def build_tokenizer() -> T5Tokenizer:
    """Word-level T5 (Unigram) tokenizer: one piece per grammar word, single characters as a fallback."""
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -3.0)]
    vocab += [("\u2581" + word, -1.0) for word in toy_world.GRAMMAR_WORDS]
    vocab += [(char, -5.0) for char in "abcdefghijklmnopqrstuvwxyz"]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=TEXT_LENGTH)


def build_components(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    text_encoder = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer), d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
            relative_attention_num_buckets=8, dropout_rate=0.0, feed_forward_proj="gated-gelu",
            pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
        )
    )
    vae = AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4, up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 16, 32, 32), latent_channels=16, layers_per_block=1, norm_num_groups=4,
        temporal_compression_ratio=4, sample_height=toy_world.HEIGHT, sample_width=toy_world.WIDTH,
        scaling_factor=0.7,  # replaced by 1 / std of the trained VAE's latents
    )
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=4, attention_head_dim=32, in_channels=16, out_channels=16, time_embed_dim=128,
        text_embed_dim=64, num_layers=6, sample_width=toy_world.WIDTH // 8, sample_height=toy_world.HEIGHT // 8,
        sample_frames=toy_world.NUM_FRAMES, patch_size=2, patch_size_t=None, patch_bias=True,
        temporal_compression_ratio=4, max_text_seq_length=TEXT_LENGTH,
        use_rotary_positional_embeddings=True, use_learned_positional_embeddings=False,
    )
    # CogVideoX-5B's scheduler settings.
    scheduler = CogVideoXDDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=True, steps_offset=0, prediction_type="v_prediction",
        rescale_betas_zero_snr=True, timestep_spacing="trailing", snr_shift_scale=1.0,
    )
    return {"tokenizer": tokenizer, "text_encoder": text_encoder, "vae": vae, "transformer": transformer,
            "scheduler": scheduler}


def clips_to_tensor(clips) -> torch.Tensor:
    """[B, 3, F, H, W] in [-1, 1], the VAE's layout."""
    frames = np.stack([clip.frames for clip in clips]).astype(np.float32) / 127.5 - 1.0
    return torch.from_numpy(frames).permute(0, 4, 1, 2, 3).contiguous()


def _log(message: str):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _lr(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_vae(vae, steps: int, batch_size: int, seed: int, lr: float = 2e-3, kl_weight: float = 1e-5,
              foreground_weight: float = 5.0, colour_weight: float = 0.5, deadline: float | None = None) -> dict:
    """Reconstruction (L1 + MSE, shape pixels weighted up) of training clips through the posterior mean, a term on
    the shape's mean colour per frame, and a small KL on the posterior."""
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(vae.parameters(), lr=lr)
    probe = toy_world.make_clips(4, seed + 7, "held_out")
    vae.train()
    history = []
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = _lr(step, steps, lr, 20)
        clips = [toy_world.random_clip(rng) for _ in range(batch_size)]
        video = clips_to_tensor(clips)
        # The shape is a small part of each frame: weight its pixels up so its colour and edges are learned early.
        masks = torch.from_numpy(np.stack([clip.masks for clip in clips])).float()[:, None]
        weights = 1.0 + foreground_weight * masks
        posterior = vae.encode(video).latent_dist
        # The posterior mean, not a sample: at initialisation the posterior's unit variance would drown the
        # signal and the decoder would first learn the average clip. The KL keeps the latents bounded.
        latents = posterior.mode()
        recon = vae.decode(latents).sample
        kl = posterior.kl().mean() / latents[0].numel()
        error = recon - video
        loss = (weights * (error.abs() + error**2)).mean() / weights.mean() + kl_weight * kl
        # Per-pixel losses let a small decoder blend the shape's colour with the background (red on white came out
        # pink and was read as the wrong colour); matching the mean colour over the shape's mask learns hue early.
        area = masks.sum(dim=(3, 4)).clamp(min=1.0)
        colour_error = (error * masks).sum(dim=(3, 4)) / area
        loss = loss + colour_weight * (colour_error**2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        history.append(loss.item())
        if step % 50 == 0 or step == steps - 1:
            message = f"vae step {step}/{steps} loss {np.mean(history[-50:]):.4f} kl {kl.item():.2f}"
            if step % 150 == 0 or step == steps - 1:
                message += " | held-out probe " + vae_probe(vae, probe)
            _log(message)
        if deadline is not None and time.time() > deadline:
            _log(f"vae: time budget reached at step {step + 1}")
            break
    vae.eval()
    return {"vae_steps": step + 1, "vae_final_loss": float(np.mean(history[-50:])),
            "vae_probe": vae_probe(vae, probe)}


@torch.no_grad()
def vae_probe(vae, clips) -> str:
    """PSNR and detected colours of encode/decode round trips (a progress read-out, not a metric)."""
    was_training = vae.training
    vae.eval()
    decoded = vae.decode(vae.encode(clips_to_tensor(clips)).latent_dist.mode()).sample
    vae.train(was_training)
    frames = ((decoded.clamp(-1, 1) + 1) * 127.5).round().permute(0, 2, 3, 4, 1).numpy().astype(np.uint8)
    psnrs = [toy_world.psnr(f, c.frames) for f, c in zip(frames, clips)]
    colours = sum(toy_world.detect_colour(f)[0] == c.colour for f, c in zip(frames, clips))
    return f"psnr {np.mean(psnrs):.2f} dB, colours {colours}/{len(clips)}"


@torch.no_grad()
def encode_clips(vae, clips, batch_size: int = 8) -> torch.Tensor:
    """Unscaled posterior-mode latents [N, F, C, h, w] (the transformer's layout)."""
    out = []
    for start in range(0, len(clips), batch_size):
        video = clips_to_tensor(clips[start : start + batch_size])
        out.append(vae.encode(video).latent_dist.mode().permute(0, 2, 1, 3, 4))
    return torch.cat(out)


@torch.no_grad()
def encode_texts(tokenizer, text_encoder, texts) -> torch.Tensor:
    """Prompt embeddings exactly as `CogVideoXPipeline._get_t5_prompt_embeds` computes them."""
    tokens = tokenizer(texts, padding="max_length", max_length=TEXT_LENGTH, truncation=True,
                       add_special_tokens=True, return_tensors="pt")
    return text_encoder(tokens.input_ids)[0]


def train_transformer(components, latents, captions, steps: int, batch_size: int, seed: int, lr: float = 1.5e-3,
                      caption_dropout: float = 0.1, ema_decay: float = 0.999, low_noise_end: int = 250,
                      deadline: float | None = None):
    """CogVideoX's v-prediction objective on scaled latents, half of each batch at uniform timesteps and half at
    t < `low_noise_end`; returns (EMA transformer, stats)."""
    transformer, scheduler = components["transformer"], components["scheduler"]
    texts = sorted(set(captions)) + [""]
    embeds = encode_texts(components["tokenizer"], components["text_encoder"], texts)
    caption_index = torch.tensor([texts.index(text) for text in captions])
    empty_index = len(texts) - 1
    # RoPE tables computed by the pipeline itself, so training and sampling use the same positions.
    helper = CogVideoXPipeline(**components)
    rotary = helper._prepare_rotary_positional_embeddings(toy_world.HEIGHT, toy_world.WIDTH, latents.shape[1], "cpu")

    alphas_cumprod = scheduler.alphas_cumprod.float()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(transformer.parameters(), lr=lr, weight_decay=0.0)
    ema = copy.deepcopy(transformer).requires_grad_(False)
    transformer.train()
    history = []
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = _lr(step, steps, lr, 200)
        index = torch.randint(len(latents), (batch_size,), generator=generator)
        clean = latents[index]
        text = caption_index[index].clone()
        text[torch.rand(batch_size, generator=generator) < caption_dropout] = empty_index
        # Half the batch at uniform timesteps, half at t < low_noise_end: a shape covers a few latent cells, so its
        # position and motion carry little of the latents' variance and are only decided at low noise. With uniform
        # timesteps (85% of updates at t > 150) the model sampled blurred, barely moving blobs.
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (batch_size,), generator=generator)
        low = torch.randint(0, low_noise_end, (batch_size,), generator=generator)
        timesteps = torch.where(torch.arange(batch_size) % 2 == 1, low, timesteps)
        noise = torch.randn(clean.shape, generator=generator)
        noisy = scheduler.add_noise(clean, noise, timesteps)
        model_output = transformer(hidden_states=noisy, encoder_hidden_states=embeds[text], timestep=timesteps,
                                   image_rotary_emb=rotary, return_dict=False)[0]
        # CogVideoX's loss: the x0 implied by the v-prediction, weighted by 1 / (1 - alpha_bar). This equals the plain
        # v-prediction MSE, and stays finite at the zero-SNR end where alpha_bar = 0.
        alpha = alphas_cumprod[timesteps].view(-1, 1, 1, 1, 1)
        predicted_clean = alpha.sqrt() * noisy - (1 - alpha).sqrt() * model_output
        weights = 1.0 / (1.0 - alpha)
        loss = (weights * (predicted_clean - clean) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(transformer.parameters(), 1.0)
        optimizer.step()
        # EMA with a warm-up (short runs would otherwise keep too much of the initialisation).
        decay = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for ema_param, param in zip(ema.parameters(), transformer.parameters()):
                ema_param.lerp_(param, 1 - decay)
        history.append(loss.item())
        if step % 200 == 0 or step == steps - 1:
            _log(f"transformer step {step}/{steps} loss {np.mean(history[-200:]):.4f}")
        if deadline is not None and time.time() > deadline:
            _log(f"transformer: time budget reached at step {step + 1}")
            break
    ema.eval()
    return ema, {"transformer_steps": step + 1, "transformer_final_loss": float(np.mean(history[-200:]))}


@contextlib.contextmanager
def deterministic_algorithms():
    """torch's deterministic mode while a training run lasts (a decorator), then the caller's setting again."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


@deterministic_algorithms()
def train(output: str, seed: int = 0, vae_steps: int = 1300, vae_batch: int = 4, num_clips: int = 4000,
          transformer_steps: int = 5500, transformer_batch: int = 32, max_minutes: float = 44.0,
          vae_from: str | None = None, resume: str | None = None, lr: float = 1.5e-3) -> dict:
    """Train the toy model into `output` (a `CogVideoXPipeline` folder plus `toy_checkpoint.json`); same arguments
    and torch version, same weights."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    start = time.time()
    deadline = start + max_minutes * 60

    components = build_components(seed)
    components["text_encoder"].requires_grad_(False).eval()
    stats = {"seed": seed, "torch_threads": torch.get_num_threads(), "torch": torch.__version__}

    if resume:
        # Continue training the transformer of a saved toy checkpoint (same VAE, tokenizer, text encoder and
        # scaling factor), e.g. when a first run stopped short of the quality goals.
        _log(f"resuming from {resume}")
        saved = CogVideoXPipeline.from_pretrained(resume)
        components.update({name: getattr(saved, name) for name in components})
        components["text_encoder"].requires_grad_(False).eval()
        with open(os.path.join(resume, "toy_checkpoint.json")) as f:
            stats["resumed_from"] = json.load(f)["training"]
    elif vae_from:
        # Reuse a trained VAE (e.g. to retrain only the transformer); its scaling factor is recomputed below.
        _log(f"stage 1: VAE loaded from {vae_from}")
        components["vae"] = AutoencoderKLCogVideoX.from_pretrained(vae_from)
        stats["vae_from"] = vae_from
    else:
        _log("stage 1: VAE")
        # The VAE gets at most 45% of the budget; the transformer needs the rest.
        stats.update(train_vae(components["vae"], vae_steps, vae_batch, seed + 1,
                               deadline=start + max_minutes * 60 * 0.45))
        components["vae"].save_pretrained(os.path.join(output, "vae"))  # kept early, so a failed stage 2 can reuse it
    components["vae"].requires_grad_(False).eval()

    _log(f"encoding {num_clips} training clips")
    clips = toy_world.make_clips(num_clips, seed + 2, "train")
    raw_latents = encode_clips(components["vae"], clips)
    if resume:
        scaling_factor = components["vae"].config.scaling_factor
    else:
        scaling_factor = float(1.0 / raw_latents.std())
        components["vae"].register_to_config(scaling_factor=scaling_factor)
    latents = raw_latents * scaling_factor
    stats["vae_scaling_factor"] = scaling_factor
    stats["vae_seconds"] = round(time.time() - start, 1)

    _log("stage 2: transformer")
    ema, transformer_stats = train_transformer(
        components, latents, [clip.caption for clip in clips], transformer_steps, transformer_batch,
        seed + 3 + (1000 if resume else 0), lr=lr, deadline=deadline,
    )
    stats.update(transformer_stats)
    components["transformer"] = ema
    stats["train_seconds"] = round(time.time() - start, 1)

    CogVideoXPipeline(**components).save_pretrained(output)
    info = {
        "description": "CogVideoX (5B structure) trained on the toy world of cogvideox_ddim_inversion.toy.world",
        "native_size": {"height": toy_world.HEIGHT, "width": toy_world.WIDTH, "num_frames": toy_world.NUM_FRAMES},
        "max_sequence_length": TEXT_LENGTH,
        "held_out_combos": [list(combo) for combo in toy_world.HELD_OUT],
        "command": "python -m cogvideox_ddim_inversion.toy.train --output toy/checkpoint"
        + (f" (then resumed: --resume <first run> --transformer-steps {transformer_steps} --lr {lr})" if resume else ""),
        "training": stats,
    }
    with open(os.path.join(output, "toy_checkpoint.json"), "w") as f:
        json.dump(info, f, indent=2)
    _log(f"saved {output} after {stats['train_seconds']} s")
    return stats


# ------------------------------------------------------------------------------------------------------ evaluation


@torch.no_grad()
def evaluate_generation(pipe, combos=toy_world.HELD_OUT, samples_per_combo: int = 2, steps: int = 25,
                        guidance_scale: float = 4.0, seed: int = 0, batch_size: int = 16) -> dict:
    """Generate every combo's caption and read colour and direction back with the toy-world detectors."""
    prompts = [toy_world.caption(*combo) for combo in combos for _ in range(samples_per_combo)]
    wanted = [combo for combo in combos for _ in range(samples_per_combo)]
    results = []
    for start in range(0, len(prompts), batch_size):
        generator = torch.Generator().manual_seed(seed + start)
        videos = pipe(prompt=prompts[start : start + batch_size], num_inference_steps=steps,
                      guidance_scale=guidance_scale, height=toy_world.HEIGHT, width=toy_world.WIDTH,
                      num_frames=toy_world.NUM_FRAMES, max_sequence_length=TEXT_LENGTH, generator=generator,
                      output_type="np").frames
        for video, combo in zip(videos, wanted[start : start + batch_size]):
            found = toy_world.describe(toy_world.to_uint8(video))
            results.append({"caption": toy_world.caption(*combo), "colour": found["colour"],
                            "direction": found["direction"], "shape": found["shape"],
                            "background": found["background"],
                            "colour_ok": found["colour"] == combo[1], "direction_ok": found["direction"] == combo[2],
                            "shape_ok": found["shape"] == combo[0], "background_ok": found["background"] == combo[3]})
    summary = {key: float(np.mean([row[key] for row in results]))
               for key in ("colour_ok", "direction_ok", "shape_ok", "background_ok")}
    return {"summary": summary, "count": len(results), "steps": steps, "guidance_scale": guidance_scale,
            "results": results}


def default_checkpoint() -> str:
    """The committed toy checkpoint, next to this module (works editable or installed)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoint")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="checkpoint")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vae-steps", type=int, default=1300)
    parser.add_argument("--num-clips", type=int, default=4000)
    parser.add_argument("--transformer-steps", type=int, default=5500)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1),
                        help="torch threads (2 on a quiet 2-core machine; 1 when other jobs share the cores)")
    parser.add_argument("--resume", help="continue training the transformer of this saved toy checkpoint")
    parser.add_argument("--lr", type=float, default=1.5e-3, help="peak transformer learning rate")
    parser.add_argument("--vae-from", help="folder of a trained VAE to reuse instead of training one")
    parser.add_argument("--max-minutes", type=float, default=44.0, help="stop training early past this budget")
    parser.add_argument("--evaluate", metavar="CHECKPOINT", help="only score held-out generation of CHECKPOINT")
    parser.add_argument("--eval-steps", type=int, default=25)
    parser.add_argument("--eval-guidance", type=float, default=4.0)
    parser.add_argument("--eval-samples", type=int, default=2, help="samples per held-out combination")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.evaluate is None:
        train(args.output, seed=args.seed, vae_steps=args.vae_steps, num_clips=args.num_clips,
              transformer_steps=args.transformer_steps, max_minutes=args.max_minutes,
              vae_from=args.vae_from, resume=args.resume, lr=args.lr)
    from ..pipeline_cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline

    pipe = CogVideoXDDIMInversionPipeline.from_pretrained(args.evaluate or args.output)
    pipe.set_progress_bar_config(disable=True)
    report = evaluate_generation(pipe, samples_per_combo=args.eval_samples, steps=args.eval_steps,
                                 guidance_scale=args.eval_guidance)
    print(json.dumps({k: v for k, v in report.items() if k != "results"}, indent=2))
    return report


if __name__ == "__main__":
    main()
