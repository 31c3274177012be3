"""Long clips through `invert()` and `__call__`: overlapping temporal windows of the native length, exact round trips,
memory bounded by the window, the recorded windows, and the refusals."""

import json

import pytest
import torch
from conftest import TEXT_LENGTH
from diffusers import CogVideoXDDIMScheduler

from cogvideox_ddim_inversion import CogVideoXDDIMInversionOutput, CogVideoXDDIMInversionPipeline
from cogvideox_ddim_inversion.cogvideox_ddim_windows import (
    DEFAULT_WINDOW_WEIGHTING, WindowSchedule, native_latent_frames,
)
from cogvideox_ddim_inversion.testing.analytic_denoiser import GaussianVDenoiser
from cogvideox_ddim_inversion.testing.tiny_checkpoint import TINY_FRAMES, build_components

# The tiny checkpoints are trained on TINY_FRAMES = 9 frames: windows of 3 latent frames. An overlap of 4 video frames
# (one latent frame) puts 9 latent frames (33 frames) in 4 windows starting at 0, 2, 4, 6.
WINDOW_OVERLAP = 4
FOUR_WINDOWS = 9
# An overlap of 8 video frames (2 latent frames) puts them in 7 windows starting at 0, 1, ..., 6, where frames sit at
# different positions of the windows holding them, so the weightings differ (with an overlap of one latent frame the
# shared frame is at the edge of both windows, and every weighting gives it equal weights).
WEIGHTED_OVERLAP = 8


class CoupledDenoiser(GaussianVDenoiser):
    """The analytic denoiser plus a term coupling the frames of each call (as attention does), so that windows
    disagree about the frames they share and the combined prediction is genuinely windowed."""

    def forward(self, hidden_states, encoder_hidden_states=None, timestep=None, return_dict=True, **kwargs):
        (v,) = super().forward(hidden_states, encoder_hidden_states, timestep, return_dict, **kwargs)
        return (v + 0.05 * hidden_states.mean(dim=1, keepdim=True),)


def analytic_pipeline(seed=0):
    components = build_components("cogvideox-5b")
    scheduler = CogVideoXDDIMScheduler.from_config(components["scheduler"].config)
    denoiser = CoupledDenoiser.for_pipeline_components({**components, "scheduler": scheduler}, seed=seed)
    pipe = CogVideoXDDIMInversionPipeline(**{**components, "scheduler": scheduler, "transformer": denoiser})
    pipe.set_progress_bar_config(disable=True)
    return pipe, denoiser


def round_trip(pipe, data, steps=50, window_weighting=None, reference_windows=None, **window_kwargs):
    """Refined inversion, then regeneration over the recorded windows (`reference_windows`: others), which are
    weighted as recorded: `window_weighting` goes to `invert()` only. The relative error and the inversion."""
    inv = pipe.invert(
        latents=data, num_inference_steps=steps, fixed_point_iterations=4, max_sequence_length=TEXT_LENGTH,
        window_weighting=window_weighting, **window_kwargs,
    )
    regenerated = pipe(
        prompt="", latents=inv.trajectory[0], guidance_scale=1.0, num_inference_steps=steps, output_type="latent",
        max_sequence_length=TEXT_LENGTH, reference_windows=reference_windows or inv.windows, **window_kwargs,
    ).frames
    return ((regenerated - data).norm() / data.norm()).item(), inv


@pytest.fixture
def frame_recorder(monkeypatch):
    """Records `(rows, frames)` of every call of GaussianVDenoiser."""
    seen = []
    forward = GaussianVDenoiser.forward

    def recording(self, hidden_states, *args, **kwargs):
        seen.append(tuple(hidden_states.shape[:2]))
        return forward(self, hidden_states, *args, **kwargs)

    monkeypatch.setattr(GaussianVDenoiser, "forward", recording)
    return seen


