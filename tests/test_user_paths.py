"""Issue 24 through the entry points, as a user meets it: no wrong video reported as success (one step, NaN frames,
frame rates, stale or missing panels and files), and no failure after the weights load that a check could find
before (other families, output paths, the Hub unreachable)."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from cogvideox_ddim_inversion.cli import main
from cogvideox_ddim_inversion.testing.generated_clips import _ffmpeg, write_long_clip
from cogvideox_ddim_inversion.testing.sample_clip import write_sample_clip
from cogvideox_ddim_inversion.video_io import probe_video, read_video


def edit(*args) -> int:
    return main(["edit", *map(str, args), "--device", "cpu"])


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_sample_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", num_frames=9, fps=8)


@pytest.fixture(scope="module")
def inversion(tiny_checkpoint, clip, tmp_path_factory):
    """A saved 2-step inversion of `clip` by the tiny CogVideoX-5b, with the source prompt "a red circle"."""
    path = tmp_path_factory.mktemp("inversion") / "inv.safetensors"
    assert main(["invert", clip, "--output", str(path), "--steps", "2", "--device", "cpu", "--source-prompt",
                 "a red circle", "--model", tiny_checkpoint("cogvideox-5b")]) == 0
    return str(path)


# ---------------------------------------------------------------------------------------------------------------------
# 1. One step, and frames that are not finite


@pytest.mark.parametrize("flags, expected", [
    (["--steps", "1"], "--steps must be at least 2, got 1"),
    (["--steps", "1", "--start", "noise"], "--steps must be at least 2, got 1"),
    (["--steps", "3", "--strength", "0.3"], "--strength 0.3 keeps no step of 3"),
])
def test_one_step_is_refused_before_the_weights_load(tiny_checkpoint, clip, no_weights, tmp_path, capsys, flags,
                                                     expected):
    """Issue 24.1: one step wrote an all-black edit-1.mp4 (exit 0); now the shared check refuses it, for `edit` and
    `invert` alike, before anything loads or is written."""
    out_dir = tmp_path / "out"
    assert edit(clip, "--prompt", "a blue circle", "--model", tiny_checkpoint("cogvideox-5b"), "--output-dir", out_dir,
                *flags) == 2
    assert expected in capsys.readouterr().err
    invert_flags = [flag for flag in flags if flag not in ("--start", "noise")]  # invert starts no edit
    assert main(["invert", str(clip), "--output", str(tmp_path / "inv.st"), "--model",
                 tiny_checkpoint("cogvideox-5b"), *invert_flags]) == 2
    assert expected in capsys.readouterr().err
    assert no_weights == [] and not out_dir.exists() and not (tmp_path / "inv.st").exists()


def test_one_step_fails_its_batch_job_instead_of_being_done(tiny_checkpoint, clip, no_weights, tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"id": "one", "video": str(clip), "prompts": ["a blue circle"], "steps": 1}) + "\n")
    out = tmp_path / "out"
    assert main(["batch", str(jobs), "--output-dir", str(out), "--model", tiny_checkpoint("cogvideox-5b")]) == 0
    line = json.loads((out / "manifest.jsonl").read_text())
    assert line["status"] == "failed" and line["error"].startswith("steps must be at least 2, got 1")  # its key
    assert no_weights == [] and not (out / "one").exists()


@pytest.mark.parametrize("fault", ["nan frames", "nan latents"])
def test_frames_that_are_not_finite_are_never_written(tiny_checkpoint, clip, tmp_path, capsys, monkeypatch, fault):
    """A call whose frames hold NaN (decoded) or whose latents do (the pipeline's check) fails the run, naming the
    call; no video is written and the output folder the run made is removed."""
    from cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline

    call = CogVideoXDDIMInversionPipeline.__call__

    def faulty(self, *args, **kwargs):
        if fault == "nan latents":
            raise FloatingPointError("CogVideoXDDIMInversionPipeline.__call__ produced latents with NaN or inf values")
        output = call(self, *args, **kwargs)
        output.frames[:, :, :4] = np.nan
        return output

    monkeypatch.setattr(CogVideoXDDIMInversionPipeline, "__call__", faulty)
    out_dir = tmp_path / "out"
    assert edit(clip, "--prompt", "a blue circle", "--model", tiny_checkpoint("cogvideox-5b"), "--output-dir", out_dir,
                "--steps", "2", "--reconstruction") == 2
    err = capsys.readouterr().err
    assert "the edit (pipeline call under the prompts ['a blue circle'])" in err
    assert ("NaN or inf" in err) and not out_dir.exists()


# ---------------------------------------------------------------------------------------------------------------------
# 4. The reconstruction of an image-to-video edit: test_cli.py::test_edit_every_family_from_a_saved_inversion (its
# image-to-video runs edit with and without --image, each with a reconstruction)


# ---------------------------------------------------------------------------------------------------------------------
# 6. Frame rates


def test_edits_play_at_the_pace_of_the_frames_used(tiny_checkpoint, tmp_path):
    """Issue 24.6: a variable-frame-rate source whose first frames come 16 a second (then 4) is written at 16 fps, not
    at the container's average rate; run.json says how the rate was chosen."""
    source = tmp_path / "vfr.mp4"
    pts = "if(lt(N,12),N/16,12/16+(N-12)/4)"  # 12 frames at 16 fps, then 12 at 4 fps
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=s=96x64:r=16:d=2,settb=1/1000,setpts='" + pts + "/TB'", "-frames:v", "24",
            "-c:v", "libx264", "-pix_fmt", "yuv420p", "-fps_mode", "vfr", str(source))
    assert probe_video(source).fps < 12  # the container's average rate
    out_dir = tmp_path / "out"
    assert edit(source, "--prompt", "a blue circle", "--model", tiny_checkpoint("cogvideox-5b"), "--output-dir",
                out_dir, "--steps", "2") == 0
    assert read_video(out_dir / "edit-1.mp4")[1] == 16.0
    record = json.loads((out_dir / "run.json").read_text())
    assert record["fps"] == 16.0 and record["fps_from"] == "the timestamps of the frames used"


