"""The console command: edit a video file end to end, and refuse bad input without writing anything."""

import pytest

from cogvideox_ddim_inversion.cli import main
from cogvideox_ddim_inversion.testing.sample_clip import write_sample_clip
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


def test_demo_runs_end_to_end(tmp_path):
    assert main(["demo", "--output-dir", str(tmp_path), "--steps", "2"]) == 0
    assert (tmp_path / "edit.mp4").is_file() and (tmp_path / "reconstruction.mp4").is_file()


def test_random_tiny_demo_runs_end_to_end(tmp_path):
    assert main(["demo", "--random-tiny", "--output-dir", str(tmp_path), "--steps", "2"]) == 0
    assert (tmp_path / "sample.mp4").is_file() and (tmp_path / "tiny-checkpoint" / "model_index.json").is_file()
    frames, _ = read_video(tmp_path / "edit.mp4")
    assert len(frames) == 9
