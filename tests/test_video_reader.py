"""The streaming video reader: frame-exact selection and seeking, bounded decoding, resizing, default sizes, bad input.

Clips are generated with imageio-ffmpeg's ffmpeg; their frames show their own number (`frame_number`), so each test
knows which source frame it got. "A full decode" is imageio-ffmpeg's `read_frames` of every frame.
"""

import subprocess

import imageio_ffmpeg
import numpy as np
import PIL.Image
import pytest
import torch
from conftest import HORSE

from cogvideox_ddim_inversion.testing.generated_clips import (
    circle_aspect,
    frame_number,
    write_circle_clip,
    write_long_clip,
    write_numbered_clip,
)
from cogvideox_ddim_inversion.video_io import (
    aspect_preserving_size,
    count_frames,
    frames_to_tensor,
    index_frames,
    probe_video,
    read_video,
    read_video_frames,
    resize_frames,
    select_frame_indices,
)


# ffmpeg's frame-threaded decoder runs a few frames ahead of the last one it outputs (one per thread)
DECODER_LOOKAHEAD = 32
CALL = dict(num_inference_steps=2, max_sequence_length=16)


def full_decode(path) -> list[np.ndarray]:
    """Every frame of a file, decoded by imageio-ffmpeg as the previous reader did (each decoded frame once)."""
    reader = imageio_ffmpeg.read_frames(str(path), output_params=["-fps_mode", "passthrough"])
    width, height = next(reader)["size"]
    return [np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3) for raw in reader]


def to_tensor(frames) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(frame) for frame in frames])).permute(0, 3, 1, 2).float() / 255


@pytest.fixture(scope="module")
def numbered_clip(tmp_path_factory):
    """300 frames (10 s at 30 fps), B-frames, a keyframe at least every 25 frames, and its full decode."""
    path = write_numbered_clip(tmp_path_factory.mktemp("clips") / "numbered.mp4", 300)
    return path, full_decode(path)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """62 s of 1080p at 30 fps (1860 frames, numbered modulo 60), a keyframe every 30 frames."""
    return write_long_clip(tmp_path_factory.mktemp("clips") / "long_1080p.mp4", 62)


# Frame selection -----------------------------------------------------------------------------------------------------


def test_spread_sampling_covers_the_clip_with_one_stride():
    assert select_frame_indices(9000, max_num_frames=49, sampling="spread") == list(range(0, 9000, 187))[:49]
    assert select_frame_indices(100, max_num_frames=9, sampling="spread") == list(range(0, 100, 12))[:9]
    # skips bound the span; a clip shorter than max_num_frames gives all its frames, trimmed to 8k + 1
    assert select_frame_indices(100, 10, 20, max_num_frames=9, sampling="spread") == list(range(10, 80, 8))[:9]
    assert select_frame_indices(30, max_num_frames=49, sampling="spread") == list(range(25))
    # the first frame is kept; the last lies within one stride of the end
    indices = select_frame_indices(1860, max_num_frames=49, sampling="spread")
    assert indices[0] == 0 and 1859 - (indices[1] - indices[0]) < indices[-1] <= 1859


SELECTIONS = {
    "first": dict(max_num_frames=49),
    "skip_mid_gop": dict(skip_frames_start=113, max_num_frames=9),
    "skip_to_keyframe": dict(skip_frames_start=100, max_num_frames=9),
    "stride": dict(skip_frames_start=37, frame_stride=7, max_num_frames=13),
    "skip_end": dict(skip_frames_start=250, skip_frames_end=11),
    "to_the_end": dict(skip_frames_start=280),
    "spread": dict(max_num_frames=9, sampling="spread"),
    "spread_49": dict(max_num_frames=49, sampling="spread"),
    "spread_skips": dict(skip_frames_start=31, skip_frames_end=40, max_num_frames=17, sampling="spread"),
}