def test_spread_frames_of_a_long_clip_play_as_a_time_lapse(tiny_checkpoint, tmp_path, capsys):
    """9 frames spread over a 30 s clip were written at 30 fps / 112 (0.27 fps: 34 s for 9 frames); they play at the
    checkpoint's 8 fps, recorded in run.json and said in --help."""
    source = write_long_clip(tmp_path / "long.mp4", seconds=30, width=96, height=64)
    out_dir = tmp_path / "out"
    assert edit(source, "--prompt", "a blue circle", "--model", tiny_checkpoint("cogvideox-5b"), "--output-dir",
                out_dir, "--steps", "2", "--sampling", "spread") == 0
    assert read_video(out_dir / "edit-1.mp4")[1] == 8.0
    record = json.loads((out_dir / "run.json").read_text())
    assert record["fps"] == 8.0 and record["fps_from"].startswith("the checkpoint's frame rate")
    with pytest.raises(SystemExit):
        main(["edit", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "pace of the source frames used" in help_text and "time-lapse" in help_text


# ---------------------------------------------------------------------------------------------------------------------
# 7, 8. The outputs of a run: exactly those of run.json, with a source panel


@pytest.fixture(scope="module")
def rerun(tiny_checkpoint, inversion, tmp_path_factory):
    """Two edits from the saved inversion into one folder: two prompts and a reconstruction, then (after the user
    put two files of their own there) one prompt. Returns the folder."""
    out_dir = tmp_path_factory.mktemp("rerun") / "out"
    common = ["--inversion", inversion, "--source-prompt", "a red circle", "--steps", "2", "--model",
              tiny_checkpoint("cogvideox-5b"), "--output-dir", out_dir]
    assert edit(*common, "--prompt", "a blue circle", "--prompt", "a green circle", "--reconstruction") == 0
    (out_dir / "notes.txt").write_text("mine")
    (out_dir / "edit-7.mp4").write_text("not listed in run.json")
    assert edit(*common, "--prompt", "a blue circle") == 0
    return out_dir


def test_a_rerun_replaces_the_previous_runs_outputs_only(rerun, inversion):
    """Issue 24.7: a rerun with one prompt into the folder of a run with two removes that run's edit-2.mp4 (and
    reconstruction.mp4); files the tool did not write, and a saved inversion, stay."""
    record = json.loads((rerun / "run.json").read_text())
    listed = {os.path.basename(path) for path in record["outputs"].values()} | {"run.json"}
    assert listed == {"edit-1.mp4", "side_by_side.mp4", "run.json"}
    assert set(os.listdir(rerun)) == listed | {"notes.txt", "edit-7.mp4"}
    assert os.path.isfile(inversion)


def test_side_by_side_from_a_saved_inversion_shows_the_decoded_source(rerun, inversion, load_pipe):
    """Issue 24.8: with --inversion and no video the source panel is the inversion's clean latents, decoded (the
    rerun above: an edit from the saved inversion, without the video)."""
    import torch

    from cogvideox_ddim_inversion.pipeline_cogvideox_ddim_inversion import CogVideoXDDIMInversionOutput

    panels = np.stack(read_video(rerun / "side_by_side.mp4")[0]).astype(float)
    assert panels.shape[1:3] == (64, 192)  # source | edit
    pipe = load_pipe("cogvideox-5b")
    latents = CogVideoXDDIMInversionOutput.load(inversion).latents
    with torch.no_grad():
        decoded = pipe.video_processor.postprocess_video(video=pipe.decode_latents(latents), output_type="np")[0]
    expected = decoded * 255
    edit_panel = np.stack(read_video(rerun / "edit-1.mp4")[0]).astype(float)
    assert np.abs(panels[:, :, :96] - expected).mean() < 8  # up to video compression
    assert np.abs(panels[:, :, 96:] - edit_panel).mean() < 8


# ---------------------------------------------------------------------------------------------------------------------
# 10, 11. Checked before the weights load: output paths, the inversion's checkpoint


def unwritable_folder(tmp_path) -> str:
    """A folder no file can be created in: read-only for a user; root writes anywhere but in /proc."""
    if os.geteuid() == 0:
        return "/proc/1"
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o555)
    return str(folder)


@pytest.mark.parametrize("command", ["edit", "invert"])
def test_an_unwritable_inversion_path_is_refused_before_the_weights_load(tiny_checkpoint, clip, no_weights, tmp_path,
                                                                         capsys, command):
    target = os.path.join(unwritable_folder(tmp_path), "inv.safetensors")
    flag = "--save-inversion" if command == "edit" else "--output"
    args = ["--prompt", "x", "--output-dir", str(tmp_path / "out")] if command == "edit" else []
    assert main([command, str(clip), *args, flag, target, "--model", tiny_checkpoint("cogvideox-5b")]) == 2
    err = capsys.readouterr().err
    assert f"Cannot write to {os.path.dirname(target)!r} ({flag} {target!r}): pick another {flag}" in err
    assert no_weights == [] and not (tmp_path / "out").exists()


def test_a_failed_save_names_the_inversion_not_a_temporary_file(tiny_checkpoint, clip, tmp_path, capsys, monkeypatch):
    """A save that fails after the checks (a full disk) names the path asked for, not atomic_write's temporary
    `.partial-*` file; the run leaves no output folder."""
    from cogvideox_ddim_inversion.pipeline_cogvideox_ddim_inversion import CogVideoXDDIMInversionOutput

    def full_disk(self, path):
        raise OSError(28, "No space left on device", os.path.join(os.path.dirname(path), ".partial-x.safetensors"))

    monkeypatch.setattr(CogVideoXDDIMInversionOutput, "save", full_disk)
    target = tmp_path / "inv.safetensors"
    assert edit(clip, "--prompt", "x", "--steps", "2", "--model", tiny_checkpoint("cogvideox-5b"), "--output-dir",
                tmp_path / "out", "--save-inversion", target) == 2
    err = capsys.readouterr().err
    assert f"Could not save the inversion to {str(target)!r}: No space left on device" in err
    assert ".partial" not in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("family, difference", [
    ("cogvideox-2b", "scheduler.snr_shift_scale: inversion 1.0, this pipeline 3.0"),
    ("cogvideox1.5-5b", "transformer.patch_size_t: inversion None, this pipeline 2"),
])
def test_an_inversion_of_another_family_is_refused_before_the_weights_load(tiny_checkpoint, inversion, no_weights,
                                                                           tmp_path, capsys, family, difference):
    """Issue 24.11: the saved fingerprint is compared with the checkpoint's config files."""
    assert edit("--inversion", inversion, "--source-prompt", "a red circle", "--steps", "2", "--prompt", "x",
                "--model", tiny_checkpoint(family), "--output-dir", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "does not match this pipeline" in err and difference in err
    assert no_weights == [] and not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------------------
# 12, 13. invert's messages and mask; a folder as the video; the Hub unreachable


def test_invert_names_only_its_own_flags_and_writes_the_mask_it_promises(tiny_checkpoint, clip, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["invert", "--help"])
    help_text = capsys.readouterr().out
    assert "--inversion" not in help_text and "--output-dir" not in help_text and "NAME.mask.mp4" in help_text
    model = tiny_checkpoint("cogvideox-5b")
    target = tmp_path / "inv.safetensors"
    assert main(["invert", str(clip), "--output", str(target), "--model", model, "--mask-steps", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "--mask-steps sets the steps a mask applies on: give --mask-words too" in err and "--mask " not in err
    assert main(["invert", str(clip), "--output", str(target), "--model", model, "--steps", "2", "--device", "cpu",
                 "--source-prompt", "a red circle", "--mask-words", "circle"]) == 0
    mask = tmp_path / "inv.mask.mp4"
    assert f"mask: {mask}" in capsys.readouterr().out
    assert len(read_video(mask)[0]) == 9


def test_a_folder_given_as_the_video_is_called_a_folder(tiny_checkpoint, no_weights, tmp_path, capsys):
    assert edit(tmp_path, "--prompt", "x", "--model", tiny_checkpoint("cogvideox-5b"), "--output-dir",
                tmp_path / "out") == 2
    assert f"The video {str(tmp_path)!r} is a folder: pass a video file" in capsys.readouterr().err
    assert no_weights == []


@pytest.mark.parametrize("offline, endpoint", [(True, None), (False, "http://127.0.0.1:9")])
def test_an_unreachable_hub_fails_at_once_saying_so_in_process(clip, tmp_path, capsys, monkeypatch, offline, endpoint):
    """The slow test below without its fresh process: huggingface_hub reads HF_HUB_OFFLINE and HF_ENDPOINT when it is
    imported, so here its constants are set as those variables would set them (the session's HF_HOME holds no
    copy of the default model)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    if endpoint is not None:
        monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    started = time.perf_counter()
    code = main(["edit", str(clip), "--prompt", "x", "--output-dir", str(tmp_path / "out")])
    seconds = time.perf_counter() - started
    error = capsys.readouterr().err
    assert code == 2, error
    assert "Could not reach the Hub" in error and "pass a local folder with --model" in error
    assert seconds < 15, seconds  # the Hub client's retries took 28 s
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("environment", [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}])
@pytest.mark.slow
def test_an_unreachable_hub_fails_at_once_saying_so(clip, tmp_path, environment):
    """Issue 24.13: the default model (a Hub id) offline, or with the Hub's endpoint not answering, failed after
    28 s of retries with "does not appear to have a file named config.json"; it fails at once, saying why."""
    script = (
        "import sys, time\n"
        "from cogvideox_ddim_inversion.cli import main\n"
        "started = time.perf_counter()\n"
        f"code = main(['edit', {str(clip)!r}, '--prompt', 'x', '--output-dir', {str(tmp_path / 'out')!r}])\n"
        "print(f'code {code} seconds {time.perf_counter() - started:.1f}')\n"
    )
    env = {**os.environ, **environment, "HF_HOME": str(tmp_path / "hf-home")}  # an empty cache
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    code, seconds = result.stdout.split()[1], float(result.stdout.split()[3])
    assert code == "2", result.stderr
    assert "Could not reach the Hub" in result.stderr and "pass a local folder with --model" in result.stderr
    assert seconds < 15, seconds  # the Hub client's retries took 28 s
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------------------
# The same classes of fault, found elsewhere


@pytest.mark.parametrize("flags, expected", [
    (["--guidance", "nan"], "--guidance must be a finite number, got nan"),
    (["--reference-weight", "nan"], "--reference-weight must be a finite number, got nan"),
    (["--fps", "inf"], "--fps must be a finite number, got inf"),
])
def test_numbers_that_are_not_finite_are_refused_before_the_weights_load(tiny_checkpoint, clip, no_weights, tmp_path,
                                                                         capsys, flags, expected):
    """NaN passes every range check (`nan < 0` is false): it loaded the weights and reached the video."""
    assert edit(clip, "--prompt", "x", "--model", tiny_checkpoint("cogvideox-5b"), "--output-dir", tmp_path / "out",
                *flags) == 2
    assert expected in capsys.readouterr().err
    assert no_weights == []


def test_inputs_are_never_replaced_by_outputs(tiny_checkpoint, clip, no_weights, tmp_path, capsys):
    """--save-inversion naming the video would replace the source with the inversion; a video that is an earlier
    run's edit-1.mp4 in --output-dir would be replaced (or removed) by this run."""
    source = tmp_path / "source.mp4"
    source.write_bytes(open(clip, "rb").read())
    model = tiny_checkpoint("cogvideox-5b")
    assert edit(source, "--prompt", "x", "--model", model, "--output-dir", tmp_path / "out", "--save-inversion",
                source) == 2
    assert f"--save-inversion names the video ({str(source)!r}), which the edit reads" in capsys.readouterr().err
    earlier = tmp_path / "out" / "edit-1.mp4"
    earlier.parent.mkdir()
    earlier.write_bytes(source.read_bytes())
    assert edit(earlier, "--prompt", "x", "--model", model, "--output-dir", tmp_path / "out") == 2
    assert "is an output of a run in --output-dir" in capsys.readouterr().err
    assert no_weights == [] and source.read_bytes() == earlier.read_bytes() == open(clip, "rb").read()
