"""The committed toy checkpoint loads through `from_pretrained` and its edits do what the captions say."""

import json
import os

import numpy as np
import pytest
import torch

from cogvideox_ddim_inversion.toy import world as toy_world
from cogvideox_ddim_inversion.toy.demo import TOY_CHECKPOINT


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
    clips = toy_world.make_clips(8, seed=21, split="held_out")
    video, _ = toy_pipe.preprocess_source_video(np.stack([clip.frames for clip in clips]), toy_world.HEIGHT,
                                                toy_world.WIDTH, None)
    latents = toy_pipe.prepare_video_latents(video, torch.float32, "cpu")
    decoded = toy_world.to_uint8(
        toy_pipe.video_processor.postprocess_video(toy_pipe.decode_latents(latents), output_type="np")
    )
    found = [toy_world.describe(video) for video in decoded]
    assert sum(f["colour"] == clip.colour for f, clip in zip(found, clips)) >= 7
    assert np.mean([toy_world.centroid_error(f["centroids"], clip.centroids) for f, clip in zip(found, clips)]) < 2.0
    assert np.mean([toy_world.psnr(video, clip.frames) for video, clip in zip(decoded, clips)]) > 19.0


@pytest.mark.slow
def test_short_colour_edits_change_colour_and_keep_motion(toy_pipe):
    # The first 8 held-out clips (not hand-picked), batched: invert, then edit the colour with shared reference
    # attention and the source caption as negative prompt (the settings of the demo and the benchmark).
    text_length = toy_pipe.transformer.config.max_text_seq_length
    clips = toy_world.make_clips(8, seed=0, split="held_out")
    colours = list(toy_world.COLOURS)
    targets = [colours[(colours.index(clip.colour) + 1 + index % 3) % len(colours)] for index, clip in enumerate(clips)]
    sources = [clip.caption for clip in clips]
    inv = toy_pipe.invert(video=np.stack([clip.frames for clip in clips]), prompt=sources,
                          num_inference_steps=STEPS, max_sequence_length=text_length)
    edits = toy_pipe(
        prompt=[toy_world.caption(c.shape, t, c.direction, c.background) for c, t in zip(clips, targets)],
        negative_prompt=sources, guidance_scale=4.0, latents=inv.trajectory[0], reference_latents=inv.trajectory,
        reference_timesteps=inv.timesteps, reference_prompt=sources, reference_mode="shared",
        num_inference_steps=STEPS, max_sequence_length=text_length, output_type="np",
    ).frames
    found = [toy_world.describe(toy_world.to_uint8(edit)) for edit in edits]
    colour_changed = [f["colour"] == target for f, target in zip(found, targets)]
    direction_kept = [f["direction"] == clip.direction for f, clip in zip(found, clips)]
    errors = [toy_world.centroid_error(f["centroids"], clip.centroids) for f, clip in zip(found, clips)]
    assert sum(colour_changed) >= 6, (targets, [f["colour"] for f in found])
    assert all(direction_kept), [f["direction"] for f in found]
    assert np.mean(errors) < 4.0, errors


def test_generates_what_held_out_captions_say(toy_pipe):
    # Captions whose (shape, colour, direction, background) combination the training never saw.
    combos = toy_world.HELD_OUT[::5][:6]
    videos = toy_pipe(prompt=[toy_world.caption(*combo) for combo in combos], guidance_scale=4.0,
                      num_inference_steps=STEPS, height=toy_world.HEIGHT, width=toy_world.WIDTH,
                      num_frames=toy_world.NUM_FRAMES, max_sequence_length=toy_pipe.transformer.config.max_text_seq_length,
                      generator=torch.Generator().manual_seed(0), output_type="np").frames
    found = [toy_world.describe(toy_world.to_uint8(video)) for video in videos]
    assert sum(f["colour"] == combo[1] for f, combo in zip(found, combos)) >= 5, [f["colour"] for f in found]
    assert sum(f["direction"] == combo[2] for f, combo in zip(found, combos)) >= 5, [f["direction"] for f in found]
