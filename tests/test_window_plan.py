"""window_plan.py: what a run does with a long clip (frames, windows, windows x steps), said from the settings and the
checkpoint's config before any weights load, and from a finished run's record. The app's note, progress bar and
status line (tests/test_app.py) and the command line's plan line (tests/test_cli_window_plan.py) are these."""

import dataclasses
import os
import subprocess
import sys

import pytest

from cogvideox_ddim_inversion.cogvideox_ddim_checkpoint import checkpoint_config
from cogvideox_ddim_inversion.cogvideox_ddim_windows import clip_windows
from cogvideox_ddim_inversion.workflow.settings import EditSettings, SettingsError
from cogvideox_ddim_inversion.testing.sample_clip import write_sample_clip
from cogvideox_ddim_inversion.toy.demo import TOY_CHECKPOINT
from cogvideox_ddim_inversion.workflow.window_plan import (
    WindowPlan,
    length_choice_text,
    length_text,
    plan_line,
    progress_description,
    steps_run,
    stride_hint,
    window_plan,
)


TOY_WINDOWS = "2 windows of 9 frames overlapping by 4 (pyramid weighting)"  # the toy model on the 17-frame clip


@pytest.fixture(scope="module")
def config():
    """The committed toy checkpoint's config: windows of 9 frames (3 latent frames)."""
    return checkpoint_config(TOY_CHECKPOINT)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    return {"17 frames": write_sample_clip(folder / "sample.mp4"),  # 17 frames at 8 fps
            "72 frames at 24 fps": write_sample_clip(folder / "24fps.mp4", num_frames=72, fps=24.0)}


def test_a_plan_from_a_schedule_says_its_frames_and_windows_in_video_frames():
    # CogVideoX-5b's 49-frame windows (13 latent frames) on 161 frames (41): the default overlap is 12 video frames
    schedule = clip_windows(41, 13).to_dict()
    plan = WindowPlan.from_schedule(schedule, 4)
    assert plan == WindowPlan(161, 4, 49, 12, "pyramid")
    assert plan.in_windows() == " in 4 windows of 49 frames overlapping by 12 (pyramid weighting)"
    assert plan.windows_x_steps(50) == "4 windows x 50 steps"
    assert plan.windows_x_steps(50, window_batch_size=2) == "4 windows x 50 steps, 2 per call"
    assert plan.windows_x_steps(50, window_batch_size=4) == "4 windows x 50 steps"  # every window in one call
    # one window: the clip as one, sharing nothing, said as nothing
    one = WindowPlan.from_schedule(clip_windows(13, 13).to_dict(), 4)
    assert one == WindowPlan(49, 1, 49, 0, None) and one.in_windows() == ""
    assert WindowPlan.from_schedule(clip_windows(41, 13, 0, scheme="hann").to_dict(), 4).in_windows() == (
        " in 4 windows of 49 frames overlapping by 0 (hann weighting)")


def test_a_plan_from_an_inversion_record_is_its_windows_or_one_of_its_frames():
    windows = clip_windows(9, 3, 4, scheme="flat").to_dict()
    assert WindowPlan.from_inversion({"num_frames": 33, "windows": windows}, 4) == WindowPlan(33, 4, 9, 4, "flat")
    assert WindowPlan.from_inversion({"num_frames": 9}, 4) == WindowPlan(9, 1, 9, 0)


def test_the_plan_of_settings_is_the_windows_the_run_takes(config, clips):
    settings = EditSettings(video=clips["17 frames"], prompts=["x"], num_frames="all")
    assert window_plan(settings, config) == WindowPlan(17, 2, 9, 4, "pyramid")
    assert window_plan(dataclasses.replace(settings, window_overlap=0, window_weighting="hann"), config) == (
        WindowPlan(17, 2, 9, 0, "hann"))  # the last window still ends at the clip's last frame
    assert window_plan(dataclasses.replace(settings, num_frames=None), config) == WindowPlan(9, 1, 9, 0)
    assert window_plan(dataclasses.replace(settings, num_frames=17), config) == WindowPlan(17, 2, 9, 4, "pyramid")
    # 13 frames are 4 latent frames, which the VAE cannot decode in step: trimmed to 9, one window
    assert window_plan(dataclasses.replace(settings, num_frames=13), config) == WindowPlan(9, 1, 9, 0)
    # what the run refuses, the plan refuses with the same words (`check_source`)
    with pytest.raises(SettingsError) as caught:
        window_plan(dataclasses.replace(settings, mask_words=["circle"]), config)
    assert caught.value.render("cli").startswith("--mask-words records the attention of one window of 9 frames")
    with pytest.raises(SettingsError) as caught:
        window_plan(dataclasses.replace(settings, window_overlap=12), config)
    assert caught.value.field == "window_overlap"
    assert "--window-overlap" in caught.value.render("cli")
    assert "12 video frames leaves windows of 9 frames nothing new" in caught.value.render("cli")


