"""Video reading, frame selection, resizing and export, on a generated clip and on a real one when available."""

import os

import numpy as np
import pytest
import torch
from conftest import HORSE

from cogvideox_ddim_inversion.testing.sample_clip import sample_clip_frames, write_sample_clip
from cogvideox_ddim_inversion.video_io import frame_count_for_vae, read_video, select_frame_indices, write_video


def psnr(a, b):
    mse = np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2)
    return np.inf if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize("count,expected", [(1, 1), (4, 1), (5, 5), (8, 5), (9, 9), (48, 45), (49, 49), (0, 0)])
def test_frame_count_for_vae(count, expected):
    assert frame_count_for_vae(count) == expected


def test_frame_selection():
    assert select_frame_indices(49) == list(range(49))
    assert select_frame_indices(49, skip_frames_start=3) == list(range(3, 48))  # 46 frames -> 45
    assert select_frame_indices(49, skip_frames_end=4, frame_stride=2) == list(range(0, 42, 2))  # 23 -> 21 frames
    assert select_frame_indices(100, frame_stride=3, max_num_frames=9) == list(range(0, 27, 3))
    with pytest.raises(ValueError, match="Only 3 frame"):
        select_frame_indices(10, skip_frames_start=7)
    with pytest.raises(ValueError, match="frame_stride"):
        select_frame_indices(10, frame_stride=0)


def test_generated_clip_round_trip(tmp_path):
    frames = sample_clip_frames(num_frames=17)
    path = write_sample_clip(tmp_path / "clip.mp4", num_frames=17, fps=12)
    read, fps = read_video(path)
    assert fps == 12.0 and len(read) == 17 and read[0].size == (96, 64)
    assert min(psnr(a, b) for a, b in zip(read, frames)) > 25  # h264 at export_to_video's default quality
    strided, strided_fps = read_video(path, frame_stride=2, skip_frames_start=1)
    assert strided_fps == 6.0 and len(strided) == 5  # frames 1, 3, ..., 15 -> 8 -> 5
    assert psnr(strided[1], frames[3]) > 25
    assert oct(os.stat(path).st_mode & 0o777) != oct(0o600)


def test_write_video_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.mp4"
    with pytest.raises(Exception):
        write_video(["not", "frames"], target)
    assert not target.exists() and os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="No frames"):
        write_video([], target)


def test_unreadable_and_missing_videos(tmp_path):
    with pytest.raises(FileNotFoundError, match="Check the path"):
        read_video(tmp_path / "missing.mp4")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="Could not decode"):
        read_video(broken)
    short = write_sample_clip(tmp_path / "short.mp4", num_frames=3)
    with pytest.raises(ValueError, match="needs at least 5"):
        read_video(short)


@pytest.mark.skipif(not HORSE.exists(), reason="../shared/data/videos/horse.mp4 is not available")
def test_real_clip(load_pipe, tmp_path):
    frames, fps = read_video(HORSE)
    assert len(frames) == 49 and fps == 8.0 and frames[0].size == (720, 480)
    selected, _ = read_video(HORSE, skip_frames_start=10, frame_stride=2, max_num_frames=13)
    assert len(selected) == 13
    assert psnr(selected[0], frames[10]) > 45 and psnr(selected[1], frames[12]) > 45

    # resize through the pipeline's video processor, encode with a tiny VAE, export at the source fps
    pipe = load_pipe("cogvideox-5b")
    inv = pipe.invert(video=str(HORSE), height=96, width=144, num_inference_steps=2, max_sequence_length=16)
    assert inv.latents.shape == (1, 3, 16, 12, 18) and inv.fps == 8.0
    with torch.no_grad():
        video = pipe.video_processor.postprocess_video(pipe.decode_latents(inv.latents), output_type="pil")[0]
    out = write_video(video, tmp_path / "horse_small.mp4", fps=inv.fps)
    back, back_fps = read_video(out)
    assert back_fps == 8.0 and back[0].size == (144, 96) and len(back) == 9
