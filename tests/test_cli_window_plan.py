"""The command line and batch say a long clip's windows before any model work, with the app's words
(`window_plan.plan_line`); a clip of one window runs with the output it always had. Batch: in
tests/test_batch_runs.py, whose long-clip run is checked for what it says too."""

import json

from cogvideox_ddim_inversion.cli import main
from cogvideox_ddim_inversion.testing.sample_clip import write_sample_clip
from cogvideox_ddim_inversion.workflow.window_plan import WindowPlan


# The tiny model's windows are 9 frames (3 latent frames); a 36-frame clip is read as 33 (9 latent): 4 windows.
WINDOWS = "in 4 windows of 9 frames overlapping by 4 (pyramid weighting): 4 windows x 2 steps"


def stderr_lines(capsys) -> list[str]:
    return capsys.readouterr().err.splitlines()


def index_of(lines: list[str], start: str) -> int:
    return next(i for i, line in enumerate(lines) if line.startswith(start))


def test_edit_and_invert_say_a_long_clips_windows_before_the_weights_load(tiny_checkpoint, tmp_path, capsys):
    clip = write_sample_clip(tmp_path / "long.mp4", num_frames=36, fps=8)
    common = ["--model", tiny_checkpoint("cogvideox-5b"), "--steps", "2", "--device", "cpu"]

    assert main(["invert", str(clip), "--num-frames", "all", "--output", str(tmp_path / "long.safetensors"),
                 *common]) == 0
    lines = stderr_lines(capsys)
    assert f"Inverting 33 frames {WINDOWS}." in lines, lines
    assert index_of(lines, "Inverting 33 frames in") < index_of(lines, "Loading ")  # before any weights load

    out = tmp_path / "out"
    assert main(["edit", str(clip), "--num-frames", "all", "--prompt", "a blue circle", "--window-batch-size", "2",
                 "--output-dir", str(out), *common]) == 0
    lines = stderr_lines(capsys)
    assert f"Editing 33 frames {WINDOWS}, 2 per call." in lines, lines
    assert index_of(lines, "Editing 33 frames in") < index_of(lines, "Loading ")
    # what was said is what ran
    assert WindowPlan.from_inversion(json.loads((out / "run.json").read_text())["inversion"], 4) == (
        WindowPlan(33, 4, 9, 4, "pyramid"))

    # a saved inversion without the video: its recorded windows
    assert main(["edit", "--inversion", str(tmp_path / "long.safetensors"), "--prompt", "a blue circle",
                 "--output-dir", str(tmp_path / "reused"), *common]) == 0
    lines = stderr_lines(capsys)
    assert f"Editing 33 frames of the saved inversion {WINDOWS}." in lines, lines


def test_a_clip_of_one_window_says_no_windows(tiny_checkpoint, tmp_path, capsys):
    clip = write_sample_clip(tmp_path / "clip.mp4", num_frames=36, fps=8)
    assert main(["edit", str(clip), "--prompt", "a blue circle", "--model", tiny_checkpoint("cogvideox-5b"),
                 "--output-dir", str(tmp_path / "out"), "--steps", "2", "--device", "cpu"]) == 0
    lines = stderr_lines(capsys)
    assert index_of(lines, "Loading ") == 0, lines  # nothing said before the weights load, as before
    assert not [line for line in lines if "window" in line], lines
    assert index_of(lines, "Inverting 9 frames with 2 steps") < index_of(lines, "Editing under 1 prompt(s)")


# batch says each long job's windows: tests/test_batch_runs.py::test_long_clip_jobs_run_end_to_end_in_windows (one
# batch run of long and one-window jobs)
