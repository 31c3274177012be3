"""CogVideoXDDIMInversionPipeline on tiny random checkpoints: parity, reference rows, processor handling, bad input."""

import os
import stat

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import TEXT_LENGTH
from diffusers import CogVideoXPipeline
from diffusers.models.attention_processor import CogVideoXAttnProcessor2_0

from cogvideox_ddim_inversion import (
    CogVideoXDDIMInversionOutput,
    CogVideoXDDIMInversionPipeline,
    CogVideoXRefAttnProcessor,
)
from cogvideox_ddim_inversion.cogvideox_ddim_checkpoint import check_cogvideox_config
from cogvideox_ddim_inversion.cogvideox_ddim_sampling import step_window
from cogvideox_ddim_inversion.testing.sample_clip import sample_clip_frames, write_sample_clip
from cogvideox_ddim_inversion.testing.tiny_checkpoint import write_tiny_checkpoint
from cogvideox_ddim_inversion.video_io import read_video


CALL = dict(num_inference_steps=3, max_sequence_length=TEXT_LENGTH)


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def count_rows(pipe):
    """Record the batch size of every transformer call."""
    rows = []
    pipe.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(kwargs["hidden_states"].shape[0]), with_kwargs=True
    )
    return rows


@pytest.mark.parametrize("variant", ["cogvideox-5b", "cogvideox-2b"])
@pytest.mark.parametrize("output_type", ["pt", "latent"])
def test_without_reference_equals_cogvideox_pipeline(tiny_checkpoint, variant, output_type):
    reference = CogVideoXPipeline.from_pretrained(tiny_checkpoint(variant))
    reference.set_progress_bar_config(disable=True)
    ours = CogVideoXDDIMInversionPipeline.from_pipe(reference)
    kwargs = dict(prompt="a red circle moving left", guidance_scale=6.0, output_type=output_type, **CALL)
    expected = reference(generator=seeded(1), **kwargs).frames
    got = ours(generator=seeded(1), **kwargs).frames
    assert torch.equal(got, expected)
    dynamic = dict(kwargs, use_dynamic_cfg=True, negative_prompt="blurry")
    assert torch.equal(ours(generator=seeded(2), **dynamic).frames, reference(generator=seeded(2), **dynamic).frames)


@pytest.fixture
def inverted(load_pipe):
    pipe = load_pipe("cogvideox-5b")
    frames = sample_clip_frames(num_frames=9)
    inv = pipe.invert(video=np.stack(frames), **CALL)
    return pipe, inv


@pytest.mark.parametrize(
    "guidance_scale,mode,rows",
    [(6.0, "shared", 3), (6.0, "paired", 4), (1.0, "shared", 2), (1.0, "paired", 2)],
)
def test_rows_per_step(inverted, guidance_scale, mode, rows):
    pipe, inv = inverted
    seen = count_rows(pipe)
    pipe(
        prompt="a blue circle",
        reference_latents=inv.trajectory,
        reference_mode=mode,
        guidance_scale=guidance_scale,
        output_type="latent",
        **CALL,
    )
    assert seen == [rows] * 3


def test_reference_changes_the_sample_and_zero_weight_removes_it(inverted):
    pipe, inv = inverted
    kwargs = dict(prompt="a blue circle", latents=inv.trajectory[0], guidance_scale=6.0, output_type="latent", **CALL)
    plain = pipe(**kwargs).frames
    guided = pipe(reference_latents=inv.trajectory, **kwargs).frames
    ignored = pipe(reference_latents=inv.trajectory, attention_kwargs={"reference_weight": 0.0}, **kwargs).frames
    assert (guided - plain).abs().max() > 1e-3
    torch.testing.assert_close(ignored, plain, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["shared", "paired"])
def test_two_videos_in_one_call_edit_as_each_alone(load_pipe, mode):
    """Batching is invisible: inverting and editing two different videos (with guidance: rows [uncond x2; cond x2;
    references]) in one call gives each video what inverting and editing it alone gives."""
    pipe = load_pipe("cogvideox-5b")
    clip = np.stack(sample_clip_frames(num_frames=9))
    videos = np.stack([clip, clip[::-1, ::-1]])  # the second plays backwards, mirrored upside down
    prompts = ["a blue circle moving right", "a green square"]
    kwargs = dict(guidance_scale=6.0, reference_mode=mode, output_type="latent", **CALL)
    inv = pipe.invert(video=videos, **CALL)
    both = pipe(prompt=prompts, latents=inv.trajectory[0], reference_latents=inv.trajectory, **kwargs).frames
    for index, prompt in enumerate(prompts):
        alone = pipe.invert(video=videos[index], **CALL)
        torch.testing.assert_close(inv.trajectory[:, index : index + 1], alone.trajectory, rtol=1e-4, atol=1e-5)
        edit = pipe(prompt=prompt, latents=alone.trajectory[0], reference_latents=alone.trajectory, **kwargs).frames
        torch.testing.assert_close(both[index : index + 1], edit, rtol=1e-4, atol=1e-5)


