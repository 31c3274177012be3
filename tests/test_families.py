"""Every CogVideoX family (2B, 5B, 5B-I2V, 1.5-5B, 1.5-5B-I2V) through `custom_pipeline=` loading, end to end."""

import json

import numpy as np
import PIL.Image
import pytest
import torch
from by_hand import edit_by_hand, invert_by_hand
from conftest import PIPELINE_FILE, SHARED, TEXT_LENGTH
from diffusers import CogVideoXImageToVideoPipeline, CogVideoXPipeline, DiffusionPipeline

from cogvideox_ddim_inversion.cogvideox_ddim_checkpoint import check_size_for_positional_embeddings, checkpoint_config
from cogvideox_ddim_inversion.testing.sample_clip import sample_clip_frames
from cogvideox_ddim_inversion.testing.tiny_checkpoint import VARIANTS


FAMILIES = list(VARIANTS)
CALL = dict(num_inference_steps=2, max_sequence_length=TEXT_LENGTH)
REFERENCE = SHARED / "reference" / "cogvideox_family.json"
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

    # ... and the trajectory is the DDIM inversion written out by hand, 1.5's padding made as diffusers pads
    expected = invert_by_hand(ours, inv.latents, CALL["num_inference_steps"], image_latents=inv.image_latents)
    torch.testing.assert_close(inv.trajectory, expected, rtol=1e-4, atol=1e-5)
    condition = {"image_latents": inv.image_latents} if image_to_video else {}

    # 3. Plain regeneration from the inverted noise, the video's size
    plain = ours(prompt="", latents=inv.trajectory[0], guidance_scale=1.0, output_type="latent", **CALL, **condition)
    assert plain.frames.shape == inv.latents.shape

    # 4. Reference-guided edits equal the same edit written out by hand from diffusers' parts: from the inverted
    # noise (shared reference row), and from fresh noise drawn as diffusers draws it (paired rows)
    edit = ours(
        prompt="a blue circle",
        latents=inv.trajectory[0],
        reference_latents=inv.trajectory,
        guidance_scale=6.0,
        output_type="latent",
        **CALL,
        **condition,
    ).frames
    expected = edit_by_hand(
        ours, inv.trajectory[0], inv.trajectory, "a blue circle", 6.0, "shared", image_latents=inv.image_latents
    )
    torch.testing.assert_close(edit, expected, rtol=1e-4, atol=1e-5)
    paired = ours(
        prompt="a blue circle",
        reference_latents=inv.trajectory,
        reference_mode="paired",
        guidance_scale=6.0,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
        **CALL,
        **condition,
    ).frames
    noise = torch.randn(inv.latents.shape, generator=torch.Generator().manual_seed(0))
    expected = edit_by_hand(
        ours, noise, inv.trajectory, "a blue circle", 6.0, "paired", image_latents=inv.image_latents
    )
    with torch.no_grad():
        expected = ours.video_processor.postprocess_video(ours.decode_latents(expected), output_type="np")
    assert paired.shape == (1, 9, 64, 96, 3)
    np.testing.assert_allclose(paired, expected, rtol=0, atol=1e-4)


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


def test_image_latents_are_those_of_diffusers_image_to_video_pipeline(tiny_checkpoint, frames):
    """1.5-I2V's VAE sets `invert_scale_latents` (as the real one does): the conditioning image latents are divided by
    the scaling factor. Ours equal `CogVideoXImageToVideoPipeline.prepare_latents`' from the same posterior sample,
    less the padding frame in front, and invert() conditions on them (the posterior's mode by default)."""
    checkpoint = tiny_checkpoint("cogvideox1.5-5b-i2v")
    ours, theirs = load_custom(checkpoint), diffusers_pipeline(checkpoint, "cogvideox1.5-5b-i2v")
    assert ours.vae.config.invert_scale_latents
    image = theirs.video_processor.preprocess(PIL.Image.fromarray(frames[0]), height=64, width=96)
    cpu = torch.device("cpu")
    with torch.no_grad():
        _, expected = CogVideoXImageToVideoPipeline.prepare_latents(
            theirs, image, 1, 16, 9, 64, 96, torch.float32, cpu, torch.Generator().manual_seed(0)
        )
        sampled = ours.prepare_image_latents(image, 3, torch.float32, cpu, torch.Generator().manual_seed(0), True)
        mode = ours.prepare_image_latents(image, 3, torch.float32, cpu)
    assert expected.shape == (1, 4, 16, 8, 12)  # one padding frame in front
    torch.testing.assert_close(sampled, expected[:, 1:], rtol=1e-6, atol=1e-6)  # x / s there, x * (1 / s) here
    inv = ours.invert(video=frames, **CALL)
    torch.testing.assert_close(inv.image_latents, mode, rtol=1e-5, atol=1e-6)
    assert inv.image_latents[:, 1:].abs().max() == 0


@pytest.mark.skipif(not REFERENCE.exists(), reason="../shared/reference/cogvideox_family.json is not available")
@pytest.mark.parametrize("variant", FAMILIES)
def test_tiny_checkpoints_keep_the_public_checkpoints_structure(tiny_checkpoint, variant):
    """Every structural flag that ../shared/reference/cogvideox_family.json records for the public checkpoint."""
    with open(REFERENCE) as f:
        public = json.load(f)["models"][VARIANTS[variant]["hub_id"]]
    pipe = DiffusionPipeline.from_pretrained(tiny_checkpoint(variant))
    for key in ("in_channels", "patch_size_t", "patch_bias", "use_rotary_positional_embeddings",
                "use_learned_positional_embeddings"):
        if key in public["transformer"]:
            assert pipe.transformer.config[key] == public["transformer"][key], key
    assert (pipe.transformer.config.ofs_embed_dim is None) == ("ofs_embed_dim" not in public["transformer"])
    assert pipe.vae.config.scaling_factor == public["vae_scaling_factor"]
    assert pipe.vae.config.invert_scale_latents == public["vae_invert_scale_latents"]
    for key, value in public["scheduler"].items():
        if key == "class":
            assert type(pipe.scheduler).__name__ == value
        else:
            assert pipe.scheduler.config[key] == value, key


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