def test_steps_run_are_the_last_strength_of_the_steps():
    assert steps_run(EditSettings(video=None, prompts=[], steps=20)) == 20
    assert steps_run(EditSettings(video=None, prompts=[], steps=20, strength=0.5)) == 10


def test_progress_bars_name_the_stage_and_a_long_clips_windows_x_steps():
    long, one = WindowPlan(17, 3, 9, 4, "pyramid"), WindowPlan(9, 1, 9, 0)
    assert progress_description("Inverting 17 frames with 20 steps...", long, 20) == (
        "Inverting 17 frames: 3 windows x 20 steps")
    assert progress_description("Editing under 1 prompt(s)...", long, 10, window_batch_size=2) == (
        "Editing under 1 prompt(s): 3 windows x 10 steps, 2 per call")
    assert progress_description("Reconstructing with the source prompt...", long, 20) == (
        "Reconstructing with the source prompt: 3 windows x 20 steps")
    assert progress_description("Inverting 9 frames with 20 steps...", one, 20) == "Inverting 9 frames with 20 steps"
    assert progress_description("Saved the inversion to x.safetensors.", long, 20) == (
        "Saved the inversion to x.safetensors")  # not a stage with a bar


def test_length_text_says_the_frames_and_windows_and_offers_a_stride_for_fast_clips(config, clips):
    settings = EditSettings(video=clips["17 frames"], prompts=[], num_frames="all")
    assert length_text(settings, config) == f"Edits 17 frames (the whole clip) in {TOY_WINDOWS}."
    assert length_text(dataclasses.replace(settings, num_frames=None), config) == (
        "Edits 9 frames (the model's window).")
    assert length_text(dataclasses.replace(settings, num_frames=17), config) == (
        "Edits 17 frames in 2 windows of 9 frames overlapping by 4 (pyramid weighting).")
    fast = dataclasses.replace(settings, video=clips["72 frames at 24 fps"])
    assert length_text(fast, config) == (
        "Edits 65 frames (the whole clip) in 8 windows of 9 frames overlapping by 4 (pyramid weighting). The clip has "
        "24 fps: --frame-stride 3 edits it at 8 fps, 17 frames in 2 windows.")
    plan = window_plan(fast, config)
    assert stride_hint(fast, config, plan, option='"Frame stride" {stride} (Advanced)') == (
        ' The clip has 24 fps: "Frame stride" 3 (Advanced) edits it at 8 fps, 17 frames in 2 windows.')
    # only for the whole clip, not yet strided, in windows, from its first frame on
    for change in ({"frame_stride": 3}, {"num_frames": 33}, {"sampling": "spread"}):
        assert stride_hint(dataclasses.replace(fast, **change), config, plan) == "", change
    assert stride_hint(settings, config, window_plan(settings, config)) == ""  # 8 fps: the model's rate


def test_length_choice_text_says_what_a_choice_means_before_a_clip_is_there():
    assert length_choice_text(None, 9, 60) == "Edits up to 9 frames: the model's window."
    assert length_choice_text(5, 9, 60) == "Edits up to 5 frames."
    assert length_choice_text(33, 9, 60) == "Edits up to 33 frames, in overlapping windows of 9 frames."
    assert length_choice_text("all", 9, 60) == "Edits the whole clip (up to 60 s) in overlapping windows of 9 frames."


def test_plan_line_names_the_command_the_windows_and_the_steps(config, clips):
    settings = EditSettings(video=clips["17 frames"], prompts=["x"], num_frames="all", steps=20)
    assert plan_line(settings, config) == f"Editing 17 frames in {TOY_WINDOWS}: 2 windows x 20 steps."
    assert plan_line(settings, config, command="invert") == (
        f"Inverting 17 frames in {TOY_WINDOWS}: 2 windows x 20 steps.")
    reconstruction = dataclasses.replace(settings, prompts=[], reconstruction=True, strength=0.5)
    assert plan_line(reconstruction, config) == f"Reconstructing 17 frames in {TOY_WINDOWS}: 2 windows x 10 steps."
    fast = dataclasses.replace(settings, video=clips["72 frames at 24 fps"], window_batch_size=3)
    assert plan_line(fast, config) == (
        "Editing 65 frames in 8 windows of 9 frames overlapping by 4 (pyramid weighting): 8 windows x 20 steps, 3 per "
        "call. The clip has 24 fps: --frame-stride 3 edits it at 8 fps, 17 frames in 2 windows.")
    # one window: nothing to say
    assert plan_line(dataclasses.replace(settings, num_frames=None), config) is None
    assert plan_line(dataclasses.replace(settings, video=None), config) is None


def test_window_plan_needs_no_gradio():
    """The plan is the command line's as much as the app's: importing it imports no Gradio."""
    code = "import sys, cogvideox_ddim_inversion.workflow.window_plan; print('gradio' in sys.modules)"
    printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONWARNINGS": "ignore"}).stdout
    assert printed.strip().splitlines()[-1] == "False"