@pytest.mark.parametrize("selection", SELECTIONS.values(), ids=SELECTIONS.keys())
def test_frames_equal_a_full_decode(numbered_clip, selection):
    path, decoded = numbered_clip
    result = read_video_frames(path, **selection)
    assert result.indices == select_frame_indices(len(decoded), **selection)
    assert [frame_number(frame) for frame in result.frames] == result.indices
    for frame, index in zip(result.frames, result.indices):
        np.testing.assert_array_equal(np.asarray(frame), decoded[index])
    stride = result.indices[1] - result.indices[0]
    assert result.fps == 30.0 / stride
    assert result.bytes_read == len(result.indices) * 128 * 64 * 3  # only the selected frames cross the pipe


def test_seeking_decodes_from_the_keyframe_before(numbered_clip):
    path, _ = numbered_clip
    index = index_frames(path)
    keyframe = index.keyframe_before(212)
    assert 212 - 25 < keyframe < 212
    result = read_video_frames(path, skip_frames_start=213, max_num_frames=9)
    assert [frame_number(frame) for frame in result.frames] == list(range(213, 222))
    assert result.frames_decoded <= 222 - keyframe + DECODER_LOOKAHEAD < 213  # not the 213 frames before


def test_variable_frame_rate_frames_are_counted_not_resampled(tmp_path):
    path = write_numbered_clip(tmp_path / "vfr.mp4", 90, variable_frame_rate=True)
    gaps = np.diff(index_frames(path).times)
    assert gaps.max() - gaps.min() > 0.01  # the timestamps really are uneven
    decoded = full_decode(path)
    assert count_frames(path) == len(decoded) == 90
    for selection in (dict(skip_frames_start=44, max_num_frames=9), dict(max_num_frames=9, sampling="spread")):
        result = read_video_frames(path, **selection)
        assert [frame_number(frame) for frame in result.frames] == result.indices
        np.testing.assert_array_equal(np.asarray(result.frames[-1]), decoded[result.indices[-1]])


def test_edit_list_frames_before_the_start_are_not_counted(numbered_clip, tmp_path):
    """A stream copy cut mid-GOP keeps the GOP's start as packets marked "discard": decoded, never shown."""
    path, _ = numbered_clip
    cut = tmp_path / "cut.mp4"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-ss", "0.5", "-i", path, "-c", "copy", cut], check=True
    )
    decoded = full_decode(cut)
    assert count_frames(cut) == len(decoded) < 300 and frame_number(decoded[0]) == 15
    for selection in (dict(skip_frames_start=30, max_num_frames=9), dict(max_num_frames=9, sampling="spread")):
        result = read_video_frames(cut, **selection)
        assert [frame_number(frame) for frame in result.frames] == [15 + index for index in result.indices]
        for frame, index in zip(result.frames, result.indices):
            np.testing.assert_array_equal(np.asarray(frame), decoded[index])


def test_files_without_timestamps_are_decoded_from_the_start(numbered_clip, tmp_path):
    path, _ = numbered_clip
    raw = tmp_path / "numbered.h264"  # an elementary stream: packets carry no presentation timestamps
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", path, "-c", "copy", "-bsf:v", "h264_mp4toannexb", raw],
        check=True,
    )
    assert index_frames(raw) is None and count_frames(raw) == 300
    result = read_video_frames(raw, skip_frames_start=100, skip_frames_end=50, frame_stride=3, max_num_frames=9)
    assert [frame_number(frame) for frame in result.frames] == result.indices == list(range(100, 127, 3))
    spread = read_video_frames(raw, max_num_frames=9, sampling="spread")
    assert spread.indices == select_frame_indices(300, max_num_frames=9, sampling="spread")
    assert [frame_number(frame) for frame in spread.frames] == spread.indices


def test_full_size_frames_equal_the_previous_reader(numbered_clip):
    path, decoded = numbered_clip
    frames, fps = read_video(path, max_num_frames=17)  # the previous signature and return value
    assert fps == 30.0 and len(frames) == 17 and frames[0].size == (128, 64)
    for frame, expected in zip(frames, decoded):
        np.testing.assert_array_equal(np.asarray(frame), expected)


