"""benchmarks/long_video_seams.py (the seam table of issue 26) and the long real-looking clips it edits."""

import importlib.util
import math

import numpy as np
import pytest
import torch
from conftest import HORSE, REPO_ROOT

from cogvideox_ddim_inversion.cogvideox_ddim_windows import WindowSchedule
from cogvideox_ddim_inversion.testing.generated_clips import (
    panned_video_clip,
    procedural_texture,
    textured_pan_clip,
    frame_number,
    write_numbered_clip,
)


pytest.importorskip("cv2", reason="evaluate needs opencv-python-headless")
_spec = importlib.util.spec_from_file_location("long_video_seams", REPO_ROOT / "benchmarks" / "long_video_seams.py")
seams = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(seams)


def test_textured_pan_is_deterministic_and_pans():
    clip = textured_pan_clip(21, size=32, seed=3)
    assert clip.shape == (21, 32, 32, 3) and clip.dtype == np.uint8
    np.testing.assert_array_equal(clip, textured_pan_clip(21, size=32, seed=3))
    assert not np.array_equal(clip, textured_pan_clip(21, size=32, seed=4))
    assert clip.std() > 20  # a texture, not a flat colour
    changes = np.abs(np.diff(clip.astype(float), axis=0)).mean(axis=(1, 2, 3))
    assert changes.min() > 0.5  # the camera moves every frame ...
    assert changes.max() < 4 * changes.min()  # ... steadily
    # a pan to the right: each frame is the previous one shifted left (found by the best integer shift)
    first, second = clip[0].astype(float), clip[1].astype(float)
    errors = {shift: np.abs(first[:, shift:] - second[:, : 32 - shift]).mean() for shift in range(4)}
    assert min(errors, key=errors.get) > 0


def test_procedural_texture_range():
    texture = procedural_texture(16, 24, seed=0)
    assert texture.shape == (16, 24, 3) and texture.min() == 0 and texture.max() == 1


def test_panned_video_clip_plays_forwards_then_backwards(tmp_path):
    square = write_numbered_clip(tmp_path / "square.mp4", 11, width=64, height=64, fps=8)
    clip = panned_video_clip(square, 21, size=64)  # a square video: the window is the whole frame, no pan
    assert clip.shape == (21, 64, 64, 3) and clip.dtype == np.uint8
    assert [frame_number(frame) for frame in clip] == [*range(11), *range(9, 0, -1), 0]
    wide = write_numbered_clip(tmp_path / "wide.mp4", 10, width=128, height=64, fps=8)
    panned = panned_video_clip(wide, 9, size=32)
    assert panned.shape == (9, 32, 32, 3)
    # the window moves from the left edge (the number boxes' left end) to the right edge
    assert not np.array_equal(panned[0], panned[8])


@pytest.mark.skipif(not HORSE.exists(), reason="needs ../shared")
def test_panned_horse():
    clip = panned_video_clip(HORSE, 45, size=64)
    assert clip.shape == (45, 64, 64, 3)
    assert np.abs(np.diff(clip.astype(float), axis=0)).mean() > 1


def test_conditions_that_compute_the_same_function_run_once():
    names = seams.same_function_as(seams.CONDITIONS, latent_frames=9, window=3)
    assert len(names) == len(seams.CONDITIONS)
    # windows of 3 overlapping by 1: each shared frame is an edge of both windows, every weighting a plain average
    assert {names[f"(c) co-denoised, {s}, overlap 4"] for s in ("flat", "pyramid", "hann")} == {
        "(c) co-denoised, flat, overlap 4"
    }
    # overlapping by 2: flat differs, pyramid (1, 2, 1) and hann (0.5, 1, 0.5) have equal ratios
    assert names["(c) co-denoised, flat, overlap 8"] == "(c) co-denoised, flat, overlap 8"
    assert names["(c) co-denoised, pyramid, overlap 8"] == "(c) co-denoised, pyramid, overlap 8"
    assert names["(c) co-denoised, hann, overlap 8"] == "(c) co-denoised, pyramid, overlap 8"
    # the cross-fade is another mode: it never shares a run with co-denoising
    crossfade = "(b) independent windows, cross-faded (overlap 4)"
    assert names[crossfade] == crossfade
    # longer windows tell pyramid from hann
    longer = seams.same_function_as(seams.CONDITIONS, latent_frames=41, window=13)
    assert longer["(c) co-denoised, hann, overlap 8"] == "(c) co-denoised, hann, overlap 8"


def test_window_frames_cover_the_clip():
    schedule = WindowSchedule.for_clip(9, 3, 4)
    spans = [seams.window_frames(schedule, k) for k in range(schedule.num_windows)]
    assert [(s.start, s.stop) for s in spans] == [(0, 9), (5, 17), (13, 25), (21, 33)]
    covered = set().union(*(range(s.start, s.stop) for s in spans))
    assert covered == set(range(33))


def test_quick_run_prints_the_tables(capsys):
    threads = torch.get_num_threads()
    try:
        toy, real = seams.main(["--quick"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert real == {} and len(toy) == 1
    results = toy[0]
    assert list(results) == [c.name for c in seams.QUICK_CONDITIONS]
    cut = results["(a) independent windows, cut"]
    assert cut["windows"] == [0, 3, 6] and cut["boundaries"] == [9, 21]  # 33 frames = 9 latent frames, three windows
    crossfade = results["(b) independent windows, cross-faded (overlap 4)"]
    assert crossfade["windows"] == [0, 2, 4, 6] and len(crossfade["one_window"]) == 4
    for name, result in results.items():
        assert math.isfinite(result["seam_ratio_normalised"]) and result["seam_ratio_normalised"] > 0, name
        assert result["seam_ratio_normalised"] == pytest.approx(result["seam_ratio"] / result["source_seam_ratio"])
        assert len(result["per_window"]) == len(result["windows"])
    flat, hann = results["(c) co-denoised, flat, overlap 4"], results["(c) co-denoised, hann, overlap 4"]
    assert hann["same_run_as"] == "(c) co-denoised, flat, overlap 4" and hann["seam_ratio"] == flat["seam_ratio"]
    # co-denoising differs from cutting: other windows, another edit
    assert flat["seam_ratio"] != cut["seam_ratio"]
    assert "| (a) independent windows, cut | " in out
    seamy = cut["seam_ratio_normalised"] > 1.1
    assert f"| the {int(seamy)} toy clips where (a) > 1.1: mean, clips <= 1.1 |" in out
    assert "| one window: the 9 frames from each window's start edited alone" in out
    assert out.count("\n| (c) co-denoised") == 6  # three weightings in each table
