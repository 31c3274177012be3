"""Local edits: video masks reduced to the latent grid, latent blending, paste-back, and bad masks refused early."""

import numpy as np
import PIL.Image
import pytest
import torch
import torch.nn.functional as F
from conftest import TEXT_LENGTH

from cogvideox_ddim_inversion.cogvideox_ddim_masks import (
    box_filter,
    guided_filter,
    attention_map_to_video,
    feather_mask,
    grow_mask,
    latent_frame_spans,
    mask_to_latent_grid,
)
from cogvideox_ddim_inversion.testing.sample_clip import sample_clip_frames
from cogvideox_ddim_inversion.testing.tiny_checkpoint import TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH
from cogvideox_ddim_inversion.video_io import read_mask_video, write_mask_video


CALL = dict(num_inference_steps=3, max_sequence_length=TEXT_LENGTH)
LATENT_FRAMES, LATENT_HEIGHT, LATENT_WIDTH = 3, TINY_HEIGHT // 8, TINY_WIDTH // 8


def box_mask(top=16, left=24, height=24, width=32, frames=TINY_FRAMES, size=(TINY_HEIGHT, TINY_WIDTH)):
    """bool [F, H, W]: a rectangle, aligned to the 8-pixel latent cells by default."""
    mask = np.zeros((frames, *size), dtype=bool)
    mask[:, top : top + height, left : left + width] = True
    return mask


def test_latent_frames_stand_for_the_first_frame_then_groups_of_four():
    assert latent_frame_spans(9) == [range(0, 1), range(1, 5), range(5, 9)]
    assert [list(span) for span in latent_frame_spans(13)][3] == [9, 10, 11, 12]
    assert len(latent_frame_spans(49)) == 13


def test_each_latent_cell_takes_the_largest_value_of_its_pixels_and_frames():
    mask = torch.zeros(1, 9, 64, 96)
    mask[0, 6, 9, 17] = 1.0  # pixel frame 6 -> latent frame 2; pixel (9, 17) -> cell (1, 2)
    mask[0, 0, 63, 0] = 0.25  # frame 0 -> latent frame 0, cell (7, 0), soft value kept
    grid = mask_to_latent_grid(mask, 8, 4)
    assert grid.shape == (1, 3, 1, 8, 12)
    expected = torch.zeros(1, 3, 1, 8, 12)
    expected[0, 2, 0, 1, 2] = 1.0
    expected[0, 0, 0, 7, 0] = 0.25
    assert torch.equal(grid, expected)
    mask[0, 4, 0, 95] = 0.5  # frame 4 is the last of latent frame 1 (frames 1..4), not of latent frame 2
    assert mask_to_latent_grid(mask, 8, 4)[0, 1, 0, 0, 11] == 0.5


def test_dilation_grows_by_whole_pixels_and_feathering_ramps_down_outside():
    mask = torch.zeros(1, 1, 21, 21)
    mask[0, 0, 10, 10] = 1.0
    grown = grow_mask(mask, 2)
    assert grown.sum() == 25 and grown[0, 0, 8:13, 8:13].eq(1).all()
    soft = feather_mask(mask, 3)
    # 1 inside, then 1 - d / (feather + 1) at (square) distance d, 0 from d = 4 on
    assert [soft[0, 0, 10, 10 + d].item() for d in range(6)] == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    assert soft[0, 0, 7, 13].item() == 0.25  # the corner of the square ring at distance 3
    assert feather_mask(grown, 3)[0, 0, 8:13, 8:13].eq(1).all()  # the inside is never lowered


