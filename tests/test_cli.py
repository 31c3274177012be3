"""The console command: edit a video file end to end, and refuse bad input without writing anything."""

import json
import os

import numpy as np
import PIL.Image
import pytest

from cogvideox_ddim_inversion.cli import main
from cogvideox_ddim_inversion.testing.sample_clip import write_sample_clip
from cogvideox_ddim_inversion.testing.tiny_checkpoint import VARIANTS
from cogvideox_ddim_inversion.toy import world as toy_world
from cogvideox_ddim_inversion.video_io import read_video


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "edit" in out and "demo" in out


def edit(*args) -> int:
    return main(["edit", *map(str, args), "--steps", "2", "--device", "cpu"])


def test_edit_writes_edits_side_by_side_and_run_json(tiny_checkpoint, tmp_path, capsys):
    clip = write_sample_clip(tmp_path / "clip.mp4", num_frames=13, fps=8)
    out_dir = tmp_path / "out"
    code = edit(clip, "--prompt", "a blue circle", "--prompt", "a green circle", "--source-prompt", "a red circle",
                "--model", tiny_checkpoint("cogvideox-5b"), "--output-dir", out_dir, "--seed", 3)
    assert code == 0
    printed = capsys.readouterr().out
    for name in ("edit-1", "edit-2", "side_by_side"):
        path = out_dir / f"{name}.mp4"
        assert f"{name}: {path}" in printed
        frames, fps = read_video(path)
        width = 96 * 3 if name == "side_by_side" else 96  # source | edit-1 | edit-2
        assert len(frames) == 9 and fps == 8.0 and frames[0].size == (width, 64)  # the model's native 9 frames
    assert not (out_dir / "reconstruction.mp4").exists()  # only on request
    record = json.loads((out_dir / "run.json").read_text())
    assert record["settings"]["prompts"] == ["a blue circle", "a green circle"]
    assert record["settings"]["seed"] == 3 and record["inversion"]["num_inference_steps"] == 2
    assert record["versions"]["diffusers"] and set(record["timings_s"]) >= {"read_s", "invert_s", "edit_s"}
    assert sorted(os.listdir(out_dir)) == ["edit-1.mp4", "edit-2.mp4", "run.json", "side_by_side.mp4"]