@pytest.mark.parametrize(
    "window_weighting, window_overlap, starts",
    [(None, WINDOW_OVERLAP, (0, 2, 4, 6)), ("flat", WEIGHTED_OVERLAP, tuple(range(7))),
     ("pyramid", WEIGHTED_OVERLAP, tuple(range(7))), ("hann", WEIGHTED_OVERLAP, tuple(range(7)))],
)
def test_four_windows_invert_and_regenerate_as_exactly_as_one_window(frame_recorder, window_weighting, window_overlap,
                                                                     starts):
    pipe, denoiser = analytic_pipeline()
    assert native_latent_frames(pipe.transformer.config, pipe.vae_scale_factor_temporal) == 3 and TINY_FRAMES == 9
    data = denoiser.sample_data((1, FOUR_WINDOWS, 16, 4, 6), torch.Generator().manual_seed(0))
    windows_error, inv = round_trip(pipe, data, window_weighting=window_weighting, window_overlap=window_overlap)
    one_error, one = round_trip(pipe, data[:, :3], window_weighting=window_weighting)
    print(f"{window_weighting}: {len(starts)} windows {windows_error:.2e}, one window {one_error:.2e}")
    assert inv.windows.starts == starts and one.windows is None and "windows" not in one.settings
    assert inv.windows.scheme == (window_weighting or DEFAULT_WINDOW_WEIGHTING) == inv.settings["windows"]["scheme"]
    assert windows_error <= 1e-4 and one_error <= 1e-4
    assert {frames for _, frames in frame_recorder} == {3}  # every model call saw one native window
    if window_weighting == "flat":  # regenerating over the same windows weighted otherwise loses the round trip,
        # which is why `__call__` refuses another `window_weighting` than the reference's
        other = WindowSchedule.from_dict({**inv.windows.to_dict(), "scheme": "pyramid"})
        wrong_error, _ = round_trip(pipe, data, window_weighting="flat", reference_windows=other,
                                    window_overlap=window_overlap)
        assert wrong_error > 100 * windows_error


def test_window_weighting_changes_long_clips_only():
    """Flat and pyramid weightings give other trajectories and edits on a clip in windows, the same (bit for bit) on a
    clip of one window, where there is nothing to average."""
    pipe, denoiser = analytic_pipeline()
    data = denoiser.sample_data((1, FOUR_WINDOWS, 16, 4, 6), torch.Generator().manual_seed(5))
    runs = {}
    for frames in (FOUR_WINDOWS, 3):
        for weighting in ("flat", "pyramid"):
            inv = pipe.invert(latents=data[:, :frames], num_inference_steps=4, max_sequence_length=TEXT_LENGTH,
                              window_overlap=WEIGHTED_OVERLAP, window_weighting=weighting)
            edit = pipe(prompt="a", latents=inv.trajectory[0], reference_latents=inv.trajectory,
                        reference_windows=inv.windows, num_inference_steps=4, output_type="latent",
                        max_sequence_length=TEXT_LENGTH).frames
            fresh = pipe(prompt="a", num_frames=(frames - 1) * 4 + 1, num_inference_steps=4, output_type="latent",
                         max_sequence_length=TEXT_LENGTH, window_overlap=WEIGHTED_OVERLAP, window_weighting=weighting,
                         generator=torch.Generator().manual_seed(0)).frames
            runs[frames, weighting] = (inv.trajectory, edit, fresh)
    for long, short in zip(runs[FOUR_WINDOWS, "flat"], runs[FOUR_WINDOWS, "pyramid"]):
        assert (long - short).abs().max() > 1e-4
    for flat, pyramid in zip(runs[3, "flat"], runs[3, "pyramid"]):
        assert torch.equal(flat, pyramid)


def test_windowed_edit_does_not_depend_on_the_window_batch_size(frame_recorder):
    pipe, denoiser = analytic_pipeline()
    data = denoiser.sample_data((1, FOUR_WINDOWS, 16, 4, 6), torch.Generator().manual_seed(1))
    invs = [pipe.invert(latents=data, num_inference_steps=6, max_sequence_length=TEXT_LENGTH, window_overlap=4,
                        window_batch_size=size) for size in (1, 3)]
    torch.testing.assert_close(invs[0].trajectory, invs[1].trajectory, rtol=1e-5, atol=1e-5)
    edits = {}
    for mode in ("shared", "paired"):
        for size in (1, 3):
            frame_recorder.clear()
            edits[mode, size] = pipe(
                prompt=["a", "b"], latents=invs[0].trajectory[0], reference_latents=invs[0].trajectory,
                reference_windows=invs[0].windows, reference_mode=mode, num_inference_steps=6, output_type="latent",
                max_sequence_length=TEXT_LENGTH, window_batch_size=size,
            ).frames
            # rows per call: 2 prompts x 2 guidance branches x windows, plus the reference rows of those windows
            rows = {("shared", 1): 5, ("shared", 3): 18, ("paired", 1): 8, ("paired", 3): 24}[mode, size]
            assert max(frame_recorder) == (rows, 3)
        torch.testing.assert_close(edits[mode, 1], edits[mode, 3], rtol=1e-5, atol=1e-5)