def test_invert_continues_from_the_latents_a_callback_returns(load_pipe):
    """As in `__call__`, a `callback_on_step_end` may replace the latents: the trajectory stores the replacement and
    the next inverse step starts from it."""
    pipe = load_pipe("cogvideox-5b")
    inputs = []
    pipe.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: inputs.append(kwargs["hidden_states"].clone()), with_kwargs=True
    )
    returned = []

    def shift(pipe, step, timestep, callback_kwargs):
        returned.append(callback_kwargs["latents"] + 0.25 * (step + 1))
        return {"latents": returned[-1]}

    frames = np.stack(sample_clip_frames(num_frames=9))
    inv = pipe.invert(video=frames, callback_on_step_end=shift, **CALL)
    assert len(returned) == len(inputs) == 3
    for step in range(3):
        assert torch.equal(inv.trajectory[2 - step], returned[step])  # step 0 is the least noisy, trajectory[-1]
    for step in range(2):
        assert torch.equal(inputs[step + 1], returned[step])


def test_shared_and_paired_agree_without_guidance_when_texts_match(inverted):
    """Without guidance both modes put one reference row beside the sample; with the same text they are equal."""
    pipe, inv = inverted
    kwargs = dict(
        prompt="",
        latents=inv.trajectory[0],
        guidance_scale=1.0,
        output_type="latent",
        reference_latents=inv.trajectory,
        **CALL,
    )
    shared = pipe(reference_prompt="", reference_mode="shared", **kwargs).frames
    paired = pipe(reference_mode="paired", **kwargs).frames
    torch.testing.assert_close(shared, paired, rtol=1e-5, atol=1e-6)


def test_user_processors_are_restored_after_a_call_and_after_an_error(inverted):
    pipe, inv = inverted
    mine = {name: CogVideoXAttnProcessor2_0() for name in pipe.transformer.attn_processors}
    pipe.transformer.set_attn_processor(dict(mine))
    pipe(prompt="x", reference_latents=inv.trajectory, output_type="latent", **CALL)
    assert pipe.transformer.attn_processors == mine

    def fail(pipe, step, timestep, callback_kwargs):
        assert all(isinstance(p, CogVideoXRefAttnProcessor) for p in pipe.transformer.attn_processors.values())
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        pipe(prompt="x", reference_latents=inv.trajectory, callback_on_step_end=fail, output_type="latent", **CALL)
    assert pipe.transformer.attn_processors == mine


def test_reference_sets_the_default_size(load_pipe, tiny_checkpoint):
    pipe = load_pipe("cogvideox-5b")
    frames = sample_clip_frames(num_frames=9, height=48, width=80)
    inv = pipe.invert(video=frames, height=32, width=48, **CALL)
    assert inv.latents.shape == (1, 3, 16, 4, 6)
    video = pipe(prompt="x", reference_latents=inv.trajectory, output_type="np", **CALL).frames
    assert video.shape == (1, 9, 32, 48, 3)


def test_callbacks_see_every_step(inverted):
    pipe, inv = inverted
    seen = []

    def record(pipe, step, timestep, callback_kwargs):
        seen.append((step, int(timestep), callback_kwargs["latents"].shape))
        return {}

    pipe(prompt="x", reference_latents=inv.trajectory, callback_on_step_end=record, output_type="latent", **CALL)
    assert [(s, t) for s, t, _ in seen] == [(0, 999), (1, 666), (2, 332)]  # trailing spacing
    seen.clear()
    pipe.invert(latents=inv.latents, callback_on_step_end=record, **CALL)
    assert [(s, t) for s, t, _ in seen] == [(0, 332), (1, 666), (2, 999)]


def test_every_video_type_gives_the_same_latents(load_pipe, tmp_path):
    pipe = load_pipe("cogvideox-5b")
    frames = sample_clip_frames(num_frames=9)
    array = np.stack(frames)
    from_array = pipe.invert(video=array, **CALL).latents
    from_pil = pipe.invert(video=[PIL.Image.fromarray(f) for f in frames], **CALL).latents
    from_tensor = pipe.invert(video=torch.from_numpy(array).permute(0, 3, 1, 2), **CALL).latents
    from_float = pipe.invert(video=array.astype(np.float32) / 255, **CALL).latents
    from_list = pipe.invert(video=list(array), **CALL).latents
    for other in (from_pil, from_tensor, from_float, from_list):
        torch.testing.assert_close(other, from_array, rtol=1e-5, atol=1e-5)
    # a file path is decoded with read_video (the model's native frame count) and then treated like frames
    clip = write_sample_clip(tmp_path / "clip.mp4", num_frames=17)
    inv = pipe.invert(video=clip, **CALL)
    frames_read, fps = read_video(clip, max_num_frames=9)
    assert inv.fps == fps == 8.0
    assert torch.equal(inv.latents, pipe.invert(video=frames_read, **CALL).latents)