def test_attention_maps_upsample_per_latent_frame_to_pixel_frames():
    grid = torch.zeros(1, 3, 4, 6)
    grid[0, 1, 2, 3] = 1.0
    video = attention_map_to_video(grid, 9, 64, 96)
    assert video.shape == (1, 9, 64, 96)
    assert [bool(video[0, f].any()) for f in range(9)] == [False, True, True, True, True] + [False] * 4
    assert video[0, 2, 40, 56] == video[0, 2].max()  # the token's centre (row 2, col 3 of 16-pixel patches)


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint):
    from cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline

    pipe = CogVideoXDDIMInversionPipeline.from_pretrained(tiny_checkpoint("cogvideox-5b"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize(
    "form",
    ["bool", "uint8", "float", "pil", "file", "twice the size", "batch axis", "tensor"],
)
def test_every_mask_form_gives_the_same_latent_mask(pipe, form, tmp_path):
    mask = box_mask()
    if form == "uint8":
        mask = mask.astype(np.uint8) * 255
    elif form == "float":
        mask = mask.astype(np.float32)
    elif form == "pil":
        mask = [PIL.Image.fromarray(frame.astype(np.uint8) * 255) for frame in mask]
    elif form == "file":
        mask = write_mask_video(mask, tmp_path / "mask.mp4")
    elif form == "twice the size":
        mask = mask.repeat(2, axis=1).repeat(2, axis=2)
    elif form == "batch axis":
        mask = mask[None]
    elif form == "tensor":
        mask = torch.from_numpy(mask)
    pixels = pipe.prepare_mask(mask, TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH)
    assert pixels.shape == (1, TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH)
    expected = torch.zeros(1, LATENT_FRAMES, 1, LATENT_HEIGHT, LATENT_WIDTH)
    expected[..., 2:5, 3:7] = 1.0
    assert torch.equal(mask_to_latent_grid(pixels, 8, 4), expected)


def test_mask_video_file_round_trip(tmp_path):
    mask = box_mask(top=5, left=9, height=30, width=41)
    path = write_mask_video(torch.from_numpy(mask), tmp_path / "mask.mp4", fps=8)
    assert np.array_equal(read_mask_video(path), mask)
    assert read_mask_video(path, skip_frames_start=0, frame_stride=1).shape == (9, TINY_HEIGHT, TINY_WIDTH)


@pytest.fixture(scope="module")
def inverted(pipe):
    frames = np.stack(sample_clip_frames(num_frames=TINY_FRAMES))
    inv = pipe.invert(video=frames, prompt="a red circle", **CALL)
    return pipe, inv, frames


def edit(pipe, inv, **kwargs):
    arguments = dict(
        prompt="a blue circle",
        latents=inv.trajectory[0],
        reference_latents=inv.trajectory,
        reference_prompt="a red circle",
        guidance_scale=6.0,
        **CALL,
    )
    return pipe(**{**arguments, **kwargs}).frames


def latent_region(mask, latent_dilation=1):
    """bool [1, F, 1, h, w]: the latent cells a pixel mask frees, with the default one-cell margin."""
    return grow_mask(mask_to_latent_grid(torch.from_numpy(mask).float()[None], 8, 4), latent_dilation).bool()


@pytest.mark.parametrize("latent_dilation", [1, 0])
def test_outside_a_hard_mask_the_edit_is_exactly_the_source_latents(inverted, latent_dilation):
    pipe, inv, _ = inverted
    mask = box_mask()
    kwargs = dict(mask=mask, source_latents=inv.latents, mask_latent_dilation=latent_dilation, output_type="latent")
    edited = edit(pipe, inv, **kwargs)
    inside = latent_region(mask, latent_dilation).expand_as(edited)
    assert inside.float().mean() < 0.5
    assert torch.equal(edited[~inside], inv.latents[~inside])
    change = (edited - inv.latents).abs().amax(dim=2)  # per latent cell, over channels
    assert change[inside[:, :, 0]].min() > 1e-3  # every freed cell changed

    # blending only over the first steps leaves the last ones free: the outside is no longer exactly the source
    early = edit(pipe, inv, mask_steps=0.5, **kwargs)
    assert not torch.equal(early[~inside], inv.latents[~inside])


def test_hard_mask_at_partial_strength_ends_on_the_clean_source_latents(pipe):
    frames = np.stack(sample_clip_frames(num_frames=TINY_FRAMES))
    inv = pipe.invert(video=frames, prompt="a red circle", strength=0.7, num_inference_steps=4, max_sequence_length=16)
    assert inv.trajectory.shape[0] == 2
    mask = box_mask()
    edited = pipe(
        prompt="a blue circle",
        latents=inv.trajectory[0],
        reference_latents=inv.trajectory,
        strength=0.7,
        num_inference_steps=4,
        max_sequence_length=16,
        mask=mask,
        source_latents=inv.latents,
        output_type="latent",
    ).frames
    inside = latent_region(mask).expand_as(edited)
    assert torch.equal(edited[~inside], inv.latents[~inside])


def test_an_all_ones_mask_changes_nothing(inverted):
    pipe, inv, _ = inverted
    plain = edit(pipe, inv, output_type="latent")
    ones = np.ones((TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH), bool)
    everywhere = edit(pipe, inv, mask=ones, source_latents=inv.latents, output_type="latent")
    assert torch.equal(everywhere, plain)


def test_paste_back_shows_the_source_pixels_outside_the_feathered_mask(inverted):
    pipe, inv, frames = inverted
    mask = box_mask()
    feather = 4
    common = dict(mask=mask, source_latents=inv.latents, mask_feather=feather, output_type="np")
    outside = ~grow_mask(torch.from_numpy(mask).float(), feather).bool().numpy()
    pasted = edit(pipe, inv, paste_back=True, source_video=frames, **common)[0]
    np.testing.assert_allclose(pasted[outside], (frames / 255.0)[outside], atol=1e-6)
    assert np.abs(pasted[mask] - frames[mask] / 255.0).max() > 0.1  # inside, the (random tiny model's) edit

    # without `source_video`, the VAE's reconstruction of the source latents is pasted
    with torch.no_grad():
        reconstruction = pipe.video_processor.postprocess_video(pipe.decode_latents(inv.latents), output_type="np")[0]
    assert np.abs(reconstruction[outside] - frames[outside] / 255.0).max() > 0.1
    pasted = edit(pipe, inv, paste_back=True, **common)[0]
    np.testing.assert_allclose(pasted[outside], reconstruction[outside], atol=1e-6)


@pytest.fixture
def model_calls(pipe):
    """Names of the models called while the test runs."""
    calls = []
    models = {"transformer": pipe.transformer, "text encoder": pipe.text_encoder, "VAE encoder": pipe.vae.encoder,
              "VAE decoder": pipe.vae.decoder}
    handles = [
        model.register_forward_pre_hook(lambda *args, name=name: calls.append(name)) for name, model in models.items()
    ]
    yield calls
    for handle in handles:
        handle.remove()


@pytest.mark.parametrize(
    "mask,kwargs,message",
    [
        (box_mask(frames=8), {}, "The mask has 8 frames but the video has 9"),
        (box_mask(frames=17), {}, "The mask has 17 frames but the video has 9"),
        (box_mask(size=(64, 64)), {}, "another aspect ratio cannot be resized"),
        (np.zeros((TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH), bool), {}, "0 everywhere"),
        (box_mask().astype(np.uint8), {}, "uint8 with values 0 and 1"),
        (box_mask().astype(np.float32) * 2, {}, r"values must be in \[0, 1\]"),
        (box_mask()[..., None], {}, "no channel axis"),
        (np.stack([box_mask()] * 3), {}, "The mask holds 3 videos for 1"),
        (box_mask(), {"source_latents": None}, "needs `source_latents=inv.latents`"),
        (box_mask(), {"reference_latents": None}, "pass `reference_latents=inv.trajectory`"),
        (box_mask(), {"mask_steps": 1.5}, "`mask_steps` must be"),
        (box_mask(), {"mask_feather": -1}, "`mask_dilation` and `mask_feather` are pixels"),
        (box_mask(), {"paste_back": True, "output_type": "latent"}, "does nothing with `output_type='latent'`"),
        (box_mask(), {"paste_back": True, "source_video": np.zeros((17, 64, 96, 3), np.uint8)}, "of 17 frames"),
        (None, {"paste_back": True}, "pass `mask` too"),
        (None, {"source_video": np.zeros((9, 64, 96, 3), np.uint8)}, "only used with `paste_back=True`"),
    ],
)
def test_bad_masks_are_refused_before_any_model_work(inverted, model_calls, mask, kwargs, message):
    pipe, inv, _ = inverted
    arguments = {"mask": mask, "source_latents": inv.latents, **kwargs}
    with pytest.raises(ValueError, match=message):
        edit(pipe, inv, **arguments)
    assert model_calls == []


def test_mask_file_with_too_few_frames_is_refused(pipe, tmp_path):
    path = write_mask_video(box_mask(frames=5), tmp_path / "short.mp4")
    with pytest.raises(ValueError, match="The mask has 5 frames but the video has 9"):
        pipe.prepare_mask(path, TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH)


def test_a_mask_of_another_aspect_ratio_is_resized_as_the_source_was(pipe):
    wide = np.zeros((TINY_FRAMES, TINY_HEIGHT, 128), dtype=bool)  # 128x64: the source before its centre crop to 96
    wide[:, 8:40, 40:72] = True
    with pytest.raises(ValueError, match="Pass `mask_resize_mode`"):
        pipe.prepare_mask(wide, TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH)
    cropped = pipe.prepare_mask(wide, TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH, resize_mode="crop")
    assert torch.equal(cropped[0], torch.from_numpy(wide[:, :, 16:112]).float())  # the same centre crop
    padded = pipe.prepare_mask(wide, TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH, resize_mode="pad")
    assert padded.shape == (1, TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH) and padded[0, :, :10].max() == 0  # black bars


def test_guided_filter_runs_in_float32_and_matches_float64():
    """Mask refinement ran in float64 on the CPU; it now runs where the frames are, in float32. Running sums in
    float32 would lose the small differences of large totals: the means are taken out first, so at 720x480 the
    float32 filter is within 1e-4 of the float64 reference (mask values are in [0, 1], thresholded at ~0.5)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    generator = torch.Generator().manual_seed(0)
    guide = torch.rand(2, 3, 480, 720, generator=generator) * 0.2 + 0.8  # bright frames: large running sums
    source = F.interpolate(torch.rand(2, 1, 30, 45, generator=generator), size=(480, 720), mode="bilinear")[:, 0]

    class Float64Ops(TorchDispatchMode):
        seen = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            result = func(*args, **(kwargs or {}))
            if isinstance(result, torch.Tensor) and result.dtype == torch.float64:
                self.seen.append(str(func))
            return result

    with Float64Ops() as mode:
        fast = guided_filter(guide, source, radius=16)
    assert mode.seen == [] and fast.dtype == torch.float32
    reference = guided_filter(guide.double(), source.double(), radius=16)
    assert reference.dtype == torch.float64
    assert (fast.double() - reference).abs().max() < 1e-4
    box = box_filter(guide, 16)
    assert (box.double() - box_filter(guide.double(), 16)).abs().max() < 1e-5
