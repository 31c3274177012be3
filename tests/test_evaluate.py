"""Edit scores without model weights: PSNR/SSIM inside and outside a mask, flow-warp error, seam ratio."""

import math

import numpy as np
import pytest
import torch

from cogvideox_ddim_inversion.cogvideox_ddim_video_io import write_mask_video, write_video
from cogvideox_ddim_inversion.cogvideox_ddim_windows import WindowSchedule


pytest.importorskip("cv2", reason="evaluate needs opencv-python-headless")
from cogvideox_ddim_inversion.evaluate import evaluate_edit, seam_ratio  # noqa: E402


def moving_texture(frames=17, height=48, width=64, speed=2, seed=0) -> np.ndarray:
    """A smooth random colour texture sliding right by `speed` pixels per frame: `[F, H, W, 3]` uint8."""
    import cv2

    rng = np.random.default_rng(seed)
    texture = rng.random((height, width + speed * frames, 3)).astype(np.float32)
    texture = cv2.GaussianBlur(texture, (0, 0), 3)
    texture = (texture - texture.min()) / (texture.max() - texture.min())
    video = [texture[:, speed * (frames - t) : speed * (frames - t) + width] for t in range(frames)]
    return (np.stack(video) * 200 + 20).round().astype(np.uint8)


def test_a_video_scored_against_itself():
    source = moving_texture()
    scores = evaluate_edit(source, source.copy(), window_boundaries=[5, 9])
    assert scores["psnr"] == math.inf and scores["ssim"] == 1.0
    assert scores["warp_error"] == scores["source_warp_error"] > 0 and scores["warp_error_ratio"] == 1.0
    assert scores["seam_ratio_normalised"] == 1.0
    assert (scores["frames"], scores["height"], scores["width"]) == (17, 48, 64)


def test_a_constant_shift_gives_its_known_psnr_and_scores_are_deterministic():
    source = moving_texture()
    edit = source + 10  # values stay within 20..230
    scores = evaluate_edit(edit, source)
    assert scores["psnr"] == pytest.approx(20 * math.log10(255 / 10), abs=1e-4)  # 28.1308 dB
    assert 0.9 < scores["ssim"] < 1.0
    assert evaluate_edit(edit, source) == scores


def test_inside_and_outside_a_mask():
    source = moving_texture()
    mask = np.zeros(source.shape[:3], dtype=np.float32)
    mask[:, 10:30, 20:44] = 1
    edit = source.copy()
    edit[:, 10:30, 20:44] += 20  # changed only inside the mask
    scores = evaluate_edit(edit, source, mask=mask)
    assert scores["psnr_inside"] == pytest.approx(20 * math.log10(255 / 20), abs=1e-4)
    assert scores["psnr_outside"] == math.inf
    assert scores["ssim_inside"] < scores["ssim_outside"] < 1.0  # SSIM's window sees the mask edge from outside
    assert scores["psnr_inside"] < scores["psnr"] < scores["psnr_outside"]
    # an empty region has no score
    empty = evaluate_edit(edit, source, mask=np.zeros_like(mask), flow=False)
    assert empty["psnr_inside"] is None and empty["ssim_inside"] is None and empty["psnr_outside"] == empty["psnr"]
    assert "warp_error" not in empty


def test_flow_warp_error_tells_an_edit_that_follows_the_motion_from_one_that_does_not():
    source = moving_texture()
    recoloured = source[..., ::-1].copy()  # same motion, other colours
    frozen = np.repeat(source[:1], len(source), axis=0)  # no motion
    follows = evaluate_edit(recoloured, source)
    still = evaluate_edit(frozen, source)
    assert follows["source_warp_error"] < 0.01  # the flow explains the source's motion
    assert follows["warp_error_ratio"] < 1.5
    assert still["warp_error_ratio"] > 3 * follows["warp_error_ratio"]


def test_seam_ratio_finds_a_jump_at_a_window_boundary():
    source = moving_texture(frames=29).astype(np.float32) / 255
    schedule = WindowSchedule.for_clip(8, 4, window_overlap=0)  # 29 frames (8 latent frames) cut into 2 windows
    boundaries = schedule.video_boundaries()
    assert boundaries == [13]
    smooth = torch.from_numpy(source).movedim(-1, 1)
    assert seam_ratio(smooth, boundaries) == pytest.approx(1.0, abs=0.1)
    jumped = smooth.clone()
    jumped[13:] = (jumped[13:] + 0.1).clamp(0, 1)  # the second window's frames come out brighter
    assert seam_ratio(jumped, boundaries) > 2
    scores = evaluate_edit(jumped, smooth, window_boundaries=boundaries, temporal_compression=4, flow=False)
    assert scores["seam_ratio_normalised"] > 2 and scores["source_seam_ratio"] == pytest.approx(1.0, abs=0.1)
    assert scores["window_boundaries"] == [13]


def test_seam_ratio_compares_with_latent_frame_edges_only_when_asked():
    # a VAE-like clip: still inside each group of 4 frames, a step at every group edge (1, 5, 9, ...)
    video = torch.zeros(33, 3, 4, 4)
    for b in range(1, 33, 4):
        video[b:] += 0.02
    assert seam_ratio(video, [17]) > 3  # against every frame change, each group edge looks like a seam
    assert seam_ratio(video, [17], temporal_compression=4) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"Window boundaries \[18\] are not latent-frame edges \(1 \+ 4k\)"):
        seam_ratio(video, [18], temporal_compression=4)


def test_video_files(tmp_path):
    source = moving_texture(frames=17, height=64, width=96)
    path = write_video(list(source), tmp_path / "source.mp4")
    assert evaluate_edit(path, path)["psnr"] == math.inf
    # a source file of another size is read at the edit's size (crop, as the edit command fits it)
    edit = source[:, ::2, ::2]
    scores = evaluate_edit(edit, path, flow=False)
    assert (scores["height"], scores["width"]) == (32, 48) and 20 < scores["psnr"] < math.inf
    # the source's frame selection as the edit selected it
    strided = evaluate_edit(edit[::2], path, flow=False, frame_stride=2)
    assert strided["frames"] == 9 and strided["psnr"] == pytest.approx(scores["psnr"], abs=1.5)
    mask = np.zeros(source.shape[:3], dtype=np.float32)
    mask[:, :32] = 1
    mask_path = write_mask_video(mask, tmp_path / "mask.mp4")
    assert evaluate_edit(path, path, mask=mask_path, flow=False)["psnr_outside"] == math.inf


def test_bad_input_is_refused_with_the_fix():
    source = moving_texture()
    with pytest.raises(ValueError, match="The edit is 16 frames of 64x48 and the source 17 frames of 64x48: pass"):
        evaluate_edit(source[:16], source)
    with pytest.raises(ValueError, match=r"The mask is \(17, 48, 32\) .* but the videos are \(17, 48, 64\)"):
        evaluate_edit(source, source, mask=np.zeros((17, 48, 32)))
    with pytest.raises(ValueError, match="must be frames 1 to 16 of this 17-frame video"):
        evaluate_edit(source, source, window_boundaries=[17])
    with pytest.raises(ValueError, match="`window_boundaries` is empty"):
        evaluate_edit(source, source, window_boundaries=[])
    with pytest.raises(ValueError, match="Every frame change is a window boundary"):
        evaluate_edit(source[:3], source[:3], window_boundaries=[1, 2], flow=False)
    with pytest.raises(ValueError, match="`mask` values must be in"):
        evaluate_edit(source, source, mask=np.full(source.shape[:3], 2.0))
    with pytest.raises(ValueError, match="Float frames must be in"):
        evaluate_edit(source.astype(np.float32), source)