# A long 1080p clip: memory bounded by the frames kept ------------------------------------------------------------------


def test_long_1080p_clip_decodes_only_what_it_needs(long_clip):
    info = probe_video(long_clip)
    assert (info.width, info.height, info.fps, info.duration) == (1920, 1080, 30.0, 62.0)
    frame_bytes = 720 * 480 * 3
    kept = dict(max_num_frames=49, height=480, width=720)

    start = read_video_frames(long_clip, **kept)
    assert start.indices == list(range(49)) and start.num_source_frames is None  # the clip was never counted
    assert start.frames_decoded <= 49 + DECODER_LOOKAHEAD
    assert start.bytes_read == 49 * frame_bytes  # 720x480 frames: never 1080p ones in Python

    middle = read_video_frames(long_clip, skip_frames_start=915, **kept)
    assert middle.indices == list(range(915, 964)) and middle.num_source_frames == 1860
    assert middle.frames_decoded <= 30 + 49 + DECODER_LOOKAHEAD  # from the keyframe at 900, not from frame 0
    assert middle.bytes_read == 49 * frame_bytes

    # 9 frames 232 apart: each is reached by a seek, decoding from its keyframe only
    spread = read_video_frames(long_clip, sampling="spread", **{**kept, "max_num_frames": 9})
    assert spread.indices == list(range(0, 1860, 232))[:9] and spread.fps == 30.0 / 232
    assert spread.frames_decoded <= 9 * (30 + DECODER_LOOKAHEAD) < 1860
    assert spread.bytes_read == 9 * frame_bytes
    for result in (start, middle, spread):
        numbers = [frame_number(frame, (1920, 1080)) for frame in result.frames]
        assert numbers == [index % 60 for index in result.indices]


# Resizing ------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def circle_clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("circles")
    return {
        "landscape": write_circle_clip(root / "landscape.mp4", 320, 180),
        "portrait": write_circle_clip(root / "portrait.mp4", 180, 320),
    }


@pytest.mark.parametrize("source", ["landscape", "portrait"])
@pytest.mark.parametrize("mode", ["crop", "pad", "stretch"])
@pytest.mark.parametrize("size", [(48, 96), (96, 64), (240, 360)], ids=["wide", "tall", "upscale"])
def test_file_and_memory_resizing_agree(circle_clips, source, mode, size):
    """ffmpeg's filter (files) and resize_frames (frames in memory) make the same frames, up to rounding."""
    height, width = size
    path = circle_clips[source]
    from_file = read_video_frames(path, height=height, width=width, resize_mode=mode)
    assert from_file.frames[0].size == (width, height)
    in_memory = resize_frames(to_tensor(full_decode(path)), height, width, mode)
    difference = (to_tensor(from_file.frames) - in_memory).abs() * 255
    assert difference.mean() < 0.5 and difference.max() < 24
    aspect = circle_aspect(np.asarray(from_file.frames[0]))
    assert aspect == pytest.approx(circle_aspect(in_memory[0].permute(1, 2, 0).numpy() * 255), abs=0.05)
    if mode == "stretch":
        source_aspect = 320 / 180 if source == "landscape" else 180 / 320
        assert aspect == pytest.approx((width / height) / source_aspect, rel=0.1)  # the circle is distorted
    else:
        assert aspect == pytest.approx(1.0, abs=0.08)  # the circle stays a circle
    first = np.asarray(from_file.frames[0]).astype(int)
    if mode == "pad" and (width / height > 320 / 180 if source == "landscape" else width / height > 180 / 320):
        assert first[:, 0].max() == 0 and first[:, -1].max() == 0  # black bars left and right
    elif mode == "pad":
        assert first[0].max() == 0 and first[-1].max() == 0  # black bars top and bottom
    else:
        assert first[0].min() > 60 and first[:, 0].min() > 60  # picture up to the edges


