"""Local edits from the command line: --mask, --mask-words and --paste-back on the shared edit workflow."""

import json

import numpy as np
import pytest
import torch

from cogvideox_ddim_inversion.cli import main
from cogvideox_ddim_inversion.pipeline_cogvideox_ddim_inversion import grow_mask
from cogvideox_ddim_inversion.testing.sample_clip import write_sample_clip
from cogvideox_ddim_inversion.video_io import read_mask_video, read_video, write_mask_video


def edit(*args) -> int:
    return main(["edit", *map(str, args), "--steps", "2", "--device", "cpu", "--source-prompt", "a red circle"])


def box_mask(frames=9):
    mask = np.zeros((frames, 64, 96), dtype=bool)
    mask[:, 16:48, 24:64] = True
    return mask


def changes(out_dir, source, mask) -> tuple[float, float]:
    """Mean absolute change (0-255) of the edit against the source frames, outside and inside the mask; the outside
    leaves out a 4-pixel ring, where video compression of both files rings."""
    edited = np.stack([np.asarray(f) for f in read_video(out_dir / "edit-1.mp4")[0]]).astype(int)
    source = np.stack([np.asarray(f) for f in source]).astype(int)
    outside = ~grow_mask(torch.from_numpy(mask).float(), 4).bool().numpy()
    return np.abs(edited - source)[outside].mean(), np.abs(edited - source)[mask].mean()


def test_mask_words_record_the_mask_and_paste_back_keeps_the_source_outside(tiny_checkpoint, tmp_path, capsys):
    clip = write_sample_clip(tmp_path / "clip.mp4", num_frames=9, fps=8)
    out_dir = tmp_path / "out"
    code = edit(clip, "--prompt", "a blue circle", "--model", tiny_checkpoint("cogvideox-5b"), "--output-dir", out_dir,
                "--mask-words", "red,circle", "--paste-back")
    assert code == 0
    assert f"mask: {out_dir / 'mask.mp4'}" in capsys.readouterr().out
    mask = read_mask_video(out_dir / "mask.mp4").astype(bool)
    assert mask.shape == (9, 64, 96) and 0 < mask.mean() < 1
    record = json.loads((out_dir / "run.json").read_text())
    assert record["settings"]["mask_words"] == ["red", "circle"] and record["settings"]["paste_back"] is True
    assert record["inversion"]["mask_words"] == ["red", "circle"]
    outside, inside = changes(out_dir, read_video(clip)[0], mask)
    assert outside < 3 < 20 < inside  # the random tiny model's edit is noise: it shows only inside the mask


def test_mask_video_is_read_with_the_source_frame_selection(tiny_checkpoint, tmp_path):
    clip = write_sample_clip(tmp_path / "clip.mp4", num_frames=13, fps=8)
    mask = np.zeros((13, 64, 96), dtype=bool)
    mask[4:, 16:48, 24:64] = True  # frames 0-3 are skipped below: the mask read must start at frame 4
    mask_file = write_mask_video(mask, tmp_path / "mask-in.mp4")
    out_dir = tmp_path / "out"
    code = edit(clip, "--prompt", "a blue circle", "--model", tiny_checkpoint("cogvideox-5b"), "--output-dir", out_dir,
                "--mask", mask_file, "--paste-back", "--skip-frames-start", 4)
    assert code == 0
    written = read_mask_video(out_dir / "mask.mp4").astype(bool)
    assert np.array_equal(written, box_mask())
    outside, inside = changes(out_dir, read_video(clip, skip_frames_start=4, max_num_frames=9)[0], box_mask())
    assert outside < 3 < 20 < inside


