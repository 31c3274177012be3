"""Video reading, frame selection, resizing and export, on a generated clip and on a real one when available."""

import gc
import os

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import HORSE
from diffusers.utils import export_to_video

from cogvideox_ddim_inversion.testing.sample_clip import sample_clip_frames, write_sample_clip
from cogvideox_ddim_inversion.video_io import frame_count_for_vae, read_video, select_frame_indices, write_video


def psnr(a, b):
    mse = np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2)
    return np.inf if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize(
    "count,expected", [(1, 1), (8, 1), (9, 9), (16, 9), (17, 17), (45, 41), (48, 41), (49, 49), (81, 81), (0, 0)]
)
def test_frame_count_for_vae(count, expected):
    assert frame_count_for_vae(count) == expected  # 8k + 1: an odd number of latent frames


@pytest.mark.parametrize("latent_frames", [2, 3, 4, 5])
def test_only_odd_latent_counts_decode_to_the_frames_they_encode(tiny_checkpoint, latent_frames):
    """Why frame counts are 8k + 1: diffusers' CogVideoX VAE decodes an even number of latent frames F into 4F
    frames, not the 4F - 3 that encode to F. A diffusers change that fixes this would fail here (then 4k + 1 counts
    could be allowed again)."""
    from diffusers import AutoencoderKLCogVideoX

    vae = AutoencoderKLCogVideoX.from_pretrained(tiny_checkpoint("cogvideox-5b"), subfolder="vae")
    frames = 4 * (latent_frames - 1) + 1
    with torch.no_grad():
        latents = vae.encode(torch.zeros(1, 3, frames, 16, 16)).latent_dist.mode()
        decoded = vae.decode(latents).sample
    assert latents.shape[2] == latent_frames
    assert decoded.shape[2] == (frames if latent_frames % 2 else 4 * latent_frames)
    assert (frame_count_for_vae(frames) == frames) == (latent_frames % 2 == 1)


def test_frame_selection():
    assert select_frame_indices(49) == list(range(49))
    assert select_frame_indices(49, skip_frames_start=3) == list(range(3, 44))  # 46 frames -> 41
    assert select_frame_indices(49, skip_frames_end=4, frame_stride=2) == list(range(0, 34, 2))  # 23 -> 17 frames
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
    strided, strided_fps = read_video(path, frame_stride=2)
    assert strided_fps == 6.0 and len(strided) == 9  # frames 0, 2, ..., 16
    assert psnr(strided[1], frames[2]) > 25
    assert oct(os.stat(path).st_mode & 0o777) != oct(0o600)


def test_write_video_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.mp4"
    with pytest.raises(TypeError, match="Frame 0 is a str"):
        write_video(["not", "frames"], target)
    assert not target.exists() and os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="No frames"):
        write_video([], target)


def test_write_video_encodes_like_export_to_video(tmp_path):
    """Same ffmpeg settings as diffusers' export_to_video: the same bytes, from uint8 and from float frames."""
    frames = sample_clip_frames(num_frames=9)
    floats = [np.asarray(frame, dtype=np.float32) / 255 for frame in frames]
    for name, ours in (("uint8", frames), ("float", floats)):
        write_video(ours, tmp_path / f"ours_{name}.mp4", fps=8)
        export_to_video(
            ours if name == "float" else [PIL.Image.fromarray(f) for f in frames],
            str(tmp_path / f"diffusers_{name}.mp4"),
            fps=8,
        )
        assert (tmp_path / f"ours_{name}.mp4").read_bytes() == (tmp_path / f"diffusers_{name}.mp4").read_bytes()


@pytest.fixture(scope="module")
def existing_video(tmp_path_factory):
    """(frames, bytes of their MP4): a target that a failed write must leave as it is."""
    frames = sample_clip_frames(num_frames=9)
    path = write_video(frames, tmp_path_factory.mktemp("existing") / "out.mp4")
    with open(path, "rb") as f:
        return frames, f.read()


@pytest.mark.parametrize(
    "bad,error,message,container",
    [
        ("bad", TypeError, r"Frame 2 is a str; write_video takes PIL images or HxWx3", "list"),
        ("bad", TypeError, r"Frame 2 is a str; write_video takes PIL images or HxWx3", "generator"),
        (np.zeros((64, 96, 4), np.uint8), ValueError, r"Frame 2 has shape \(64, 96, 4\); expected an HxWx3", "list"),
        (np.zeros((32, 96, 3), np.uint8), ValueError, "Frame 2 is 96x32 .* but frame 0 is 96x64", "generator"),
        (np.full((64, 96, 3), 1.5), ValueError, r"Frame 2 has float values outside \[0, 1\] \(min 1.5", "list"),
        (np.zeros((64, 96, 3), np.int64), ValueError, "Frame 2 has dtype int64", "list"),
    ],
    ids=["not-an-image", "not-an-image-generator", "four-channels", "other-size-generator", "float-range", "int64"],
)
def test_a_frame_failing_part_way_names_the_frame_and_leaves_the_target_alone(
    tmp_path, existing_video, bad, error, message, container
):
    """A list is checked whole before ffmpeg starts; a generator fails after ffmpeg has encoded two frames. Either
    way the error names frame 2, an existing target keeps its bytes and no partial file is left, also once ffmpeg's
    writer has been garbage collected."""
    frames, before = existing_video
    target = tmp_path / "out.mp4"
    target.write_bytes(before)
    bad_frames = [frames[0], frames[1], bad]
    with pytest.raises(error, match=message):
        write_video(bad_frames if container == "list" else (frame for frame in bad_frames), target)
    gc.collect()  # a writer still open would now let ffmpeg finish, and recreate, its file
    assert os.listdir(tmp_path) == ["out.mp4"]
    assert target.read_bytes() == before


def test_an_error_in_the_frame_source_leaves_no_partial_file(tmp_path):
    frames = sample_clip_frames(num_frames=9)

    def decoded_frames():
        yield from frames[:4]
        raise OSError("the source went away")

    with pytest.raises(OSError, match="the source went away"):
        write_video(decoded_frames(), tmp_path / "out.mp4")
    gc.collect()
    assert os.listdir(tmp_path) == []
    # a generator that is fine is encoded as it comes
    read, _ = read_video(write_video(iter(frames), tmp_path / "out.mp4"))
    assert len(read) == 9 and min(psnr(a, b) for a, b in zip(read, frames)) > 25


def test_unreadable_and_missing_videos(tmp_path):
    with pytest.raises(FileNotFoundError, match="Check the path"):
        read_video(tmp_path / "missing.mp4")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="Could not decode"):
        read_video(broken)
    short = write_sample_clip(tmp_path / "short.mp4", num_frames=3)
    with pytest.raises(ValueError, match="needs at least 9"):
        read_video(short)


@pytest.mark.skipif(not HORSE.exists(), reason="../shared/data/videos/horse.mp4 is not available")
def test_real_clip(load_pipe, tmp_path):
    frames, fps = read_video(HORSE)
    assert len(frames) == 49 and fps == 8.0 and frames[0].size == (720, 480)
    selected, _ = read_video(HORSE, skip_frames_start=10, frame_stride=2, max_num_frames=17)
    assert len(selected) == 17
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