# Bad input ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda inv: {"reference_latents": inv.trajectory[1:]}, "has 2 steps but this call runs 3"),
        (lambda inv: {"reference_latents": inv.trajectory[0]}, r"trajectory tensor \[T, B, F, C, H, W\]"),
        (
            lambda inv: {"reference_latents": inv.trajectory, "reference_timesteps": inv.timesteps + 1},
            "differ from this call's timesteps",
        ),
        (lambda inv: {"reference_latents": inv.trajectory, "height": 32}, "use the same height, width"),
        (  # several prompts may share one inverted video, but two videos need one prompt each
            lambda inv: {"reference_latents": torch.cat([inv.trajectory] * 2, dim=1), "prompt": ["a", "b", "c"]},
            "use the same height, width",
        ),
        (lambda inv: {"reference_latents": inv.trajectory, "reference_mode": "both"}, "'shared' or 'paired'"),
    ],
    ids=["length", "ndim", "timesteps", "shape", "batch", "mode"],
)
def test_bad_reference_is_refused(inverted, change, message):
    pipe, inv = inverted
    kwargs = dict(prompt="x", output_type="latent", **CALL)
    kwargs.update(change(inv))
    with pytest.raises(ValueError, match=message):
        pipe(**kwargs)


def test_bad_videos_are_refused(load_pipe, tmp_path):
    pipe = load_pipe("cogvideox-5b")
    with pytest.raises(FileNotFoundError, match="Check the path"):
        pipe.invert(video=str(tmp_path / "missing.mp4"), **CALL)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    with pytest.raises(ValueError, match="Could not decode"):
        pipe.invert(video=str(broken), **CALL)
    with pytest.raises(ValueError, match=r"Pass its first 9 frames \(e.g. `video\[:9\]`\)"):
        pipe.invert(video=np.stack(sample_clip_frames(num_frames=13)), **CALL)  # 4 latent frames would decode to 16
    with pytest.raises(ValueError, match="at least 9"):
        pipe.invert(video=np.stack(sample_clip_frames(num_frames=3)), **CALL)
    with pytest.raises(TypeError, match="file path, a list of PIL images"):
        pipe.invert(video=12, **CALL)


def test_non_cogvideox_components_are_refused(tiny_checkpoint):
    components = CogVideoXPipeline.from_pretrained(tiny_checkpoint("cogvideox-5b")).components
    with pytest.raises(ValueError, match="not a CogVideoX checkpoint.*THUDM/CogVideoX-5b"):
        CogVideoXDDIMInversionPipeline(**{**components, "transformer": torch.nn.Linear(2, 2)})
    with pytest.raises(ValueError, match="not a CogVideoX checkpoint"):
        check_cogvideox_config(components["transformer"].config, {})