def test_fresh_noise_follows_the_seed_and_the_output_follows_fps(tiny_checkpoint, tmp_path):
    """`--start noise --seed N`: the same seed gives the same edit, another seed another; `--fps` sets the outputs'
    frame rate (the source plays at 8)."""
    clip = write_sample_clip(tmp_path / "clip.mp4", num_frames=9, fps=8)

    def edit_from_noise(seed, name):
        out_dir = tmp_path / name
        code = edit(clip, "--prompt", "a blue circle", "--model", tiny_checkpoint("cogvideox-5b"), "--output-dir",
                    out_dir, "--start", "noise", "--seed", seed, "--fps", 12, "--reconstruction")
        assert code == 0
        frames, fps = read_video(out_dir / "edit-1.mp4")
        assert fps == 12.0 and read_video(out_dir / "reconstruction.mp4")[1] == 12.0
        return np.stack(frames)

    first, again, other = edit_from_noise(3, "first"), edit_from_noise(3, "again"), edit_from_noise(4, "other")
    assert np.array_equal(first, again)
    assert np.abs(first.astype(int) - other.astype(int)).mean() > 1.0


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_edit_every_family_from_a_saved_inversion(tiny_checkpoint, tmp_path, variant):
    """Each family: invert and save, then edit from the saved inversion (the same edit as inverting again), with a
    reconstruction; image-to-video checkpoints condition on the first source frame, or on --image. Issue 24.4: --image
    conditions the edits only; the reconstruction regenerates the source as it was inverted, the same with or without
    --image."""
    clip = write_sample_clip(tmp_path / "clip.mp4", num_frames=9, fps=8)
    model = tiny_checkpoint(variant)
    common = ["--prompt", "a blue circle", "--source-prompt", "a red circle", "--model", model, "--seed", 1]
    if variant == "cogvideox-5b-i2v":
        common += ["--resize-mode", "stretch"]  # learned positional embeddings: the native size only
    assert edit(clip, *common, "--output-dir", tmp_path / "direct", "--save-inversion", tmp_path / "inv.st") == 0
    assert edit("--inversion", tmp_path / "inv.st", *common, "--output-dir", tmp_path / "reused",
                "--reconstruction") == 0
    direct, _ = read_video(tmp_path / "direct" / "edit-1.mp4")
    reused, _ = read_video(tmp_path / "reused" / "edit-1.mp4")
    np.testing.assert_array_equal(np.stack(direct), np.stack(reused))
    assert len(read_video(tmp_path / "reused" / "reconstruction.mp4")[0]) == 9
    run = json.loads((tmp_path / "reused" / "run.json").read_text())
    assert run["timings_s"]["invert_s"] < 5 and run["settings"]["inversion"] == str(tmp_path / "inv.st")
    if variant.endswith("i2v"):
        image = tmp_path / "edited_first_frame.png"
        PIL.Image.new("RGB", (96, 64), (0, 0, 255)).save(image)
        assert edit("--inversion", tmp_path / "inv.st", *common, "--output-dir", tmp_path / "image",
                    "--image", image, "--prompt", "a green circle",  # two prompts: one shared reference row
                    "--reconstruction") == 0
        assert len(read_video(tmp_path / "image" / "edit-2.mp4")[0]) == 9
        conditioned, _ = read_video(tmp_path / "image" / "edit-1.mp4")
        assert np.abs(np.asarray(conditioned[0], float) - np.asarray(reused[0], float)).mean() > 1
        assert np.abs(np.stack(conditioned).astype(int) - np.stack(reused).astype(int)).mean() > 1  # --image did
        np.testing.assert_array_equal(np.stack(read_video(tmp_path / "image" / "reconstruction.mp4")[0]),
                                      np.stack(read_video(tmp_path / "reused" / "reconstruction.mp4")[0]))


def test_invert_command_and_reuse_with_other_settings(tiny_checkpoint, tmp_path, capsys):
    clip = write_sample_clip(tmp_path / "clip.mp4", num_frames=9)
    model = tiny_checkpoint("cogvideox-5b")
    assert main(["invert", clip, "--model", model, "--output", str(tmp_path / "inv.st"), "--steps", "2"]) == 0
    assert (tmp_path / "inv.st").is_file()
    capsys.readouterr()
    # other steps, or another checkpoint: refused before editing, naming the difference, nothing written
    code = main(["edit", "--inversion", str(tmp_path / "inv.st"), "--prompt", "x", "--model", model, "--steps", "3",
                 "--output-dir", str(tmp_path / "a")])
    assert code == 2 and "--steps was 2, not 3: set --steps to 2" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    code = edit("--inversion", tmp_path / "inv.st", "--prompt", "x", "--model", tiny_checkpoint("cogvideox-2b"),
                "--output-dir", tmp_path / "b")
    err = capsys.readouterr().err
    assert code == 2 and "does not match this pipeline" in err
    assert "snr_shift_scale: inversion 1.0, this pipeline 3.0" in err
    assert not (tmp_path / "b").exists()  # refused from the config files: no folder made


