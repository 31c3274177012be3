"""The pictures of docs/masks.md, made from the toy world with the committed toy checkpoint.

    python benchmarks/mask_figures.py                    # writes docs/images/masks_*.png
    python benchmarks/mask_figures.py --output-dir /tmp/figures --seeds 3 7

For each held-out clip (one per `--seeds` entry, drawn as `toy_world.make_clips(1, seed, "held_out")`), one PNG whose
rows are pixel frames 0, 4 and 8 and whose columns are: the source; the true shape mask; the attention of the video
tokens on the colour and shape words, recorded by `invert(..., mask_words=...)` (`inv.attention_map`, upsampled);
the automatic mask (`inv.mask`: that map snapped to the frame's edges and thresholded); a paired-mode colour edit
without a mask; the same edit with the automatic mask (latent blending and paste-back of the source). Prints what
the detectors read from each edit.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import PIL.Image
import PIL.ImageDraw
import torch

from cogvideox_ddim_inversion.pipeline_cogvideox_ddim_inversion import (
    CogVideoXDDIMInversionPipeline,
    attention_map_to_video,
)
from cogvideox_ddim_inversion.toy import world as toy_world
from edit_quality import dilate  # benchmarks/, next to this script


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLUMNS = ("source", "true mask", "attention", "automatic mask", "edit, no mask", "edit, automatic mask")
FRAMES = (0, 4, 8)


def heat(values: np.ndarray) -> np.ndarray:
    """[H, W] in [0, 1] -> uint8 RGB: black, red, yellow, white as the value rises."""
    values = np.clip(values, 0, 1)[..., None]
    ramp = np.concatenate([np.clip(3 * values - shift, 0, 1) for shift in range(3)], axis=-1)
    return (ramp * 255).round().astype(np.uint8)


def gray(mask: np.ndarray) -> np.ndarray:
    return np.repeat((np.asarray(mask, dtype=np.float32)[..., None] * 255).astype(np.uint8), 3, axis=-1)


def grid(columns: list[np.ndarray], scale: int = 2, gap: int = 4, label_height: int = 14) -> PIL.Image.Image:
    """columns: each [rows, H, W, 3] uint8 -> one labelled image, enlarged `scale` times (nearest neighbour)."""
    rows, height, width = columns[0].shape[:3]
    cell_h, cell_w = height * scale, width * scale
    image = PIL.Image.new("RGB", (len(columns) * (cell_w + gap) - gap, label_height + rows * (cell_h + gap) - gap),
                          "white")
    draw = PIL.ImageDraw.Draw(image)
    for c, (name, frames) in enumerate(zip(COLUMNS, columns)):
        draw.text((c * (cell_w + gap) + 2, 1), name, fill="black")
        for r, frame in enumerate(frames):
            tile = PIL.Image.fromarray(frame).resize((cell_w, cell_h), PIL.Image.NEAREST)
            image.paste(tile, (c * (cell_w + gap), label_height + r * (cell_h + gap)))
    return image


@torch.no_grad()
def figure(pipe, seed: int, steps: int, guidance: float) -> tuple[PIL.Image.Image, dict]:
    clip = toy_world.make_clips(1, seed=seed, split="held_out")[0]
    colours = list(toy_world.COLOURS)
    target = colours[(colours.index(clip.colour) + 1) % len(colours)]
    edit_prompt = toy_world.caption(clip.shape, target, clip.direction, clip.background)
    size = dict(height=toy_world.HEIGHT, width=toy_world.WIDTH)
    inv = pipe.invert(video=clip.frames, prompt=clip.caption, num_inference_steps=steps, max_sequence_length=16,
                      mask_words=[clip.colour, clip.shape], **size)
    attention = attention_map_to_video(inv.attention_map, toy_world.NUM_FRAMES, **size)[0].numpy()
    common = dict(prompt=edit_prompt, negative_prompt=clip.caption, guidance_scale=guidance,
                  latents=inv.trajectory[0], reference_latents=inv.trajectory, reference_prompt=clip.caption,
                  reference_mode="paired", num_inference_steps=steps, max_sequence_length=16, output_type="np")
    plain = toy_world.to_uint8(pipe(**common).frames[0])
    masked = toy_world.to_uint8(pipe(**common, mask=inv.mask, source_latents=inv.latents, mask_feather=2,
                                     paste_back=True, source_video=clip.frames).frames[0])
    mask = inv.mask[0].numpy()
    columns = [clip.frames, gray(clip.masks), np.stack([heat(a) for a in attention]), gray(mask), plain, masked]
    columns = [column[list(FRAMES)] for column in columns]
    background = ~dilate(clip.masks, 3)  # as benchmarks/edit_quality.py measures the background
    scores = {"clip": clip.caption, "edit": edit_prompt,
              "mask IoU": float((mask & clip.masks).sum() / (mask | clip.masks).sum())}
    for name, video in (("no mask", plain), ("automatic mask", masked)):
        found = toy_world.describe(video)
        scores[name] = {"colour": found["colour"],
                        "centroid error (px)": round(toy_world.centroid_error(found["centroids"], clip.centroids), 2),
                        "background PSNR (dB)": round(float(toy_world.psnr(video, clip.frames, background)), 2)}
    return grid(columns), scores


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=os.path.join(REPO_ROOT, "toy", "checkpoint"))
    parser.add_argument("--output-dir", default=os.path.join(REPO_ROOT, "docs", "images"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    pipe = CogVideoXDDIMInversionPipeline.from_pretrained(args.checkpoint)
    pipe.set_progress_bar_config(disable=True)
    os.makedirs(args.output_dir, exist_ok=True)
    for seed in args.seeds:
        image, scores = figure(pipe, seed, args.steps, args.guidance)
        path = os.path.join(args.output_dir, f"masks_seed{seed}.png")
        image.save(path, optimize=True)
        print(path, scores)


if __name__ == "__main__":
    main()
