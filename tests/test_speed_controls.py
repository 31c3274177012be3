"""Reference controls (step window, blocks, weight), trajectory memory, offloading, VAE tiling and torch.compile."""

import numpy as np
import pytest
import torch
import torch._dynamo
from conftest import TEXT_LENGTH
from diffusers import CogVideoXPipeline

from cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline, CogVideoXRefAttnProcessor
from cogvideox_ddim_inversion.testing.sample_clip import sample_clip_frames


CALL = dict(num_inference_steps=4, max_sequence_length=TEXT_LENGTH)
FRAMES = np.stack(sample_clip_frames(num_frames=9))


@pytest.fixture
def inverted(load_pipe):
    pipe = load_pipe("cogvideox-5b")
    return pipe, pipe.invert(video=FRAMES, **CALL)


def rows_per_call(pipe):
    rows = []
    pipe.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: rows.append(kwargs["hidden_states"].shape[0]), with_kwargs=True
    )
    return rows


@pytest.mark.parametrize("window,expected", [(1.0, [3, 3, 3, 3]), (0.5, [3, 3, 2, 2]), ((0.25, 0.75), [2, 3, 3, 2])])
def test_reference_step_window_skips_the_reference_rows(inverted, window, expected):
    pipe, inv = inverted
    rows = rows_per_call(pipe)
    pipe(prompt="x", reference_latents=inv.trajectory, reference_steps=window, output_type="latent", **CALL)
    assert rows == expected


def test_reference_blocks_and_weight(inverted):
    pipe, inv = inverted
    kwargs = dict(prompt="x", latents=inv.trajectory[0], output_type="latent", **CALL)
    plain = pipe(**kwargs).frames
    full = pipe(reference_latents=inv.trajectory, **kwargs).frames
    seen = []

    def record(pipe, step, timestep, callback_kwargs):
        seen.append([p.attend_to_reference for p in pipe.transformer.attn_processors.values()])
        return {}

    first_block = pipe(
        reference_latents=inv.trajectory, reference_blocks=[0], callback_on_step_end=record, **kwargs
    ).frames
    assert seen[0] == [True, False]
    no_block = pipe(reference_latents=inv.trajectory, reference_blocks=[], **kwargs).frames
    no_weight = pipe(reference_latents=inv.trajectory, reference_weight=0.0, **kwargs).frames
    half_weight = pipe(reference_latents=inv.trajectory, reference_weight=0.5, **kwargs).frames
    torch.testing.assert_close(no_block, plain, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(no_weight, plain, rtol=1e-4, atol=1e-5)
    for partial in (first_block, half_weight):
        assert (partial - plain).abs().max() > 1e-4 and (partial - full).abs().max() > 1e-4


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"reference_steps": 0.0}, "reference_steps"),
        ({"reference_steps": (0.6, 0.4)}, "reference_steps"),
        ({"reference_blocks": [5]}, r"blocks 0..1"),
        ({"reference_weight": -1.0}, "reference_weight"),
    ],
)
def test_bad_controls_are_refused(inverted, kwargs, message):
    pipe, inv = inverted
    with pytest.raises(ValueError, match=message):
        pipe(prompt="x", reference_latents=inv.trajectory, output_type="latent", **CALL, **kwargs)


def relative_error(got, expected):
    return ((got.float() - expected.float()).norm() / expected.float().norm()).item()


def test_trajectory_on_the_host_in_the_model_dtype(tiny_checkpoint):
    """A bf16 trajectory kept on the host gives the inversion and the edit of the fp32 pipeline, up to bf16 rounding
    (measured: 2% and 5% relative), and the same as keeping it where the model runs."""
    results = {}
    for dtype in (torch.float32, torch.bfloat16):
        pipe = CogVideoXDDIMInversionPipeline.from_pretrained(tiny_checkpoint("cogvideox-5b"), dtype=dtype)
        pipe.set_progress_bar_config(disable=True)
        inv = pipe.invert(video=FRAMES, trajectory_device="cpu", **CALL)
        assert inv.trajectory.device.type == "cpu" and inv.trajectory.dtype == dtype
        kwargs = dict(prompt="x", latents=inv.trajectory[0], output_type="latent", **CALL)
        out = pipe(reference_latents=inv.trajectory, **kwargs).frames
        assert out.dtype == dtype
        results[dtype] = inv.trajectory, out
    assert torch.equal(pipe.invert(video=FRAMES, **CALL).trajectory, inv.trajectory)
    (trajectory_32, out_32), (trajectory_16, out_16) = results.values()
    assert relative_error(trajectory_16, trajectory_32) < 0.05
    assert relative_error(out_16, out_32) < 0.1


