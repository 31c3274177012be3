"""Every CogVideoX family (2B, 5B, 5B-I2V, 1.5-5B, 1.5-5B-I2V) through `custom_pipeline=` loading, end to end."""

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import PIPELINE_FILE, TEXT_LENGTH
from diffusers import CogVideoXImageToVideoPipeline, CogVideoXPipeline, DiffusionPipeline

from cogvideox_ddim_inversion.testing.sample_clip import sample_clip_frames
from cogvideox_ddim_inversion.testing.tiny_checkpoint import VARIANTS


FAMILIES = list(VARIANTS)
CALL = dict(num_inference_steps=2, max_sequence_length=TEXT_LENGTH)
SIZE = dict(num_frames=9, height=64, width=96)  # CogVideoXImageToVideoPipeline defaults to 49 frames, not the config's


def load_custom(checkpoint):
    pipe = DiffusionPipeline.from_pretrained(checkpoint, custom_pipeline=str(PIPELINE_FILE), trust_remote_code=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def diffusers_pipeline(checkpoint, variant):
    cls = CogVideoXImageToVideoPipeline if variant.endswith("i2v") else CogVideoXPipeline
    pipe = cls.from_pretrained(checkpoint)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def frames():
    return np.stack(sample_clip_frames(num_frames=9))  # 3 latent frames: CogVideoX 1.5 pads one in front


@pytest.mark.parametrize("variant", FAMILIES)
def test_family_end_to_end(tiny_checkpoint, frames, variant):
    checkpoint = tiny_checkpoint(variant)
    ours, theirs = load_custom(checkpoint), diffusers_pipeline(checkpoint, variant)
    assert type(ours).__name__ == "CogVideoXDDIMInversionPipeline"
    image_to_video = variant.endswith("i2v")
    assert ours.is_image_to_video == image_to_video
    padding = 1 if variant.startswith("cogvideox1.5") else 0
    assert ours.padding_frames(3) == padding
    image = {"image": PIL.Image.fromarray(frames[0])} if image_to_video else {}

    # 1. Without a reference: the diffusers pipeline, bit for bit, on the decoded video ...
    kwargs = dict(prompt="a red circle moving right", guidance_scale=6.0, **CALL, **SIZE, **image)
    expected = theirs(generator=torch.Generator().manual_seed(0), output_type="pt", **kwargs).frames
    got = ours(generator=torch.Generator().manual_seed(0), output_type="pt", **kwargs).frames
    assert got.shape[1] == 9 and torch.equal(got, expected)
    # ... and on latents, except that 1.5's padding frames are dropped (diffusers returns them)
    expected = theirs(generator=torch.Generator().manual_seed(0), output_type="latent", **kwargs).frames
    got = ours(generator=torch.Generator().manual_seed(0), output_type="latent", **kwargs).frames
    assert expected.shape[1] == 3 + padding and got.shape[1] == 3
    assert torch.equal(got, expected[:, padding:])

    # 2. Inversion: no padding in any output; image-to-video conditioning from the first frame
    inv = ours.invert(video=frames, **CALL)
    assert inv.latents.shape == (1, 3, 16, 8, 12) and inv.trajectory.shape == (2, 1, 3, 16, 8, 12)
    assert (inv.image_latents is not None) == image_to_video
    if image_to_video:
        assert inv.image_latents.shape == inv.latents.shape and inv.image_latents[:, 1:].abs().max() == 0
    condition = {"image_latents": inv.image_latents} if image_to_video else {}

    # 3. Plain regeneration from the inverted noise, and a reference-guided edit, both the video's size
    plain = ours(prompt="", latents=inv.trajectory[0], guidance_scale=1.0, output_type="latent", **CALL, **condition)
    assert plain.frames.shape == inv.latents.shape
    edit = ours(
        prompt="a blue circle",
        latents=inv.trajectory[0],
        reference_latents=inv.trajectory,
        guidance_scale=6.0,
        output_type="np",
        **CALL,
        **condition,
    )
    assert edit.frames.shape == (1, 9, 64, 96, 3)
    paired = ours(
        prompt="a blue circle",
        reference_latents=inv.trajectory,
        reference_mode="paired",
        guidance_scale=6.0,
        output_type="latent",
        **CALL,
        **condition,
    )
    assert paired.frames.shape == inv.latents.shape


@pytest.mark.parametrize("variant", FAMILIES)
def test_padding_is_the_same_in_both_directions(tiny_checkpoint, frames, variant):
    """Refined inversion inverts the regeneration of every family, padding and image conditioning included: even with
    a random transformer the round trip error falls far below plain inversion's."""
    pipe = load_custom(tiny_checkpoint(variant))
    errors = []
    for iterations in (0, 6):
        inv = pipe.invert(
            video=frames,
            num_inference_steps=10,
            fixed_point_iterations=iterations,
            fixed_point_tolerance=None,
            max_sequence_length=TEXT_LENGTH,
        )
        condition = {"image_latents": inv.image_latents} if inv.image_latents is not None else {}
        back = pipe(
            prompt="",
            latents=inv.trajectory[0],
            guidance_scale=1.0,
            num_inference_steps=10,
            max_sequence_length=TEXT_LENGTH,
            output_type="latent",
            **condition,
        ).frames
        errors.append(((back - inv.latents).norm() / inv.latents.norm()).item())
    print(variant, errors)
    assert errors[1] < 0.25 * errors[0]


def test_learned_positional_embeddings_fix_the_size(tiny_checkpoint, frames):
    pipe = load_custom(tiny_checkpoint("cogvideox-5b-i2v"))
    with pytest.raises(ValueError, match="learned positional embeddings for 96x64"):
        pipe.invert(video=frames, height=32, width=48, **CALL)
    with pytest.raises(ValueError, match="learned positional embeddings"):
        pipe(prompt="x", image=PIL.Image.fromarray(frames[0]), height=32, width=48, **CALL)


def test_image_to_video_needs_an_image(tiny_checkpoint, frames):
    pipe = load_custom(tiny_checkpoint("cogvideox1.5-5b-i2v"))
    with pytest.raises(ValueError, match="pass `image`"):
        pipe(prompt="x", **CALL)
    inv = pipe.invert(video=frames, **CALL)
    with pytest.raises(ValueError, match="also pass `image`"):
        pipe.invert(latents=inv.latents, **CALL)
    # with the image given explicitly, inversion of latents matches inversion of the video
    again = pipe.invert(latents=inv.latents, image=PIL.Image.fromarray(frames[0]), **CALL)
    torch.testing.assert_close(again.trajectory, inv.trajectory, rtol=1e-4, atol=1e-4)
    t2v = load_custom(tiny_checkpoint("cogvideox-5b"))
    with pytest.raises(ValueError, match="text-to-video"):
        t2v(prompt="x", image=PIL.Image.fromarray(frames[0]), **CALL)