def test_resize_frames_takes_every_frame_layout():
    frames = torch.rand(2, 5, 3, 36, 64)
    out = resize_frames(frames, 32, 32, "crop")
    assert out.shape == (2, 5, 3, 32, 32)
    torch.testing.assert_close(out[1, 2], resize_frames(frames[1, 2], 32, 32, "crop"))
    assert resize_frames(frames, 36, 64, "pad") is frames  # already the size: untouched
    pil = [PIL.Image.fromarray((f.permute(1, 2, 0).numpy() * 255).astype(np.uint8)) for f in frames[0]]
    as_uint8 = np.stack([np.asarray(f) for f in pil])
    torch.testing.assert_close(frames_to_tensor(pil), frames_to_tensor(as_uint8))
    torch.testing.assert_close(
        frames_to_tensor(as_uint8), frames_to_tensor(torch.from_numpy(as_uint8).permute(0, 3, 1, 2))
    )


def test_rotated_phone_video_is_read_upright(tmp_path):
    landscape = write_numbered_clip(tmp_path / "landscape.mp4", 9, 128, 64)
    rotated = tmp_path / "rotated.mp4"
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-v",
            "error",
            "-display_rotation",
            "90",
            "-i",
            landscape,
            "-c",
            "copy",
            rotated,
        ],
        check=True,
    )
    info = probe_video(rotated)
    assert (info.width, info.height, info.rotation) == (64, 128, 90)
    frames, _ = read_video(rotated)
    assert frames[0].size == (64, 128)
    upright = [np.rot90(np.asarray(frame), k=-1) for frame in frames]  # undo the display rotation
    assert [frame_number(frame) for frame in upright] == list(range(9))


# Default sizes -------------------------------------------------------------------------------------------------------


def test_aspect_preserving_size_at_cogvideox_1_5_pixel_count():
    pixels = 1360 * 768
    assert aspect_preserving_size(1080, 1920, pixels) == (768, 1360)  # 16:9 landscape: the native size
    assert aspect_preserving_size(1920, 1080, pixels) == (1360, 768)  # portrait stays portrait
    assert aspect_preserving_size(480, 720, pixels) == (832, 1248)  # 3:2
    assert aspect_preserving_size(2160, 3840, pixels) == (768, 1360)  # 4K: the same aspect, same size
    assert aspect_preserving_size(1000, 1000, pixels) == (1024, 1024)
    assert aspect_preserving_size(1080, 1920, pixels, max_height=64, max_width=96) == (48, 96)  # a small RoPE grid
    for height, width in [(1080, 1920), (1920, 1080), (480, 720), (1000, 1000)]:
        out_height, out_width = aspect_preserving_size(height, width, pixels)
        assert out_height % 16 == 0 and out_width % 16 == 0
        assert out_width / out_height == pytest.approx(width / height, rel=0.03)
        assert out_height * out_width == pytest.approx(pixels, rel=0.05)


@pytest.mark.parametrize(
    "variant,landscape,portrait",
    [
        ("cogvideox-5b", (64, 96), (64, 96)),  # native size whatever the source
        ("cogvideox-5b-i2v", (64, 96), (64, 96)),  # learned positional embeddings: native only
        ("cogvideox1.5-5b", (48, 96), (64, 32)),  # the source's aspect, within the tiny RoPE grid (64x96)
        ("cogvideox1.5-5b-i2v", (48, 96), (64, 32)),
    ],
)
def test_default_video_size(load_pipe, variant, landscape, portrait):
    pipe = load_pipe(variant)
    assert pipe.default_video_size(1080, 1920) == landscape
    assert pipe.default_video_size(1920, 1080) == portrait
    assert pipe.default_video_size() == (64, 96)


