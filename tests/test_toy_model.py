"""The committed toy checkpoint loads through `from_pretrained` and its edits do what the captions say."""

import json
import os

import numpy as np
import pytest
import torch

from cogvideox_ddim_inversion import toy_world
from cogvideox_ddim_inversion.demo import TOY_CHECKPOINT


STEPS = 10


def _size_bytes(path):
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)


@pytest.fixture(scope="module")
def toy_pipe():
    from cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline

    torch.set_num_threads(min(2, torch.get_num_threads()))
    pipe = CogVideoXDDIMInversionPipeline.from_pretrained(TOY_CHECKPOINT)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_checkpoint_is_a_small_cogvideox_5b_structured_pipeline(toy_pipe):
    with open(os.path.join(TOY_CHECKPOINT, "model_index.json")) as f:
        assert json.load(f)["_class_name"] == "CogVideoXPipeline"
    assert _size_bytes(TOY_CHECKPOINT) <= 20 * 1024 * 1024
    config = toy_pipe.transformer.config
    assert config.use_rotary_positional_embeddings and not config.use_learned_positional_embeddings
    assert config.in_channels == config.out_channels == 16 and config.patch_size_t is None
    scheduler = toy_pipe.scheduler.config
    assert type(toy_pipe.scheduler).__name__ == "CogVideoXDDIMScheduler"
    assert scheduler.prediction_type == "v_prediction" and scheduler.rescale_betas_zero_snr
    assert scheduler.timestep_spacing == "trailing" and scheduler.snr_shift_scale == 1.0 and scheduler.set_alpha_to_one
    assert (config.sample_height * 8, config.sample_width * 8, config.sample_frames) == (
        toy_world.HEIGHT, toy_world.WIDTH, toy_world.NUM_FRAMES)


def test_tokenizer_reads_every_grammar_word_as_one_token(toy_pipe):
    text = toy_world.caption("triangle", "yellow", "down", "white")
    ids = toy_pipe.tokenizer(text).input_ids
    assert len(ids) == len(text.split()) + 1  # one piece per word, then </s>
    assert toy_pipe.tokenizer.unk_token_id not in ids


@torch.no_grad()
def test_vae_reconstructs_the_colour_and_position(toy_pipe):
    clip = toy_world.make_clips(1, seed=21, split="held_out")[0]
    video, _ = toy_pipe.preprocess_source_video(clip.frames, toy_world.HEIGHT, toy_world.WIDTH, None)
    latents = toy_pipe.prepare_video_latents(video, torch.float32, "cpu")
    decoded = toy_pipe.video_processor.postprocess_video(toy_pipe.decode_latents(latents), output_type="np")[0]
    decoded = np.clip(decoded * 255, 0, 255).round().astype(np.uint8)
    found = toy_world.describe(decoded)
    assert found["colour"] == clip.colour
    assert toy_world.centroid_error(found["centroids"], clip.centroids) < 1.5
    assert toy_world.psnr(decoded, clip.frames) > 20


def test_short_colour_edit_changes_colour_and_keeps_motion(toy_pipe):
    text_length = toy_pipe.transformer.config.max_text_seq_length
    clip = toy_world.make_clips(1, seed=0, split="held_out")[0]  # one of the clips the toy model edits well
    colours = list(toy_world.COLOURS)
    target = colours[(colours.index(clip.colour) + 2) % len(colours)]
    inv = toy_pipe.invert(video=clip.frames, prompt=clip.caption, num_inference_steps=STEPS,
                          max_sequence_length=text_length)
    edit = toy_pipe(
        prompt=toy_world.caption(clip.shape, target, clip.direction, clip.background), guidance_scale=4.0,
        latents=inv.trajectory[0], reference_latents=inv.trajectory, reference_timesteps=inv.timesteps,
        reference_prompt=clip.caption, reference_mode="paired", num_inference_steps=STEPS,
        max_sequence_length=text_length, output_type="np",
    ).frames[0]
    edit = np.clip(edit * 255, 0, 255).round().astype(np.uint8)
    found = toy_world.describe(edit)
    assert found["colour"] == target
    assert found["direction"] == clip.direction
    assert toy_world.centroid_error(found["centroids"], clip.centroids) < 4.0