@pytest.mark.parametrize(
    "problem,expected",
    [
        ("paste-back alone", "--paste-back puts the source back outside a mask: give --mask or --mask-words too"),
        ("word not in the prompt", "--mask-words 'zebra' is not a word of --source-prompt 'a red circle'"),
        ("both masks", "Give --mask (a mask video) or --mask-words"),
        ("missing mask", "Mask file not found"),
        ("short mask", "gives 5 frames with this frame selection, the video 9"),
        ("feather alone", "--mask-feather shapes a mask: give --mask or --mask-words too"),
        ("negative dilation", "--mask-dilation is a number of pixels >= 0, got -2"),
        ("threshold without words", "--mask-threshold sets the mask --mask-words records"),
        ("threshold out of range", "--mask-threshold must be between 0 and 1 (exclusive), got 1.5"),
    ],
)
def test_bad_mask_flags_are_refused_before_the_model_loads(tmp_path, capsys, problem, expected, tiny_checkpoint):
    clip = write_sample_clip(tmp_path / "clip.mp4", num_frames=9)
    short = write_mask_video(box_mask(5), tmp_path / "short.mp4")
    extra = {
        "paste-back alone": ["--paste-back"],
        "word not in the prompt": ["--mask-words", "zebra"],
        "both masks": ["--mask", short, "--mask-words", "circle"],
        "missing mask": ["--mask", tmp_path / "nope.mp4"],
        "short mask": ["--mask", short],
        "feather alone": ["--mask-feather", "4"],
        "negative dilation": ["--mask", short, "--mask-dilation", "-2"],
        "threshold without words": ["--mask", short, "--mask-threshold", "0.3"],
        "threshold out of range": ["--mask-words", "circle", "--mask-threshold", "1.5"],
    }[problem]
    # a checkpoint folder without weights: the checks that need its config run, loading would fail
    model = tiny_checkpoint("cogvideox-5b") if problem == "short mask" else tmp_path / "no-such-checkpoint"
    out_dir = tmp_path / "out"
    assert edit(clip, "--prompt", "a blue circle", "--model", model, "--output-dir", out_dir, *extra) == 2
    assert expected in capsys.readouterr().err
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_mask_dilation_grows_the_region_that_may_change(tiny_checkpoint, tmp_path):
    clip = write_sample_clip(tmp_path / "clip.mp4", num_frames=9, fps=8)
    mask_file = write_mask_video(box_mask(), tmp_path / "mask-in.mp4")
    box = torch.from_numpy(box_mask()).float()
    ring = (grow_mask(box, 8) > 0).numpy() & ~(grow_mask(box, 4) > 0).numpy()  # 5-8 pixels outside the box
    source = read_video(clip)[0]
    ring_change = {}
    for dilation in (0, 8):
        out_dir = tmp_path / f"out-{dilation}"
        assert edit(clip, "--prompt", "a blue circle", "--model", tiny_checkpoint("cogvideox-5b"), "--output-dir",
                    out_dir, "--mask", mask_file, "--paste-back", "--mask-dilation", dilation) == 0
        ring_change[dilation] = changes(out_dir, source, ring)[1]
        record = json.loads((out_dir / "run.json").read_text())
        assert record["settings"]["mask_dilation"] == dilation
    assert ring_change[0] < 3 < 20 < ring_change[8]  # pasted back without the margin, edited with it


def test_a_saved_inversion_must_have_recorded_the_mask_asked_for(tiny_checkpoint, tmp_path, capsys):
    clip = write_sample_clip(tmp_path / "clip.mp4", num_frames=9, fps=8)
    saved = tmp_path / "inv.safetensors"
    assert main(["invert", str(clip), "--output", str(saved), "--steps", "2", "--device", "cpu", "--source-prompt",
                 "a red circle", "--model", tiny_checkpoint("cogvideox-5b"), "--mask-words", "circle",
                 "--mask-threshold", "0.4"]) == 0
    for flags, expected in ((["--mask-words", "red"], "recorded no mask for --mask-words ['red']"),
                            (["--mask-words", "circle"], "thresholded its mask at 0.4, not 0.5: set "
                                                          "--mask-threshold to 0.4")):
        assert edit("--inversion", saved, "--prompt", "a blue circle", "--model", tiny_checkpoint("cogvideox-5b"),
                    "--output-dir", tmp_path / "out", *flags) == 2
        assert expected in capsys.readouterr().err
    out_dir = tmp_path / "out"
    assert edit("--inversion", saved, "--prompt", "a blue circle", "--model", tiny_checkpoint("cogvideox-5b"),
                "--output-dir", out_dir, "--mask-words", "circle", "--mask-threshold", "0.4") == 0
    assert (out_dir / "mask.mp4").exists()
