"""Which transformer blocks' text attention localises the words best: automatic masks on the toy world, per block.

    python benchmarks/mask_blocks.py                         # 16 held-out clips, 25 steps, toy/checkpoint/
    python benchmarks/mask_blocks.py --clips 8 --steps 10

For each block alone, and for all blocks together, `invert(..., mask_words=[colour, shape], mask_blocks=...)`
records the attention of the video tokens on the clip's colour and shape words; the raw map (`mask_refine=False`)
and the map refined by the guided filter (the default with `video`) are thresholded and scored against the true shape
masks (mean IoU and recall over clips). The inversion's trajectory is the same in every run; only the recording
differs. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

from cogvideox_ddim_inversion.pipeline_cogvideox_ddim_inversion import (
    CogVideoXDDIMInversionPipeline,
    attention_map_to_video,
)
from cogvideox_ddim_inversion.toy import world as toy_world


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def scores(masks: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    overlap = (masks & true).sum(axis=(1, 2, 3))
    iou, recall = overlap / (masks | true).sum(axis=(1, 2, 3)), overlap / true.sum(axis=(1, 2, 3))
    return float(iou.mean()), float(recall.mean())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=os.path.join(REPO_ROOT, "toy", "checkpoint"))
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    pipe = CogVideoXDDIMInversionPipeline.from_pretrained(args.checkpoint)
    pipe.set_progress_bar_config(disable=True)
    clips = toy_world.make_clips(args.clips, seed=args.seed, split="held_out")
    true = np.stack([clip.masks for clip in clips])
    kwargs = dict(video=np.stack([clip.frames for clip in clips]), prompt=[clip.caption for clip in clips],
                  num_inference_steps=args.steps, height=toy_world.HEIGHT, width=toy_world.WIDTH,
                  max_sequence_length=pipe.transformer.config.max_text_seq_length,
                  mask_words=[[clip.colour, clip.shape] for clip in clips], mask_threshold=args.threshold)
    blocks = len(pipe.transformer.transformer_blocks)
    print(f"{args.clips} held-out toy clips, {args.steps} steps, threshold {args.threshold}, words: colour and shape\n")
    print("| blocks recorded | raw IoU | raw recall | refined IoU | refined recall |")
    print("|---|---|---|---|---|")
    for name, chosen in [*((str(b), [b]) for b in range(blocks)), ("all", list(range(blocks)))]:
        inv = pipe.invert(**kwargs, mask_blocks=chosen)
        raw = attention_map_to_video(inv.attention_map, toy_world.NUM_FRAMES, toy_world.HEIGHT, toy_world.WIDTH)
        raw_iou, raw_recall = scores((raw > args.threshold).numpy(), true)
        iou, recall = scores(inv.mask.numpy(), true)
        print(f"| {name} | {raw_iou:.2f} | {raw_recall:.2f} | {iou:.2f} | {recall:.2f} |", flush=True)


if __name__ == "__main__":
    main()