@pytest.mark.parametrize("reference_mode", ["shared", "paired"])
def test_several_prompts_share_one_inverted_video(load_pipe, reference_mode):
    """N prompts on one inversion in one call equal N separate edits; shared mode runs 2N + 1 rows per step."""
    pipe = load_pipe("cogvideox-5b")
    frames = np.stack(sample_clip_frames(num_frames=9))
    inv = pipe.invert(video=frames, prompt="a red disc", num_inference_steps=3, max_sequence_length=TEXT_LENGTH)
    prompts = ["a blue disc", "a green disc", "a yellow disc"]
    common = dict(reference_latents=inv.trajectory, reference_prompt="a red disc", reference_mode=reference_mode,
                  latents=inv.trajectory[0], num_inference_steps=3, guidance_scale=5.0,
                  max_sequence_length=TEXT_LENGTH, output_type="latent")
    rows = []
    forward = pipe.transformer.forward
    pipe.transformer.forward = lambda *args, **kwargs: rows.append(kwargs["hidden_states"].shape[0]) or forward(
        *args, **kwargs)
    batched = pipe(prompt=prompts, **common).frames
    assert rows == [2 * len(prompts) + 1 if reference_mode == "shared" else 4 * len(prompts)] * 3
    separate = torch.cat([pipe(prompt=prompt, **common).frames for prompt in prompts])
    torch.testing.assert_close(batched, separate, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(separate[0], separate[1])  # the prompts do change the edit


def test_saved_inversion_loads_bit_for_bit_and_refuses_another_checkpoint(load_pipe, tiny_checkpoint, tmp_path):
    from cogvideox_ddim_inversion import CogVideoXDDIMInversionOutput

    pipe = load_pipe("cogvideox1.5-5b-i2v")
    inv = pipe.invert(video=np.stack(sample_clip_frames(num_frames=9)), prompt="a red disc", num_inference_steps=2,
                      max_sequence_length=TEXT_LENGTH)
    path = inv.save(tmp_path / "inv.safetensors")
    loaded = CogVideoXDDIMInversionOutput.load(path, pipeline=pipe)
    for name in ("latents", "trajectory", "timesteps", "image_latents"):
        assert torch.equal(getattr(loaded, name), getattr(inv, name)), name
    assert loaded.settings == inv.settings and loaded.settings["num_inference_steps"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["inv.safetensors"]  # no temporary file left
    with pytest.raises(ValueError, match="transformer.in_channels: inversion 32, this pipeline 16"):
        CogVideoXDDIMInversionOutput.load(path, pipeline=load_pipe("cogvideox1.5-5b"))
    other = CogVideoXDDIMInversionPipeline.from_pretrained(
        write_tiny_checkpoint(tmp_path / "other", "cogvideox1.5-5b-i2v", seed=1))
    with pytest.raises(ValueError, match="made by other weights"):
        CogVideoXDDIMInversionOutput.load(path, pipeline=other)


def test_step_windows_round_halves_up():
    # Python's round() would give range(0, 2) here (0.5 -> 0, 1.5 -> 2): halves go up, consistently.
    assert CogVideoXDDIMInversionPipeline.reference_step_window((0.25, 0.75), 2) == range(1, 2)
    assert step_window(0.25, 10) == range(0, 3)
    assert step_window(0.5, 5) == range(0, 3)
    assert step_window((0.2, 0.6), 10, "mask_steps") == range(2, 6)


def test_empty_step_windows_are_refused_before_any_model_work(load_pipe):
    """`reference_steps=0.1` of 4 steps selected no step and silently gave the unreferenced output; `mask_steps=0.1`
    the unmasked edit; invert(mask_words=..., mask_steps=0.1) failed only after the whole inversion."""
    pipe = load_pipe("cogvideox-5b")
    seen = []
    pipe.transformer.register_forward_pre_hook(lambda *args: seen.append("transformer"))
    pipe.text_encoder.register_forward_pre_hook(lambda *args: seen.append("text encoder"))
    trajectory = torch.zeros(4, 1, 3, 16, 8, 12)
    steps = dict(num_inference_steps=4, max_sequence_length=TEXT_LENGTH)
    with pytest.raises(ValueError, match=r"`reference_steps` 0.1 selects no step of 4.*at least 1/4"):
        pipe(prompt="a red circle", reference_latents=trajectory, reference_steps=0.1, **steps)
    with pytest.raises(ValueError, match=r"`mask_steps` 0.1 selects no step of 4"):
        pipe(prompt="a red circle", reference_latents=trajectory, mask=torch.ones(9, 64, 96),
             source_latents=trajectory[0], mask_steps=0.1, **steps)
    frames = np.stack(sample_clip_frames(num_frames=9))
    with pytest.raises(ValueError, match=r"`mask_steps` 0.1 selects no step of 4"):
        pipe.invert(video=frames, prompt="a red circle", mask_words=["red"], mask_steps=0.1, **steps)
    with pytest.raises(ValueError, match=r"`reference_steps` \(0.5, 0.6\) selects no step of 4"):
        pipe(prompt="a red circle", reference_latents=trajectory, reference_steps=(0.5, 0.6), **steps)
    assert seen == []


def test_saved_inversion_has_the_permissions_of_any_new_file(tmp_path):
    inv = CogVideoXDDIMInversionOutput(
        latents=torch.zeros(1, 1, 2, 2, 2), trajectory=torch.zeros(1, 1, 1, 2, 2, 2), timesteps=torch.tensor([999])
    )
    previous = os.umask(0o022)
    try:
        path = inv.save(tmp_path / "inv.safetensors")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644  # 0666 less the umask, not mkstemp's 0600
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".partial-")]
    assert torch.equal(CogVideoXDDIMInversionOutput.load(path).trajectory, inv.trajectory)


def test_num_videos_per_prompt_other_than_one_is_refused(load_pipe):
    pipe = load_pipe("cogvideox-5b")
    with pytest.raises(ValueError, match=r"`num_videos_per_prompt=2` is not supported.*\[p\] \* n"):
        pipe(prompt="a red circle", num_videos_per_prompt=2, **CALL)
