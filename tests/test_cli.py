"""The console command: edit a video file end to end, and refuse bad input without writing anything."""

import json

import numpy as np
import pytest

from cogvideox_ddim_inversion.cli import main
from cogvideox_ddim_inversion.testing.sample_clip import write_sample_clip
from cogvideox_ddim_inversion.toy import world as toy_world
from cogvideox_ddim_inversion.video_io import read_video


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "edit" in out and "demo" in out


def test_edit_writes_reconstruction_and_edit(tiny_checkpoint, tmp_path, capsys):
    clip = write_sample_clip(tmp_path / "clip.mp4", num_frames=13, fps=8)
    out_dir = tmp_path / "out"
    code = main(
        [
            "edit",
            clip,
            "--prompt",
            "a blue circle",
            "--source-prompt",
            "a red circle",
            "--model",
            tiny_checkpoint("cogvideox-5b"),
            "--output-dir",
            str(out_dir),
            "--steps",
            "2",
            "--frame-stride",
            "1",
            "--device",
            "cpu",
            "--seed",
            "3",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    for name in ("reconstruction", "edit"):
        path = out_dir / f"{name}.mp4"
        assert f"{name}: {path}" in printed
        frames, fps = read_video(path)
        assert len(frames) == 9 and fps == 8.0 and frames[0].size == (96, 64)  # the model's native 9 frames


def test_fresh_noise_follows_the_seed_and_the_output_follows_fps(tiny_checkpoint, tmp_path):
    """`--start noise --seed N`: the same seed gives the same edit, another seed another; `--fps` sets the output's
    frame rate (the source plays at 8)."""
    clip = write_sample_clip(tmp_path / "clip.mp4", num_frames=9, fps=8)

    def edit(seed, name):
        out_dir = tmp_path / name
        code = main(
            ["edit", clip, "--prompt", "a blue circle", "--model", tiny_checkpoint("cogvideox-5b"), "--output-dir",
             str(out_dir), "--steps", "2", "--device", "cpu", "--start", "noise", "--seed", str(seed), "--fps", "12"]
        )
        assert code == 0
        frames, fps = read_video(out_dir / "edit.mp4")
        assert fps == 12.0 and read_video(out_dir / "reconstruction.mp4")[1] == 12.0
        return np.stack(frames)

    first, again, other = edit(3, "first"), edit(3, "again"), edit(4, "other")
    assert np.array_equal(first, again)
    assert np.abs(first.astype(int) - other.astype(int)).mean() > 1.0


@pytest.mark.parametrize("problem", ["missing video", "unreadable video", "too few frames", "not a checkpoint"])
def test_bad_input_gives_an_error_and_no_output(tiny_checkpoint, tmp_path, capsys, problem):
    clip = write_sample_clip(tmp_path / "clip.mp4", num_frames=9)
    model = tiny_checkpoint("cogvideox-5b")
    expected = {
        "missing video": "Video file not found",
        "unreadable video": "Could not decode",
        "too few frames": "needs at least 5",
        "not a checkpoint": "model_index.json",
    }[problem]
    if problem == "missing video":
        clip = str(tmp_path / "nope.mp4")
    elif problem == "unreadable video":
        (tmp_path / "bad.mp4").write_text("hello")
        clip = str(tmp_path / "bad.mp4")
    elif problem == "too few frames":
        clip = write_sample_clip(tmp_path / "short.mp4", num_frames=4)
    else:
        model = str(tmp_path)
    out_dir = tmp_path / "out"
    code = main(["edit", clip, "--prompt", "x", "--model", model, "--output-dir", str(out_dir), "--steps", "2"])
    assert code == 2
    assert expected in capsys.readouterr().err
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_demo_writes_and_prints_the_metrics_of_what_it_wrote(tmp_path, capsys):
    """The toy demo's metrics.json describes the held-out clip it edits, its printed line reports those numbers, and
    the reconstruction PSNR it reports is (up to h264) that of the reconstruction.mp4 it wrote."""
    assert main(["demo", "--output-dir", str(tmp_path), "--steps", "2"]) == 0
    printed = capsys.readouterr()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    clip = toy_world.make_clips(1, seed=0, split="held_out")[0]
    colours = list(toy_world.COLOURS)
    target = colours[(colours.index(clip.colour) + 1) % len(colours)]
    assert metrics["steps"] == 2 and metrics["source_prompt"] == clip.caption
    assert metrics["edit_prompt"] == toy_world.caption(clip.shape, target, clip.direction, clip.background)
    assert metrics["detected_colour"]["source"] == clip.colour and metrics["detected_colour"]["target"] == target
    assert metrics["detected_direction"]["source"] == clip.direction
    assert metrics["edit_success"] == (metrics["detected_colour"]["edit"] == target)
    for name in ("source", "reconstruction", "edit", "side_by_side", "metrics"):
        assert f"{name}: {tmp_path / name}" in printed.out
    assert (
        f"detected colour {metrics['detected_colour']['edit']} (target {target}), centroid error "
        f"{metrics['centroid_error_px']['edit']:.2f} px, reconstruction PSNR "
        f"{metrics['psnr_db']['reconstruction']:.2f} dB (VAE ceiling {metrics['psnr_db']['vae_ceiling']:.2f} dB)"
    ) in printed.err

    def written(name):  # the demo writes 4x nearest-neighbour enlargements: take every 4th pixel back
        frames, _ = read_video(tmp_path / f"{name}.mp4", max_num_frames=toy_world.NUM_FRAMES)
        return np.stack(frames)[:, 1::4, 1::4]

    assert toy_world.psnr(written("source"), clip.frames) > 30
    reconstruction_psnr = toy_world.psnr(written("reconstruction"), clip.frames)
    assert abs(reconstruction_psnr - metrics["psnr_db"]["reconstruction"]) < 0.25, reconstruction_psnr


def test_random_tiny_demo_runs_end_to_end(tmp_path):
    assert main(["demo", "--random-tiny", "--output-dir", str(tmp_path), "--steps", "2"]) == 0
    assert (tmp_path / "sample.mp4").is_file() and (tmp_path / "tiny-checkpoint" / "model_index.json").is_file()
    frames, _ = read_video(tmp_path / "edit.mp4")
    assert len(frames) == 9