def test_model_cpu_offload(tiny_checkpoint, inverted):
    pipe, inv = inverted
    kwargs = dict(
        prompt="x", latents=inv.trajectory[0], reference_latents=inv.trajectory, output_type="latent", **CALL
    )
    expected = pipe(**kwargs).frames
    offloaded = CogVideoXDDIMInversionPipeline.from_pretrained(tiny_checkpoint("cogvideox-5b"))
    offloaded.set_progress_bar_config(disable=True)
    offloaded.enable_model_cpu_offload(device="cpu")
    torch.testing.assert_close(offloaded.invert(video=FRAMES, **CALL).trajectory, inv.trajectory)
    torch.testing.assert_close(offloaded(**kwargs).frames, expected)
    assert all(type(p).__name__ == "CogVideoXAttnProcessor2_0" for p in offloaded.transformer.attn_processors.values())


def test_sequential_cpu_offload_behaves_like_cogvideox_pipeline(tiny_checkpoint, inverted):
    """Sequential offload targets an accelerator; where diffusers' own pipeline runs with it, so must this one."""
    reference = CogVideoXPipeline.from_pretrained(tiny_checkpoint("cogvideox-5b"))
    reference.set_progress_bar_config(disable=True)
    try:
        reference.enable_sequential_cpu_offload(device="cpu")
        reference("x", num_frames=9, height=64, width=96, output_type="latent", **CALL)
    except Exception as error:  # noqa: BLE001 - whatever breaks diffusers' own pipeline here
        pytest.skip(f"CogVideoXPipeline itself fails with sequential offload on this machine: {error!r:.120}")
    pipe, inv = inverted
    pipe.enable_sequential_cpu_offload(device="cpu")
    out = pipe(prompt="x", reference_latents=inv.trajectory, output_type="latent", **CALL).frames
    assert out.shape == inv.latents.shape


def test_vae_tiling_and_slicing(inverted):
    """With tiling and slicing on, inversion encodes and generation decodes each video with the VAE's own tiled
    encoder and decoder (which at this size give other latents than the untiled ones)."""
    pipe, inv = inverted
    videos = np.stack([FRAMES, FRAMES[:, ::-1]])
    pixels, _ = pipe.preprocess_source_video(videos, 64, 96, None)
    with torch.no_grad():
        untiled = pipe.prepare_video_latents(pixels, torch.float32, "cpu")
    # tiles of 32x32 with 1/4 overlap: diffusers' CogVideoX VAE tiling keeps the shapes at this tiny size
    pipe.vae.enable_tiling(
        tile_sample_min_height=32,
        tile_sample_min_width=32,
        tile_overlap_factor_height=0.25,
        tile_overlap_factor_width=0.25,
    )
    pipe.vae.enable_slicing()
    tiled = pipe.invert(video=videos, **CALL)
    assert tiled.latents.shape == (2, 3, 16, 8, 12)
    assert relative_error(tiled.latents, untiled) > 0.1  # so that the comparisons below see the tiling
    scaling = pipe.vae.config.scaling_factor
    with torch.no_grad():  # the second video by hand (the first costs as much and shows nothing more)
        encoded = pipe.vae.tiled_encode(pixels[1:])[:, :16] * scaling  # the posterior's mode: the first 16 channels
    torch.testing.assert_close(tiled.latents[1:], encoded.permute(0, 2, 1, 3, 4), rtol=1e-4, atol=1e-5)

    final = []
    video = pipe(
        prompt=["x", "y"],
        reference_latents=tiled.trajectory,
        output_type="np",
        callback_on_step_end=lambda pipe, step, t, kwargs: final.append(kwargs["latents"]) or {},
        **CALL,
    ).frames
    assert video.shape == (2, 9, 64, 96, 3)
    with torch.no_grad():
        decoded = pipe.vae.tiled_decode(final[-1][1:].permute(0, 2, 1, 3, 4) / scaling).sample
    np.testing.assert_allclose(video[1:], pipe.video_processor.postprocess_video(decoded, output_type="np"), atol=1e-5)


def test_compiles_without_graph_breaks(inverted):
    pipe, inv = inverted
    transformer = pipe.transformer
    processors = transformer.attn_processors
    transformer.set_attn_processor(CogVideoXRefAttnProcessor())
    try:
        rope = pipe._prepare_rotary_positional_embeddings(64, 96, 3, torch.device("cpu"))
        kwargs = dict(
            hidden_states=torch.cat([inv.trajectory[1]] * 3),
            encoder_hidden_states=torch.randn(3, 16, 32),
            timestep=torch.tensor([500] * 3),
            image_rotary_emb=rope,
            attention_kwargs={"reference_rows": 1, "reference_weight": 0.7},
            return_dict=False,
        )
        explanation = torch._dynamo.explain(transformer)(**kwargs)
        assert explanation.graph_break_count == 0, explanation.break_reasons
        with torch.no_grad():
            eager = transformer(**kwargs)[0]
            compiled = torch.compile(transformer, fullgraph=True, backend="eager")(**kwargs)[0]
        torch.testing.assert_close(compiled, eager)
    finally:
        transformer.set_attn_processor(processors)
        torch._dynamo.reset()