@pytest.mark.parametrize(
    "problem",
    ["missing video", "unreadable video", "too few frames", "not a checkpoint", "empty prompt", "no prompt",
     "missing image", "not an image", "bad reference steps", "bad strength", "ramp without guidance",
     "output is a file", "missing inversion", "not an inversion", "image for text-to-video", "size for learned PE"],
)
def test_bad_input_gives_an_error_and_no_output(tiny_checkpoint, tmp_path, capsys, problem):
    clip = write_sample_clip(tmp_path / "clip.mp4", num_frames=9)
    # Errors in the settings are found before the checkpoint is opened: a checkpoint that does not exist is not
    # reached. The video is read before any weights load (it needs the checkpoint's config for the frame count).
    model = str(tmp_path / "no-such-checkpoint")
    if problem in ("missing video", "unreadable video", "too few frames", "image for text-to-video"):
        model = tiny_checkpoint("cogvideox-5b")
    elif problem == "size for learned PE":
        model = tiny_checkpoint("cogvideox-5b-i2v")
    args = {"prompt": ["--prompt", "x"], "extra": []}
    expected = {
        "missing video": "Video file not found",
        "unreadable video": "Could not decode",
        "too few frames": "needs at least 9",
        "not a checkpoint": "model_index.json",
        "empty prompt": "Empty prompt",
        "no prompt": "give at least one --prompt",
        "missing image": "Image file not found",
        "not an image": "Could not read the image",
        "bad reference steps": "--reference-steps must be",
        "bad strength": "--strength must be in (0, 1]",
        "ramp without guidance": "--guidance-ramp 8.0 needs --guidance > 1",
        "output is a file": "is a file: give a folder",
        "missing inversion": "Inversion file not found",
        "not an inversion": "not an inversion saved by",
        "image for text-to-video": "--image conditions image-to-video checkpoints",
        "size for learned PE": "learned positional embeddings for 96x64 (width x height) only",
    }[problem]
    if problem == "missing video":
        clip = str(tmp_path / "nope.mp4")
    elif problem == "unreadable video":
        (tmp_path / "bad.mp4").write_text("hello")
        clip = str(tmp_path / "bad.mp4")
    elif problem == "too few frames":
        clip = write_sample_clip(tmp_path / "short.mp4", num_frames=4)
    elif problem == "not a checkpoint":
        model = str(tmp_path)
    elif problem == "empty prompt":
        args["prompt"] = ["--prompt", " "]
    elif problem == "no prompt":
        args["prompt"] = []
    elif problem in ("missing image", "not an image"):
        (tmp_path / "image.png").write_text("not a png")
        args["extra"] = ["--image", str(tmp_path / ("image.png" if problem == "not an image" else "nope.png"))]
    elif problem == "image for text-to-video":
        PIL.Image.new("RGB", (96, 64)).save(tmp_path / "image.png")
        args["extra"] = ["--image", str(tmp_path / "image.png")]
    elif problem == "size for learned PE":
        args["extra"] = ["--height", "32"]
    elif problem == "bad reference steps":
        args["extra"] = ["--reference-steps", "0.8,0.2"]
    elif problem == "bad strength":
        args["extra"] = ["--strength", "1.5"]
    elif problem == "ramp without guidance":
        args["extra"] = ["--guidance", "1", "--guidance-ramp", "8"]
    elif problem in ("missing inversion", "not an inversion"):
        (tmp_path / "inv.st").write_text("{}")
        args["extra"] = ["--inversion", str(tmp_path / ("inv.st" if problem == "not an inversion" else "nope.st"))]
    out_dir = tmp_path / "out"
    if problem == "output is a file":
        out_dir.write_text("")
    code = main(["edit", clip, *args["prompt"], *args["extra"], "--model", model, "--output-dir", str(out_dir),
                 "--steps", "2"])
    assert code == 2
    assert expected in capsys.readouterr().err
    assert out_dir.is_file() or not out_dir.exists() or not any(out_dir.iterdir())


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
    assert (tmp_path / "reconstruction.mp4").is_file()
    frames, _ = read_video(tmp_path / "edit-1.mp4")
    assert len(frames) == 9


def test_portrait_source_stays_portrait_on_cogvideox_1_5(tiny_checkpoint, tmp_path):
    """CogVideoX 1.5 takes any size: a portrait clip is edited in portrait, frames spread over the whole clip."""
    clip = write_sample_clip(tmp_path / "portrait.mp4", num_frames=21, height=96, width=64)
    out_dir = tmp_path / "out"
    assert edit(clip, "--prompt", "a blue disc", "--model", tiny_checkpoint("cogvideox1.5-5b"), "--output-dir",
                out_dir, "--sampling", "spread") == 0
    frames, _ = read_video(out_dir / "edit-1.mp4")
    assert len(frames) == 9 and frames[0].height > frames[0].width
    source = json.loads((out_dir / "run.json").read_text())["inversion"]["source"]
    assert source["sampling"] == "spread" and source["frame_indices"] == list(range(0, 17, 2))


