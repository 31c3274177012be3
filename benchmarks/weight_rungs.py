"""Relative latent difference of one reference edit under each 8-bit rung, against the plain fp32 run, on the tiny
real-structure checkpoints (`testing/tiny_checkpoint.py`, random weights).

    python benchmarks/weight_rungs.py                      # every tiny variant, 6 steps
    python benchmarks/weight_rungs.py --variants cogvideox-5b --steps 10

Each row inverts the sample clip and edits it with shared reference attention (guidance 6) with the same weights:
loaded in bf16, fp8 storage by layerwise casting (transformer + T5), torchao int8 weight-only (transformer + T5,
when torchao is installed). Prints |edit - plain| / |plain| over the edit latents. Deterministic, no timings.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
import torch

from cogvideox_ddim_inversion.cogvideox_ddim_memory import (
    MemoryOptions,
    enable_fp8_storage,
    quantization_config,
    torchao_version,
)
from cogvideox_ddim_inversion.pipeline_cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline
from cogvideox_ddim_inversion.testing.sample_clip import sample_clip_frames
from cogvideox_ddim_inversion.testing.tiny_checkpoint import TINY_TEXT_LENGTH, VARIANTS, write_tiny_checkpoint


def edit(pipe, clip, steps):
    pipe.set_progress_bar_config(disable=True)
    call = dict(num_inference_steps=steps, max_sequence_length=TINY_TEXT_LENGTH)
    inv = pipe.invert(video=clip, prompt="a red circle", **call)
    image = {} if inv.image_latents is None else {"image_latents": inv.image_latents}  # I2V: the source's frame
    return pipe(prompt="a blue circle", latents=inv.trajectory[0], guidance_scale=6.0, output_type="latent",
                reference_latents=inv.trajectory, reference_prompt="a red circle", **image, **call).frames.float()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="*", default=sorted(VARIANTS))
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args(argv)
    clip = np.stack(sample_clip_frames(num_frames=9))
    rungs = ["bf16 weights and compute", "fp8 storage (transformer + T5)"]
    if torchao_version() is not None:
        rungs.append("torchao int8 weight-only (transformer + T5)")
    print("| tiny variant | " + " | ".join(rungs) + " |")
    print("|---|" + "---|" * len(rungs))
    with tempfile.TemporaryDirectory() as root:
        for variant in args.variants:
            path = write_tiny_checkpoint(f"{root}/{variant}", variant=variant)
            plain = edit(CogVideoXDDIMInversionPipeline.from_pretrained(path), clip, args.steps)
            pipes = [CogVideoXDDIMInversionPipeline.from_pretrained(path, dtype=torch.bfloat16)]
            fp8 = CogVideoXDDIMInversionPipeline.from_pretrained(path)
            enable_fp8_storage(fp8, text_encoder=True)
            pipes.append(fp8)
            if len(rungs) == 3:
                options = MemoryOptions(quantize="int8", quantize_text_encoder=True)
                pipes.append(CogVideoXDDIMInversionPipeline.from_pretrained(
                    path, dtype=torch.float32, quantization_config=quantization_config(options)))
            cells = [f"{((edit(pipe, clip, args.steps) - plain).norm() / plain.norm()).item():.4f}" for pipe in pipes]
            print(f"| {variant} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