def test_invert_gives_a_portrait_source_a_portrait_size_on_cogvideox_1_5(load_pipe, circle_clips):
    pipe = load_pipe("cogvideox1.5-5b")
    inv = pipe.invert(video=circle_clips["portrait"], num_frames=9, **CALL)
    assert inv.latents.shape[-2:] == (8, 4)  # 64x32 pixels: portrait
    # frames in memory are resized by the same rule and the same function as ffmpeg resizes a file
    source = pipe.read_source_video(circle_clips["portrait"], num_frames=9)
    assert (source.height, source.width) == (64, 32) and source.indices == list(range(9))
    from_file, _ = pipe.preprocess_source_video(circle_clips["portrait"], 64, 32, 9, "crop")
    from_frames, _ = pipe.preprocess_source_video(np.stack(full_decode(circle_clips["portrait"])), 64, 32, 5, "crop")
    assert (from_file - from_frames).abs().mean() < 2 / 255
    inv_frames = pipe.invert(video=np.stack(full_decode(circle_clips["portrait"])), **CALL)
    assert inv_frames.latents.shape[-2:] == (8, 4)


def test_invert_resize_mode_reaches_the_frames(load_pipe, circle_clips):
    pipe = load_pipe("cogvideox-5b")
    frames = np.stack(full_decode(circle_clips["portrait"]))
    padded, _ = pipe.preprocess_source_video(frames, 64, 96, None, "pad")
    assert padded[0, :, 0, :, :10].max() == -1  # black bars beside a portrait source
    cropped, _ = pipe.preprocess_source_video(frames, 64, 96, None, "crop")
    assert cropped[0, :, 0, :, :10].min() > -0.5
    with pytest.raises(ValueError, match="`resize_mode` must be 'crop'"):
        pipe.invert(video=frames, resize_mode="fit", **CALL)


@pytest.mark.skipif(not HORSE.exists(), reason="../shared/data/videos/horse.mp4 is not available")
def test_real_clip_crop_to_portrait():
    result = read_video_frames(HORSE, max_num_frames=9, height=96, width=48, sampling="spread")
    assert result.frames[0].size == (48, 96) and result.indices == list(range(0, 49, 6))
    assert result.bytes_read == 9 * 96 * 48 * 3


# Bad input -----------------------------------------------------------------------------------------------------------


def test_bad_input_is_refused_with_the_fix(tmp_path, numbered_clip):
    path, _ = numbered_clip
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(ValueError, match="Could not decode .* as a video .*Pass a video file that ffmpeg can read"):
        read_video(text)
    audio = tmp_path / "audio.m4a"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "sine=d=1", "-c:a", "aac", audio],
        check=True,
    )
    with pytest.raises(ValueError, match="it has no video stream"):
        read_video(audio)
    with pytest.raises(FileNotFoundError, match="Check the path"):
        read_video(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match=r"Only 8 frame\(s\) remain of 300"):
        read_video(path, skip_frames_start=292)
    with pytest.raises(ValueError, match=r"Only 3 frame\(s\) remain of 300 after skipping 0 at the start, 297"):
        read_video(path, skip_frames_end=297, sampling="spread", max_num_frames=9)
    # argument errors come before any file access: a missing file is not even looked at
    missing = tmp_path / "missing.mp4"
    for arguments, message in [
        (dict(resize_mode="fit", height=48, width=96), "`resize_mode` must be 'crop'.*'pad'.*'stretch'"),
        (dict(sampling="uniform"), "`sampling` must be 'first'.*or 'spread'"),
        (dict(sampling="spread", max_num_frames=9, frame_stride=2), "leave `frame_stride` at 1"),
        (dict(sampling="spread"), "needs `max_num_frames`"),
        (dict(height=48), "Pass both `height` and `width`"),
        (dict(frame_stride=0), "`frame_stride` must be >= 1"),
        (dict(max_num_frames=3), "at least 9"),
    ]:
        with pytest.raises(ValueError, match=message):
            read_video(missing, **arguments)
    with pytest.raises(ValueError, match=r"Float frames must be in \[0, 1\].*\(frames \+ 1\) / 2"):
        frames_to_tensor(torch.rand(5, 3, 8, 8) * 2 - 1)
    with pytest.raises(ValueError, match=r"\[F, H, W, 3\]"):
        frames_to_tensor(np.zeros((5, 8, 8, 4), dtype=np.uint8))