def test_frame_counts_that_the_vae_cannot_decode_in_step_are_not_read(tiny_checkpoint, tmp_path):
    """--num-frames 13 is 4 latent frames, which diffusers' VAE decodes into 16 frames: the source is read as 9 frames
    (3 latent frames), so the edit and side_by_side.mp4 have the source's frames one for one (this failed when
    writing side_by_side.mp4, after the whole edit, when 13 frames were read)."""
    clip = write_sample_clip(tmp_path / "clip.mp4", num_frames=14, fps=8)
    out_dir = tmp_path / "out"
    assert edit(clip, "--prompt", "a blue circle", "--model", tiny_checkpoint("cogvideox-5b"), "--output-dir",
                out_dir, "--num-frames", 13, "--reconstruction") == 0
    for name in ("edit-1", "side_by_side", "reconstruction"):
        assert len(read_video(out_dir / f"{name}.mp4")[0]) == 9
    record = json.loads((out_dir / "run.json").read_text())
    assert record["inversion"]["source"]["frame_indices"] == list(range(9))


# ---------------------------------------------------------------------------------------------------------------------
# A saved inversion is used only with what it was made from, checked before any weights load


@pytest.fixture(scope="module")
def saved_inversion(tiny_checkpoint, tmp_path_factory):
    """`invert` of a 17-frame clip (read as the tiny model's 9 frames) with a source prompt and 2 steps."""
    folder = tmp_path_factory.mktemp("saved-inversion")
    clip = write_sample_clip(folder / "clip.mp4", num_frames=17)
    path = folder / "inv.safetensors"
    assert main(["invert", clip, "--output", str(path), "--steps", "2", "--device", "cpu", "--source-prompt",
                 "a red circle", "--model", tiny_checkpoint("cogvideox-5b")]) == 0
    return {"clip": clip, "inversion": str(path), "folder": folder}


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--source-prompt", "a blue circle"], "--source-prompt was 'a red circle', not 'a blue circle': set "
                                               "--source-prompt to 'a red circle'"),
        (["--steps", "3"], "--steps was 2, not 3: set --steps to 2"),
        (["--strength", "0.5"], "--strength was 1.0, not 0.5: set --strength to 1.0"),
        (["--fixed-point-iterations", "2"],
         "--fixed-point-iterations was 0, not 2: set --fixed-point-iterations to 0"),
        (["--skip-frames-start", "4"], "--skip-frames-start was 0, not 4: set --skip-frames-start to 0"),
        (["--skip-frames-end", "4"], "--skip-frames-end was 0, not 4: set --skip-frames-end to 0"),
        (["--frame-stride", "2"], "--frame-stride was 1, not 2: set --frame-stride to 1"),
        (["--sampling", "spread"], "--sampling was 'first', not 'spread': set --sampling to 'first'"),
        (["--num-frames", "9"], "--num-frames was None, not 9: leave --num-frames out"),
        (["--height", "32"], "--height was None, not 32: leave --height out"),
        (["--width", "64"], "--width was None, not 64: leave --width out"),
        (["--resize-mode", "pad"], "--resize-mode was 'crop', not 'pad': set --resize-mode to 'crop'"),
        ("other clip", "it was made from another video"),
        (["--mask-words", "circle"], "it recorded no mask for --mask-words ['circle'] (it has None)"),
    ],
)
def test_an_inversion_is_refused_with_settings_it_was_not_made_with(saved_inversion, tiny_checkpoint, no_weights,
                                                                     tmp_path, capsys, flags, expected):
    """Issue 24.2: every setting the inversion depends on is compared, before any weights load, with a message
    naming the difference and the flag to change; nothing is written."""
    video = saved_inversion["clip"]
    if flags == "other clip":  # the same size and frames read, another video (the disc moves slower)
        video, flags = write_sample_clip(tmp_path / "other.mp4", num_frames=18), []
    base = {"--source-prompt": "a red circle", "--steps": "2"}
    for flag in flags[::2]:
        base.pop(flag, None)
    out_dir = tmp_path / "out"
    code = main(["edit", video, "--inversion", saved_inversion["inversion"], "--prompt", "a blue circle",
                 "--model", tiny_checkpoint("cogvideox-5b"), "--output-dir", str(out_dir), "--device", "cpu",
                 *[item for pair in base.items() for item in pair], *flags])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"The inversion {saved_inversion['inversion']!r} was made with other settings than this edit" in err
    assert expected in err
    assert no_weights == [] and not out_dir.exists()