def test_memory_is_bounded_by_the_window(frame_recorder):
    """The largest transformer call on a 161-frame clip (41 latent frames, 20 windows of the tiny model's 3) holds as
    many tokens as the one call on a native 9-frame clip; twice as many with two windows per call."""
    pipe, denoiser = analytic_pipeline()
    generator = torch.Generator().manual_seed(2)
    largest = {}
    for frames, size in ((TINY_FRAMES, 1), (161, 1), (161, 2)):
        latents = denoiser.sample_data((1, (frames - 1) // 4 + 1, 16, 4, 6), generator)
        frame_recorder.clear()
        inv = pipe.invert(latents=latents, num_inference_steps=2, max_sequence_length=TEXT_LENGTH,
                          window_batch_size=size)
        pipe(prompt="a", latents=inv.trajectory[0], reference_latents=inv.trajectory, num_inference_steps=2,
             output_type="latent", max_sequence_length=TEXT_LENGTH, window_batch_size=size)
        largest[frames, size] = max(rows * frames for rows, frames in frame_recorder)
    assert WindowSchedule.from_dict(inv.settings["windows"]).num_windows == 20
    assert largest[161, 1] == largest[TINY_FRAMES, 1] == 3 * 3  # 3 rows (guided edit, shared reference) x 3 frames
    assert largest[161, 2] == 2 * largest[TINY_FRAMES, 1]


def test_windows_are_saved_and_loaded(tmp_path):
    pipe, denoiser = analytic_pipeline()
    data = denoiser.sample_data((1, FOUR_WINDOWS, 16, 4, 6), torch.Generator().manual_seed(3))
    inv = pipe.invert(latents=data, num_inference_steps=2, max_sequence_length=TEXT_LENGTH, window_overlap=4)
    loaded = CogVideoXDDIMInversionOutput.load(inv.save(tmp_path / "long.safetensors"))
    assert loaded.windows == inv.windows == WindowSchedule.for_clip(FOUR_WINDOWS, 3, 4)
    settings = CogVideoXDDIMInversionOutput.read_settings(tmp_path / "long.safetensors")
    assert settings["windows"]["starts"] == [0, 2, 4, 6]
    assert settings["windows"]["scheme"] == DEFAULT_WINDOW_WEIGHTING
    hann = pipe.invert(latents=data, num_inference_steps=2, max_sequence_length=TEXT_LENGTH, window_overlap=4,
                       window_weighting="hann")
    loaded = CogVideoXDDIMInversionOutput.load(hann.save(tmp_path / "hann.safetensors"))
    assert loaded.windows == hann.windows == WindowSchedule.for_clip(FOUR_WINDOWS, 3, 4, scheme="hann")
    assert CogVideoXDDIMInversionOutput.read_settings(tmp_path / "hann.safetensors")["windows"]["scheme"] == "hann"


def test_long_clips_on_cogvideox_1_5_pad_each_window(frame_recorder):
    """1.5 (temporal patches of 2): each window of 3 latent frames gets one padding frame, as a native clip does."""
    components = build_components("cogvideox1.5-5b")
    pipe = CogVideoXDDIMInversionPipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    seen = []
    pipe.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(tuple(kwargs["hidden_states"].shape[:2])), with_kwargs=True
    )
    config = pipe.transformer.config
    latents = torch.randn(1, FOUR_WINDOWS, 16, config.sample_height, config.sample_width)
    inv = pipe.invert(latents=latents, num_inference_steps=2, max_sequence_length=TEXT_LENGTH, window_overlap=4)
    assert inv.windows.num_windows == 4 and set(seen) == {(1, 4)}
    seen.clear()
    video = pipe(prompt="a", num_frames=33, num_inference_steps=2, max_sequence_length=TEXT_LENGTH,
                 output_type="latent", window_overlap=4).frames
    assert video.shape[1] == FOUR_WINDOWS and set(seen) == {(2, 4)}  # fresh long noise: no padding frames kept


def test_long_clip_refusals():
    pipe, denoiser = analytic_pipeline()
    data = denoiser.sample_data((1, FOUR_WINDOWS, 16, 4, 6), torch.Generator().manual_seed(4))
    inv = pipe.invert(latents=data, num_inference_steps=2, max_sequence_length=TEXT_LENGTH, window_overlap=4)
    denoiser.calls.clear()
    with pytest.raises(ValueError, match="leave `window_overlap` unset to use the reference's windows"):
        pipe(prompt="a", latents=inv.trajectory[0], reference_latents=inv.trajectory, reference_windows=inv.windows,
             num_inference_steps=2, max_sequence_length=TEXT_LENGTH, window_overlap=0, output_type="latent")
    with pytest.raises(ValueError, match="`window_weighting='flat'`, but the reference was inverted with windows "
                       "weighted 'pyramid': leave `window_weighting` unset to use the reference's"):
        pipe(prompt="a", latents=inv.trajectory[0], reference_latents=inv.trajectory, reference_windows=inv.windows,
             num_inference_steps=2, max_sequence_length=TEXT_LENGTH, window_weighting="flat", output_type="latent")
    with pytest.raises(ValueError, match="not a non-negative multiple of the VAE's temporal compression"):
        pipe.invert(latents=data, num_inference_steps=2, max_sequence_length=TEXT_LENGTH, window_overlap=5)
    unknown = r"Unknown `window_weighting='cosine'`: choose one of 'flat', 'pyramid', 'hann'"
    with pytest.raises(ValueError, match=unknown):
        pipe.invert(latents=data, num_inference_steps=2, max_sequence_length=TEXT_LENGTH, window_weighting="cosine")
    with pytest.raises(ValueError, match=unknown):  # on a native clip too: a mistake whatever the length
        pipe(prompt="a", num_frames=9, num_inference_steps=2, max_sequence_length=TEXT_LENGTH, output_type="latent",
             window_weighting="cosine")
    with pytest.raises(ValueError, match="`window_batch_size` must be a positive int"):
        pipe.invert(latents=data, num_inference_steps=2, max_sequence_length=TEXT_LENGTH, window_batch_size=0)
    with pytest.raises(ValueError, match="has 3 latent frames but the window schedule is for 9"):
        pipe(prompt="a", num_frames=9, reference_windows=inv.windows, num_inference_steps=2,
             max_sequence_length=TEXT_LENGTH, output_type="latent")
    assert denoiser.calls == []  # all refused before any model call


def test_word_masks_are_refused_on_long_clips():
    pipe = CogVideoXDDIMInversionPipeline(**build_components("cogvideox-5b"))
    config = pipe.transformer.config
    latents = torch.randn(1, FOUR_WINDOWS, 16, config.sample_height, config.sample_width)
    with pytest.raises(ValueError, match="`mask_words` records the attention of one window: .* pass a `mask`"):
        pipe.invert(latents=latents, prompt="a cat", mask_words="cat", num_inference_steps=2,
                    max_sequence_length=TEXT_LENGTH)


def test_image_to_video_refuses_long_clips_naming_the_limit():
    pipe = CogVideoXDDIMInversionPipeline(**build_components("cogvideox-5b-i2v"))
    config = pipe.transformer.config
    latents = torch.randn(1, FOUR_WINDOWS, 16, config.sample_height, config.sample_width)
    with pytest.raises(ValueError,
                       match="longer than this image-to-video checkpoint's 9: .* Pass `num_frames` at most 9 frames"):
        pipe.invert(latents=latents, image_latents=torch.zeros_like(latents), num_inference_steps=2,
                    max_sequence_length=TEXT_LENGTH)
    with pytest.raises(ValueError, match="image-to-video checkpoints do not support"):
        pipe(prompt="a", num_frames=33, image_latents=torch.zeros_like(latents), num_inference_steps=2,
             max_sequence_length=TEXT_LENGTH, output_type="latent")


# The command line: a long generated clip end to end (--num-frames all), refusals before any weights load, evaluate.


def test_cli_edits_a_whole_long_clip_in_windows(tiny_checkpoint, tmp_path, capsys):
    from cogvideox_ddim_inversion.cli import main
    from cogvideox_ddim_inversion.testing.sample_clip import write_sample_clip
    from cogvideox_ddim_inversion.video_io import read_video

    clip = write_sample_clip(tmp_path / "long.mp4", num_frames=36, fps=8)  # 33 frames read: 9 latent, 4 windows
    out_dir = tmp_path / "out"
    code = main(["edit", str(clip), "--prompt", "a blue circle", "--model", tiny_checkpoint("cogvideox-5b"),
                 "--output-dir", str(out_dir), "--steps", "2", "--device", "cpu", "--num-frames", "all",
                 "--window-overlap", "4", "--window-batch-size", "2", "--window-weighting", "flat",
                 "--save-inversion", str(tmp_path / "long.safetensors")])
    assert code == 0, capsys.readouterr().err
    frames, _ = read_video(out_dir / "edit-1.mp4")
    assert len(frames) == 33
    settings = CogVideoXDDIMInversionOutput.read_settings(tmp_path / "long.safetensors")
    assert settings["windows"]["starts"] == [0, 2, 4, 6] and settings["num_frames"] == 33
    assert settings["windows"]["scheme"] == "flat" and settings["depends_on"]["window_weighting"] == "flat"
    run = json.loads((out_dir / "run.json").read_text())
    assert run["settings"]["window_weighting"] == "flat"
    # reused with another weighting: refused, naming the fix, before any weights load
    code = main(["edit", "--inversion", str(tmp_path / "long.safetensors"), "--prompt", "x", "--model",
                 tiny_checkpoint("cogvideox-5b"), "--output-dir", str(tmp_path / "out2"), "--steps", "2",
                 "--device", "cpu", "--window-weighting", "pyramid"])
    error = capsys.readouterr().err
    assert code == 2 and "weighted 'flat', not 'pyramid': set --window-weighting to flat" in error
    assert not (tmp_path / "out2").exists()
    # reused with other windows: refused, naming the fix, before any weights load
    code = main(["edit", "--inversion", str(tmp_path / "long.safetensors"), "--prompt", "x", "--model",
                 tiny_checkpoint("cogvideox-5b"), "--output-dir", str(tmp_path / "out2"), "--steps", "2",
                 "--device", "cpu", "--window-overlap", "0"])
    error = capsys.readouterr().err
    assert code == 2 and "--window-overlap" in error and not (tmp_path / "out2").exists()

    # the edit scored against its source, the boundaries from the saved windows
    scores_path = tmp_path / "scores.json"
    assert main(["evaluate", str(out_dir / "edit-1.mp4"), str(clip), "--inversion",
                 str(tmp_path / "long.safetensors"), "--temporal-compression", "4", "--output", str(scores_path)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(scores_path.read_text())
    assert printed["frames"] == 33 and printed["window_boundaries"] == [5, 9, 13, 17, 21, 25]
    assert printed["seam_ratio"] > 0 and printed["psnr"] < float("inf")
    assert main(["evaluate", str(clip), str(clip), "--no-flow"]) == 0  # a video against itself
    assert json.loads(capsys.readouterr().out)["psnr"] == float("inf")


@pytest.mark.parametrize("problem", ["image-to-video", "mask words", "overlap", "weighting"])
def test_cli_refuses_long_clip_settings_before_any_weights_load(tiny_checkpoint, tmp_path, capsys, no_weights,
                                                                 problem):
    from cogvideox_ddim_inversion.cli import main
    from cogvideox_ddim_inversion.testing.sample_clip import write_sample_clip

    clip = write_sample_clip(tmp_path / "long.mp4", num_frames=36, fps=8)
    variant, extra, expected = {
        "image-to-video": ("cogvideox-5b-i2v", [], "Pass --num-frames at most 9"),
        "mask words": ("cogvideox-5b", ["--source-prompt", "a red circle", "--mask-words", "circle"],
                       "pass a --mask video instead"),
        "overlap": ("cogvideox-5b", ["--window-overlap", "6"], "--window-overlap 6 video frames is not"),
        "weighting": ("cogvideox-5b", ["--window-weighting", "cosine"], "invalid choice: 'cosine' (choose from"),
    }[problem]
    model = tiny_checkpoint(variant)
    out_dir = tmp_path / "out"
    try:
        code = main(["edit", str(clip), "--prompt", "x", "--model", model, "--output-dir", str(out_dir), "--steps",
                     "2", "--device", "cpu", "--num-frames", "all", *extra])
    except SystemExit as exit:  # argparse refuses a value outside a flag's choices itself
        code = exit.code
    assert code == 2 and expected in capsys.readouterr().err and not out_dir.exists() and not no_weights


def test_batch_jobs_take_the_window_weighting():
    """A jobs file's `window_weighting` is read by the --window-weighting flag, and changes the settings hash (the
    outputs of a long clip depend on it)."""
    import dataclasses

    from cogvideox_ddim_inversion.workflow.jobs import Job, job_settings, settings_hash
    from cogvideox_ddim_inversion.workflow.settings import EditSettings

    defaults = EditSettings(video=None, prompts=["x"])
    assert defaults.window_weighting is None  # the pipeline's default, or a reused inversion's own
    settings = job_settings(Job("job", 1, {"video": "a.mp4", "window_weighting": "hann"}), defaults, "/data")
    assert settings.window_weighting == "hann"
    with pytest.raises(ValueError, match="`window_weighting`: choose one of flat, pyramid, hann"):
        job_settings(Job("job", 1, {"video": "a.mp4", "window_weighting": "cosine"}), defaults, "/data")
    hashes = {settings_hash(dataclasses.replace(defaults, window_weighting=w), "model", "float32")
              for w in (None, "flat", "hann")}
    assert len(hashes) == 3


# Progress: windows x steps on a long clip, one update per window model call; steps on a native clip.


class RecordingBar:
    """Stands in for the pipeline's tqdm: its total, every update and its description."""

    def __init__(self, total):
        self.total, self.n, self.updates, self.desc = total, 0, [], ""

    def update(self, n=1):
        self.n += n
        self.updates.append(n)

    def set_description(self, desc):
        self.desc = desc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture
def bars(monkeypatch):
    made = []

    def progress_bar(self, iterable=None, total=None):
        made.append(RecordingBar(total))
        return made[-1]

    monkeypatch.setattr(CogVideoXDDIMInversionPipeline, "progress_bar", progress_bar)
    return made


@pytest.mark.parametrize("window_batch_size, calls_per_step", [(1, 4), (3, 2)])
def test_progress_counts_window_calls_on_long_clips(bars, window_batch_size, calls_per_step):
    pipe, denoiser = analytic_pipeline()
    data = denoiser.sample_data((1, FOUR_WINDOWS, 16, 4, 6), torch.Generator().manual_seed(6))
    at_model_call = []
    forward = denoiser.forward
    denoiser.forward = lambda *args, **kwargs: (at_model_call.append(bars[-1].n), forward(*args, **kwargs))[1]
    inv = pipe.invert(latents=data, num_inference_steps=3, max_sequence_length=TEXT_LENGTH,
                      window_overlap=WINDOW_OVERLAP, window_batch_size=window_batch_size)
    assert inv.windows.num_windows == 4
    (bar,) = bars
    assert bar.total == bar.n == 3 * calls_per_step and bar.desc == "Inverting 4 windows"
    assert [n for n in bar.updates if n] == [1] * bar.total  # one update per window model call
    assert at_model_call == list(range(bar.total))  # it moves within a step
    at_model_call.clear()
    pipe(prompt="a", latents=inv.trajectory[0], reference_latents=inv.trajectory, reference_windows=inv.windows,
         num_inference_steps=3, max_sequence_length=TEXT_LENGTH, output_type="latent",
         window_batch_size=window_batch_size)
    bar = bars[-1]
    assert bar.total == bar.n == 3 * calls_per_step and bar.desc == "Editing 4 windows"
    assert [n for n in bar.updates if n] == [1] * bar.total and at_model_call == list(range(bar.total))


def test_progress_with_fixed_point_refinement_holds_at_each_step_end(bars):
    """Refinement makes 1 + 2 evaluations a step (4 window calls each): the bar moves with the first evaluation's
    calls, holds during the refinement and is at the step's end after each step, never past its total."""
    pipe, denoiser = analytic_pipeline()
    data = denoiser.sample_data((1, FOUR_WINDOWS, 16, 4, 6), torch.Generator().manual_seed(7))
    at_step_end, at_model_call = [], []
    forward = denoiser.forward
    denoiser.forward = lambda *args, **kwargs: (at_model_call.append(bars[-1].n), forward(*args, **kwargs))[1]

    def on_step_end(pipe, step, t, tensors):
        at_step_end.append(bars[-1].n)
        return tensors

    inv = pipe.invert(latents=data, num_inference_steps=3, max_sequence_length=TEXT_LENGTH,
                      window_overlap=WINDOW_OVERLAP, fixed_point_iterations=2, fixed_point_tolerance=None,
                      callback_on_step_end=on_step_end)
    (bar,) = bars
    assert inv.model_evaluations == 9 and len(at_model_call) == 36
    assert bar.total == bar.n == 12 and max(at_model_call) == 12
    # each step: its first evaluation's 4 calls move the bar, its 8 refinement calls wait at the step's end
    assert at_model_call == [n for step in range(3) for n in [*range(4 * step, 4 * step + 4), *[4 * step + 4] * 8]]
    assert at_step_end == [4, 8, 12]


def test_progress_counts_steps_on_native_clips_and_keeps_a_given_description(bars):
    pipe, denoiser = analytic_pipeline()
    data = denoiser.sample_data((1, 3, 16, 4, 6), torch.Generator().manual_seed(8))
    inv = pipe.invert(latents=data, num_inference_steps=3, max_sequence_length=TEXT_LENGTH, window_batch_size=2)
    pipe(prompt="a", latents=inv.trajectory[0], reference_latents=inv.trajectory, num_inference_steps=3,
         max_sequence_length=TEXT_LENGTH, output_type="latent")
    for bar in bars:
        assert bar.total == bar.n == 3 and bar.updates == [1, 1, 1] and bar.desc == ""


def test_progress_on_a_real_bar():
    """diffusers' tqdm: the total and the description printed, a description of the caller's kept."""
    import io

    pipe, denoiser = analytic_pipeline()
    data = denoiser.sample_data((1, FOUR_WINDOWS, 16, 4, 6), torch.Generator().manual_seed(9))
    for config, expected in (({}, "Inverting 4 windows: 100%"), ({"desc": "mine"}, "mine: 100%")):
        out = io.StringIO()
        pipe.set_progress_bar_config(file=out, disable=False, **config)
        pipe.invert(latents=data, num_inference_steps=2, max_sequence_length=TEXT_LENGTH, window_overlap=4)
        assert expected in out.getvalue() and "8/8" in out.getvalue()


def test_each_window_attends_to_its_own_frames_of_the_reference(load_pipe):
    """A long clip's edit on a real (tiny) transformer, whose attention reads the reference rows (the analytic
    denoiser above ignores them): in one step, the frames only the last window holds come from that window's one model call, so they
    change with the reference's frames in that window and not with those only the first window holds."""
    pipe = load_pipe()
    config = pipe.transformer.config
    # 9 latent frames (33 video frames) in windows of the tiny model's 3 latent frames overlapping by 1: starts 0, 2,
    # 4, 6. Frames 0 and 1 are only in the first window, frames 7 and 8 only in the last.
    shape = (1, 9, config.in_channels, config.sample_height, config.sample_width)
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(shape, generator=generator)
    reference = torch.randn((1, *shape), generator=generator)

    def edit(reference_latents):
        return pipe(
            prompt="a blue circle", latents=latents, reference_latents=reference_latents, num_inference_steps=1,
            guidance_scale=1.0, window_overlap=4, output_type="latent", max_sequence_length=TEXT_LENGTH,
        ).frames

    first_only, last_window = reference.clone(), reference.clone()
    first_only[:, :, :2] = torch.randn((1, 1, 2, *shape[2:]), generator=generator)
    last_window[:, :, 6:] = torch.randn((1, 1, 3, *shape[2:]), generator=generator)
    plain = edit(reference)
    assert not torch.equal(edit(last_window)[:, 7:], plain[:, 7:])  # the last window reads the reference
    assert torch.equal(edit(first_only)[:, 7:], plain[:, 7:])  # ... its own frames of it only