@pytest.mark.parametrize("variant", ["cogvideox-5b-i2v", "cogvideox1.5-5b-i2v"])
@pytest.mark.parametrize("reference_mode", ["shared", "paired"])
def test_reference_rows_keep_the_inversions_image_conditioning(tiny_checkpoint, frames, variant, reference_mode):
    """An edit from an edited first frame: the sample rows are conditioned on it, the reference rows (the inverted
    trajectory) on the source frame they were inverted with, `reference_image_latents=inv.image_latents`; without it,
    the reference rows take the sample's conditioning (the behaviour before the argument existed)."""
    pipe = load_custom(tiny_checkpoint(variant))
    inv = pipe.invert(video=frames, **CALL)
    edited = pipe.prepare_image_latents(
        pipe.video_processor.preprocess(PIL.Image.fromarray(255 - frames[0]), height=64, width=96),
        inv.latents.shape[1], inv.latents.dtype, pipe._execution_device,
    )
    assert not torch.equal(edited, inv.image_latents)
    channels = inv.latents.shape[2]
    for reference_image_latents, expected_reference in ((inv.image_latents, inv.image_latents), (None, edited)):
        inputs = []
        hook = pipe.transformer.register_forward_pre_hook(
            lambda module, args, kwargs: inputs.append(kwargs["hidden_states"][:, :, channels:].clone()),
            with_kwargs=True,
        )
        try:
            pipe(prompt="a blue circle", guidance_scale=2.0, latents=inv.trajectory[0], image_latents=edited,
                 reference_image_latents=reference_image_latents, reference_latents=inv.trajectory,
                 reference_mode=reference_mode, output_type="latent", **CALL)
        finally:
            hook.remove()
        padding = inputs[0].shape[1] - inv.latents.shape[1]  # CogVideoX 1.5 pads latent frames in front
        rows = 2  # sample rows: guidance's negative and positive
        for step_input in inputs:
            for row in step_input[:rows]:
                torch.testing.assert_close(row, pipe.pad_frames(edited, padding)[0], rtol=0, atol=0)
            for row in step_input[rows:]:
                torch.testing.assert_close(row, pipe.pad_frames(expected_reference, padding)[0], rtol=0, atol=0)
            assert len(step_input) == (3 if reference_mode == "shared" else 4)
    with pytest.raises(ValueError, match="pass the `image_latents` of the inversion"):
        pipe(prompt="x", image_latents=edited, reference_image_latents=inv.image_latents[:, :1],
             reference_latents=inv.trajectory, output_type="latent", **CALL)


def test_cogvideox_1_5_sizes_beyond_the_rope_grid_are_refused_before_any_model_work(tiny_checkpoint, frames):
    """diffusers slices 1.5's RoPE table (sample_height x sample_width latents): a larger size died inside diffusers'
    embedding code. The tiny 1.5 grid is 4 x 6 tokens of 16 pixels: at most 96x64 (width x height)."""
    checkpoint = tiny_checkpoint("cogvideox1.5-5b")
    config = checkpoint_config(checkpoint)["transformer"]
    check_size_for_positional_embeddings(config, 64, 96)
    check_size_for_positional_embeddings(config, 48, 80)  # smaller sizes are slices of the table
    message = r"96x96 \(width x height\) is beyond .*RoPE grid, which covers at most 96x64"
    with pytest.raises(ValueError, match=message):
        check_size_for_positional_embeddings(config, 96, 96)
    pipe = load_custom(checkpoint)
    seen = []
    pipe.transformer.register_forward_pre_hook(lambda *args: seen.append(1))
    with pytest.raises(ValueError, match="RoPE grid"):
        pipe.invert(video=frames, height=64, width=128, **CALL)
    with pytest.raises(ValueError, match="RoPE grid"):
        pipe(prompt="x", height=96, width=96, **CALL)
    assert seen == []


def test_invert_and_a_referenced_call_condition_on_the_same_image_latents(tiny_checkpoint, frames):
    """One preparation for an image-to-video conditioning image: resized with `resize_mode`, encoded with the
    posterior's mode, in invert() and in a referenced __call__ (before, __call__ ran diffusers' no-crop resize and
    sampled the posterior: the same frame gave latents up to 1.1 apart)."""
    pipe = load_custom(tiny_checkpoint("cogvideox-5b-i2v"))
    image = PIL.Image.fromarray(frames[0][:, 8:-8])  # another aspect: crop and diffusers' resize differ
    inputs = []
    pipe.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: inputs.append(kwargs["hidden_states"][0, :, 16:].clone()), with_kwargs=True
    )
    inv = pipe.invert(video=frames, image=image, **CALL)
    assert all(torch.equal(seen, inv.image_latents[0]) for seen in inputs)
    inputs.clear()
    pipe(prompt="x", image=image, latents=inv.trajectory[0], reference_latents=inv.trajectory,
         generator=torch.Generator().manual_seed(0), output_type="latent", **CALL)
    assert len(inputs) == 2 and all(torch.equal(seen, inv.image_latents[0]) for seen in inputs)
    expected = pipe.prepare_image_latents(pipe.image_pixels(image, 64, 96, "crop"), 3, torch.float32, "cpu")
    assert torch.equal(inv.image_latents, expected)