def test_the_same_settings_pass_every_check(saved_inversion, tiny_checkpoint, no_weights, tmp_path, capsys):
    """The control of the test above: with the settings the inversion was made with, the checks pass and the edit
    goes on to load the weights (refused here)."""
    with pytest.raises(RuntimeError, match="weights were loaded"):
        main(["edit", saved_inversion["clip"], "--inversion", saved_inversion["inversion"], "--prompt",
              "a blue circle", "--model", tiny_checkpoint("cogvideox-5b"), "--output-dir", str(tmp_path / "out"),
              "--device", "cpu", "--source-prompt", "a red circle", "--steps", "2"])
    assert len(no_weights) == 1


def test_an_inversion_saved_outside_the_workflow_is_checked_by_its_shape(load_pipe, tiny_checkpoint, request,
                                                                         tmp_path, capsys):
    """An inversion saved with `inv.save()` records no edit settings, only what `invert()` records: 17 frames read
    as 9 is refused before loading (it crashed after the edit, leaving a lone edit-1.mp4)."""
    clip = write_sample_clip(tmp_path / "clip.mp4", num_frames=17)
    pipe = load_pipe("cogvideox-5b")
    pipe.invert(video=clip, num_inference_steps=2, num_frames=17, max_sequence_length=16).save(tmp_path / "inv.st")
    no_weights = request.getfixturevalue("no_weights")
    out_dir = tmp_path / "out"
    code = main(["edit", clip, "--inversion", str(tmp_path / "inv.st"), "--prompt", "a blue circle", "--steps", "2",
                 "--model", tiny_checkpoint("cogvideox-5b"), "--output-dir", str(out_dir), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2
    assert "it holds 17 frames of 96x64, this edit reads the video as 9 frames of 96x64" in err
    assert no_weights == [] and not out_dir.exists()


@pytest.mark.parametrize("problem", ["save-inversion is a folder", "output under a file", "save over the inversion",
                                     "invert output is a folder"])
def test_output_paths_are_checked_before_any_weights_load(saved_inversion, tiny_checkpoint, no_weights, tmp_path,
                                                          capsys, problem):
    (tmp_path / "a-file").write_text("")
    clip, model = saved_inversion["clip"], tiny_checkpoint("cogvideox-5b")
    args, expected = {
        "save-inversion is a folder": (["edit", clip, "--prompt", "x", "--save-inversion", str(tmp_path)],
                                       "is a folder: give a file name in it"),
        "output under a file": (["edit", clip, "--prompt", "x", "--output-dir", str(tmp_path / "a-file" / "out")],
                                "which is a file: give a path under a folder"),
        "save over the inversion": (["edit", clip, "--prompt", "x", "--source-prompt", "a red circle", "--steps", "2",
                                     "--inversion", saved_inversion["inversion"], "--save-inversion",
                                     saved_inversion["inversion"]], "--save-inversion names the --inversion"),
        "invert output is a folder": (["invert", clip, "--output", str(tmp_path)],
                                      f"--output {str(tmp_path)!r} is a folder: give a file name"),
    }[problem]
    if args[0] == "edit" and "--output-dir" not in args:
        args += ["--output-dir", str(tmp_path / "out")]
    assert main([*args, "--model", model, "--device", "cpu"]) == 2
    assert expected in capsys.readouterr().err
    assert no_weights == [] and not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------------------
# Options the pipeline takes, and the help


def test_mask_and_trajectory_options_reach_the_pipeline_and_the_saved_inversion(tiny_checkpoint, tmp_path,
                                                                                monkeypatch):
    from cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline

    seen = {}
    invert, call = CogVideoXDDIMInversionPipeline.invert, CogVideoXDDIMInversionPipeline.__call__

    def spy_invert(self, *args, **kwargs):
        seen["invert"] = kwargs
        inv = invert(self, *args, **kwargs)
        seen["trajectory_device"] = inv.trajectory.device.type
        return inv

    def spy_call(self, *args, **kwargs):
        seen["call"] = kwargs
        return call(self, *args, **kwargs)

    monkeypatch.setattr(CogVideoXDDIMInversionPipeline, "invert", spy_invert)
    monkeypatch.setattr(CogVideoXDDIMInversionPipeline, "__call__", spy_call)
    clip = write_sample_clip(tmp_path / "clip.mp4", num_frames=9)
    out_dir = tmp_path / "out"
    assert edit(clip, "--prompt", "a blue circle", "--source-prompt", "a red circle", "--model",
                tiny_checkpoint("cogvideox-5b"), "--output-dir", out_dir, "--mask-words", "circle", "--mask-blocks",
                "0,1", "--mask-steps", "0.5", "--no-mask-refine", "--trajectory-device", "cpu",
                "--save-inversion", tmp_path / "inv.st") == 0
    assert {name: seen["invert"][name] for name in ("mask_blocks", "mask_steps", "mask_refine", "trajectory_device")} \
        == {"mask_blocks": [0, 1], "mask_steps": 0.5, "mask_refine": False, "trajectory_device": "cpu"}
    assert seen["call"]["mask_steps"] == 0.5 and seen["trajectory_device"] == "cpu"
    from cogvideox_ddim_inversion.pipeline_cogvideox_ddim_inversion import CogVideoXDDIMInversionOutput

    recorded = CogVideoXDDIMInversionOutput.read_settings(tmp_path / "inv.st")["depends_on"]
    assert recorded["mask_blocks"] == [0, 1] and recorded["mask_refine"] is False and recorded["mask_steps"] == 0.5
    assert "trajectory_device" not in recorded  # memory only


@pytest.mark.parametrize("flags, expected", [
    (["--mask-blocks", "0"], "--mask-blocks sets the mask --mask-words records: give --mask-words too"),
    (["--mask-refine"], "--mask-refine sets the mask --mask-words records"),
    (["--mask-steps", "0.5"], "--mask-steps sets the steps a mask applies on: give --mask or --mask-words too"),
    (["--mask-words", "circle", "--mask-blocks", "99"], "--mask-blocks [99]: this checkpoint has blocks 0 to"),
    (["--mask-words", "circle", "--mask-steps", "0.8,0.2"], "--mask-steps must be"),
    (["--trajectory-device", "gpu7"], "--trajectory-device 'gpu7' is not a device"),
])
def test_bad_mask_and_trajectory_options_are_refused_before_the_model_loads(tiny_checkpoint, no_weights, tmp_path,
                                                                            capsys, flags, expected):
    clip = write_sample_clip(tmp_path / "clip.mp4", num_frames=9)
    assert edit(clip, "--prompt", "x", "--source-prompt", "a red circle", "--model", tiny_checkpoint("cogvideox-5b"),
                "--output-dir", tmp_path / "out", *flags) == 2
    assert expected in capsys.readouterr().err
    assert no_weights == []


def subcommand_parsers():
    import argparse

    from cogvideox_ddim_inversion.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices


@pytest.mark.parametrize("command", sorted(subcommand_parsers()))
def test_every_option_has_help_a_group_and_its_default(command):
    """Issue 24.18: every option of every subcommand says what it does and its default (or that it is required),
    inside a titled group."""
    parser = subcommand_parsers()[command]
    text = parser.format_help()
    for group in parser._action_groups:
        for action in group._group_actions:
            if not action.option_strings or action.dest == "help":
                continue
            name = action.option_strings[0]
            assert action.help, f"{command} {name} has no help"
            assert group.title not in ("options", "optional arguments"), f"{command} {name} is in no group"
            help_text = action.help % vars(action)
            assert "default" in help_text or action.required or "required" in help_text, (command, name)
            if action.default not in (None, False, "") and not isinstance(action.default, bool):
                assert f"default: {action.default}" in help_text, (command, name, help_text)
    assert "default:" in text


def test_tiny_checkpoint_help_lists_its_variants(capsys):
    with pytest.raises(SystemExit):
        main(["tiny-checkpoint", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert all(variant in out for variant in VARIANTS)
