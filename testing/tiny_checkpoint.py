"""Write tiny, randomly initialised CogVideoX checkpoints that load through the real `from_pretrained` path.

Each variant keeps the structural flags of a public checkpoint (positional embeddings, temporal patching, patch bias,
input channels, ofs embedding, scheduler settings) and shrinks only the sizes, so tests and the demo exercise the
same code paths as the real models without downloading anything. Random weights produce noise, not video.
"""

import argparse
import json
import os

import torch
from diffusers import (
    AutoencoderKLCogVideoX,
    CogVideoXDDIMScheduler,
    CogVideoXImageToVideoPipeline,
    CogVideoXPipeline,
    CogVideoXTransformer3DModel,
)
from transformers import T5Config, T5EncoderModel, T5Tokenizer


# Structural flags of the public checkpoints (see the CogVideoX model cards and ../shared/reference/
# cogvideox_family.json); sizes are shrunk below.
from .variants import VARIANTS  # noqa: E402  (the families' structure, torch-free)

# Native size of the tiny models: 64x96 pixels (8x12 latents), 9 frames (3 latent frames).
TINY_HEIGHT, TINY_WIDTH, TINY_FRAMES = 64, 96, 9
TINY_TEXT_LENGTH = 16

_WORDS = (
    "a an the of on in with and is are moving walking running standing left right up down toward away "
    "red green blue yellow white black orange purple gray brown pink "
    "circle square triangle ball box cat dog horse kitten bird car person man woman field road grass sky "
    "water tree street background video small large slowly quickly camera"
).split()


def build_tokenizer() -> T5Tokenizer:
    """A T5 (Unigram, Metaspace) tokenizer over a small English vocabulary, built locally."""
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -3.0)]
    vocab += [("\u2581" + word, -1.0) for word in _WORDS]
    vocab += [(char, -5.0) for char in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,'-"]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=TINY_TEXT_LENGTH)


def build_components(variant: str = "cogvideox-5b", seed: int = 0) -> dict:
    """The five pipeline components of a tiny `variant`, with weights drawn from `seed`."""
    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}; choose one of {sorted(VARIANTS)}.")
    spec = VARIANTS[variant]
    torch.manual_seed(seed)

    tokenizer = build_tokenizer()
    text_encoder = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer),
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            dropout_rate=0.0,
            feed_forward_proj="gated-gelu",
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    )
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        out_channels=16,
        time_embed_dim=16,
        text_embed_dim=32,
        num_layers=2,
        sample_width=TINY_WIDTH // 8,
        sample_height=TINY_HEIGHT // 8,
        sample_frames=TINY_FRAMES,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=TINY_TEXT_LENGTH,
        **spec["transformer"],
    )
    vae = AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=16,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
        scaling_factor=spec["vae_scaling_factor"],
        # 1.5's image-to-video conditioning latents are divided by the scaling factor (see diffusers' I2V pipeline)
        invert_scale_latents=spec.get("vae_invert_scale_latents", False),
    )
    scheduler = CogVideoXDDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=True,
        steps_offset=0,
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        snr_shift_scale=spec["snr_shift_scale"],
    )
    return {
        "tokenizer": tokenizer,
        "text_encoder": text_encoder,
        "vae": vae,
        "transformer": transformer,
        "scheduler": scheduler,
    }


def write_tiny_checkpoint(path: str | os.PathLike, variant: str = "cogvideox-5b", seed: int = 0) -> str:
    """Save a tiny random `variant` checkpoint to `path` with `save_pretrained`; returns the path."""
    components = build_components(variant, seed)
    pipeline_class = CogVideoXImageToVideoPipeline if variant.endswith("i2v") else CogVideoXPipeline
    pipeline_class(**components).save_pretrained(path)
    with open(os.path.join(path, "tiny_checkpoint.json"), "w") as f:
        json.dump(
            {
                "variant": variant,
                "seed": seed,
                "mirrors": VARIANTS[variant]["hub_id"],
                "native_size": {"height": TINY_HEIGHT, "width": TINY_WIDTH, "num_frames": TINY_FRAMES},
                "max_sequence_length": TINY_TEXT_LENGTH,
            },
            f,
            indent=2,
        )
    return str(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Write a tiny random CogVideoX checkpoint (for tests and demos).")
    parser.add_argument("path")
    parser.add_argument("--variant", default="cogvideox-5b", choices=sorted(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(write_tiny_checkpoint(args.path, args.variant, args.seed))


if __name__ == "__main__":
    main()
