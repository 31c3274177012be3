"""Demo on the committed toy checkpoint: invert a toy-world clip, reconstruct it, and change the shape's colour.

Unlike the tiny random checkpoint, the toy model was trained (see `train.py`), so the outputs are videos of
the toy world and the metrics (read with the exact detectors of `world.py`) say whether the edit worked.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch

from . import world as toy_world
from ..workflow.run import write_json
from ..video_io import write_video


TOY_CHECKPOINT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoint")


def _enlarge(frames: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling, so 64x64 clips are watchable."""
    return frames.repeat(factor, axis=1).repeat(factor, axis=2)


@torch.no_grad()
def run_toy_demo(output_dir: str, steps: int = 50, checkpoint: str | None = None, seed: int = 0,
                 target_colour: str | None = None, guidance_scale: float = 4.0, reference_mode: str = "shared",
                 fps: float = 8.0, upscale: int = 4) -> dict:
    """Generate a held-out toy clip, invert it, write its reconstruction and a colour edit, and score both.

    Writes source.mp4, reconstruction.mp4, edit.mp4, side_by_side.mp4 (source | reconstruction | edit) and
    metrics.json into `output_dir`; returns the metrics (with the written paths under "files").
    """
    from ..pipeline_cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline

    checkpoint = checkpoint or TOY_CHECKPOINT
    if not os.path.isfile(os.path.join(checkpoint, "model_index.json")):
        raise FileNotFoundError(f"No toy checkpoint at {checkpoint!r} (expected model_index.json there).")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    pipe = CogVideoXDDIMInversionPipeline.from_pretrained(checkpoint)
    pipe.set_progress_bar_config(disable=True)
    text_length = pipe.transformer.config.max_text_seq_length

    # A clip of a combination the model never trained on.
    clip = toy_world.make_clips(1, seed=seed, split="held_out")[0]
    colours = list(toy_world.COLOURS)
    target_colour = target_colour or colours[(colours.index(clip.colour) + 1) % len(colours)]
    if target_colour not in toy_world.COLOURS:
        raise ValueError(f"target_colour must be one of {colours}, got {target_colour!r}.")
    source_prompt = clip.caption
    edit_prompt = toy_world.caption(clip.shape, target_colour, clip.direction, clip.background)
    print(f"source: {source_prompt!r}\nedit:   {edit_prompt!r}", file=sys.stderr)

    inv = pipe.invert(video=clip.frames, prompt=source_prompt, num_inference_steps=steps, height=toy_world.HEIGHT,
                      width=toy_world.WIDTH, max_sequence_length=text_length)
    common = dict(latents=inv.trajectory[0], reference_latents=inv.trajectory, reference_timesteps=inv.timesteps,
                  reference_prompt=source_prompt, reference_mode=reference_mode, num_inference_steps=steps,
                  max_sequence_length=text_length, output_type="np")
    reconstruction = toy_world.to_uint8(pipe(prompt=source_prompt, guidance_scale=1.0, **common).frames[0])
    # The source caption as negative prompt: guidance then pushes only along what the two captions disagree on.
    edit = toy_world.to_uint8(pipe(prompt=edit_prompt, negative_prompt=source_prompt, guidance_scale=guidance_scale,
                                   **common).frames[0])
    vae_only = toy_world.to_uint8(
        pipe.video_processor.postprocess_video(pipe.decode_latents(inv.latents), output_type="np")[0]
    )

    found_source, found_recon, found_edit = (toy_world.describe(v) for v in (clip.frames, reconstruction, edit))
    metrics = {
        "checkpoint": checkpoint, "steps": steps, "guidance_scale": guidance_scale, "reference_mode": reference_mode,
        "source_prompt": source_prompt, "edit_prompt": edit_prompt, "held_out_combination": True,
        "detected_colour": {"source": found_source["colour"], "reconstruction": found_recon["colour"],
                            "edit": found_edit["colour"], "target": target_colour},
        "detected_direction": {"source": found_source["direction"], "reconstruction": found_recon["direction"],
                               "edit": found_edit["direction"]},
        "edit_success": found_edit["colour"] == target_colour,
        "centroid_error_px": {"reconstruction": toy_world.centroid_error(found_recon["centroids"], clip.centroids),
                              "edit": toy_world.centroid_error(found_edit["centroids"], clip.centroids)},
        "psnr_db": {"reconstruction": toy_world.psnr(reconstruction, clip.frames),
                    "vae_ceiling": toy_world.psnr(vae_only, clip.frames),
                    "edit_background": toy_world.psnr(edit, clip.frames, ~clip.masks)},
    }

    os.makedirs(output_dir, exist_ok=True)
    files = {}
    for name, frames in (("source", clip.frames), ("reconstruction", reconstruction), ("edit", edit)):
        files[name] = write_video(_enlarge(frames, upscale), os.path.join(output_dir, f"{name}.mp4"), fps)
    side_by_side = np.concatenate([clip.frames, reconstruction, edit], axis=2)
    files["side_by_side"] = write_video(_enlarge(side_by_side, upscale), os.path.join(output_dir, "side_by_side.mp4"),
                                        fps)
    files["metrics"] = os.path.join(output_dir, "metrics.json")
    write_json(metrics, files["metrics"])
    return {**metrics, "files": files}
