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


def test_trajectory_on_the_host_in_the_model_dtype(tiny_checkpoint):
    pipe = CogVideoXDDIMInversionPipeline.from_pretrained(tiny_checkpoint("cogvideox-5b"), dtype=torch.bfloat16)
    pipe.set_progress_bar_config(disable=True)
    inv = pipe.invert(video=FRAMES, trajectory_device="cpu", **CALL)
    assert inv.trajectory.device.type == "cpu" and inv.trajectory.dtype == torch.bfloat16
    out = pipe(prompt="x", reference_latents=inv.trajectory, output_type="latent", **CALL).frames
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


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
    pipe, inv = inverted
    # tiles of 32x32 with 1/4 overlap: diffusers' CogVideoX VAE tiling keeps the shapes at this tiny size
    pipe.vae.enable_tiling(
        tile_sample_min_height=32,
        tile_sample_min_width=32,
        tile_overlap_factor_height=0.25,
        tile_overlap_factor_width=0.25,
    )
    pipe.vae.enable_slicing()
    tiled = pipe.invert(video=np.stack([FRAMES, FRAMES]), **CALL)
    assert tiled.latents.shape == (2, 3, 16, 8, 12)
    video = pipe(prompt=["x", "y"], reference_latents=tiled.trajectory, output_type="np", **CALL).frames
    assert video.shape == (2, 9, 64, 96, 3) and np.isfinite(video).all()


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
