"""Temporal windows: the schedule, the weights, and the combined prediction as one exact function of the clip."""

import functools
import json
import math

import pytest
import torch
from diffusers import CogVideoXDDIMScheduler

from cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline
from cogvideox_ddim_inversion.cogvideox_ddim_checkpoint import latent_frame_count
from cogvideox_ddim_inversion.cogvideox_ddim_sampling import solve_inverse_step
from cogvideox_ddim_inversion.cogvideox_ddim_windows import (
    WindowSchedule,
    default_window_overlap,
    overlap_latent_frames,
    split_windows,
    window_starts,
    window_weights,
    windowed,
)
from cogvideox_ddim_inversion.testing.analytic_denoiser import GaussianVDenoiser
from cogvideox_ddim_inversion.testing.tiny_checkpoint import build_components


@pytest.mark.parametrize(
    "frames, window, overlap, starts",
    [
        (13, 13, 3, [0]),  # one window: the native clip
        (7, 13, 3, [0]),  # shorter than a window
        (41, 13, 3, [0, 10, 20, 28]),  # 161 video frames, the default overlap (12 video frames)
        (41, 13, 4, [0, 9, 18, 27, 28]),  # the last window shifted back to end at the last frame
        (40, 13, 4, [0, 9, 18, 27]),  # 4 windows that fit exactly
        (26, 13, 0, [0, 13]),  # no overlap: cut and concatenated
        (61, 21, 5, [0, 16, 32, 40]),  # CogVideoX 1.5: 241 frames in windows of 81 overlapping by 20
    ],
)
def test_window_starts(frames, window, overlap, starts):
    assert window_starts(frames, window, overlap) == starts
    if frames > window:
        assert len(starts) == math.ceil((frames - overlap) / (window - overlap))
        covered = torch.zeros(frames, dtype=torch.int64)
        for start in starts:
            covered[start : start + window] += 1
        assert bool((covered >= 1).all()) and starts[-1] + window == frames
        # consecutive windows overlap by at least `overlap` frames
        assert all(b - a <= window - overlap for a, b in zip(starts, starts[1:]))


def test_window_starts_refuses_bad_input():
    with pytest.raises(ValueError, match="overlap of 13 latent frames does not fit windows of 13: pass an overlap"):
        window_starts(41, 13, 13)
    with pytest.raises(ValueError, match="must be positive"):
        window_starts(0, 13, 3)
    with pytest.raises(TypeError, match="`overlap` must be an int"):
        window_starts(41, 13, 3.0)


def test_window_weights():
    assert window_weights(4, "pyramid").tolist() == [1, 2, 2, 1]  # diffusers' FreeNoise pyramid
    assert window_weights(5, "pyramid").tolist() == [1, 2, 3, 2, 1]
    assert window_weights(13, "flat").tolist() == [1] * 13
    hann = window_weights(13, "hann")
    assert bool((hann > 0).all()) and hann.argmax() == 6 and torch.allclose(hann, hann.flip(0))
    for scheme in ("pyramid", "hann"):  # falls off towards both edges
        half = window_weights(13, scheme)[:7]
        assert bool((half[1:] > half[:-1]).all())
    with pytest.raises(ValueError, match="Unknown window weighting 'gauss': choose one of flat, pyramid, hann"):
        window_weights(13, "gauss")


@pytest.mark.parametrize("scheme", ["flat", "pyramid", "hann"])
def test_frame_weights_sum_to_one_per_frame(scheme):
    schedule = WindowSchedule.for_clip(41, 13, window_overlap=16, scheme=scheme)
    weights = schedule.frame_weights()
    total = torch.zeros(41, dtype=torch.float64)
    for i in range(schedule.num_windows):
        total[schedule.window_slice(i)] += weights[i]
    torch.testing.assert_close(total, torch.ones(41, dtype=torch.float64), rtol=0, atol=1e-15)
    # a frame only the first window holds has weight exactly 1
    assert weights[0, 0].item() == 1.0
    if scheme == "pyramid":  # a linear cross-fade over the 4 overlapping frames of windows 0 and 1
        assert weights[0, 9:].tolist() == pytest.approx([0.8, 0.6, 0.4, 0.2])


def test_overlap_in_video_frames():
    assert default_window_overlap(13) == 12 and default_window_overlap(21) == 20  # a quarter of 49 / 81 frames
    assert overlap_latent_frames(None, 13) == 3 and overlap_latent_frames(None, 21) == 5
    assert overlap_latent_frames(16, 13) == 4 and overlap_latent_frames(0, 13) == 0
    with pytest.raises(ValueError, match="`window_overlap` 10 video frames is not .* multiple of .* 4 .*: pass 8 or"):
        overlap_latent_frames(10, 13)
    with pytest.raises(ValueError, match="pass 0 or 4"):
        overlap_latent_frames(-4, 13)
    with pytest.raises(ValueError, match="leaves windows of 49 frames nothing new: pass at most 48"):
        overlap_latent_frames(52, 13)
    with pytest.raises(TypeError, match="must be an int"):
        overlap_latent_frames(12.0, 13)


def test_schedule_round_trips_through_json_and_refuses_inconsistent_data():
    schedule = WindowSchedule.for_clip(latent_frame_count(161), 13, window_overlap=16, scheme="flat")
    assert schedule.num_windows == 5 and schedule.starts == (0, 9, 18, 27, 28)
    assert WindowSchedule.from_dict(json.loads(json.dumps(schedule.to_dict()))) == schedule
    short = WindowSchedule.for_clip(9, 13)
    assert (short.window, short.starts) == (9, (0,))
    with pytest.raises(ValueError, match="are not the schedule of 41 latent frames .* build it with"):
        WindowSchedule.from_dict({**schedule.to_dict(), "starts": [0, 9, 18, 28]})
    with pytest.raises(ValueError, match=r"lacks \['scheme'\]"):
        WindowSchedule.from_dict({k: v for k, v in schedule.to_dict().items() if k != "scheme"})
    with pytest.raises(ValueError, match="has 13 latent frames but the window schedule is for 41"):
        schedule.check_frames(13)


def test_boundaries_in_latent_and_video_frames():
    schedule = WindowSchedule.for_clip(26, 13, window_overlap=0)
    assert schedule.latent_boundaries() == [13]
    # latent frame 13 decodes to video frames 49..52: the seam is the change from frame 48 to 49
    assert schedule.video_boundaries() == [49]
    overlapping = WindowSchedule.for_clip(41, 13)  # starts 0, 10, 20, 28
    assert overlapping.latent_boundaries() == [10, 13, 20, 23, 28, 33]


def frame_independent_model(latents, indices):
    """A per-frame function: every window predicts the same for the same frame."""
    return latents.sin() * 2


def test_windowed_prediction_of_a_per_frame_model_is_the_whole_clip_prediction():
    latents = torch.randn(2, 41, 4, 3, 5, generator=torch.Generator().manual_seed(0))
    whole = frame_independent_model(latents, None)
    for scheme in ("flat", "pyramid", "hann"):
        schedule = WindowSchedule.for_clip(41, 13, window_overlap=16, scheme=scheme)
        for batch_size in (1, 2, 5, 8):
            combined = windowed(frame_independent_model, schedule, batch_size)(latents)
            torch.testing.assert_close(combined, whole, rtol=1e-6, atol=1e-6)
            # frames only one window holds are that window's prediction bit for bit
            assert torch.equal(combined[:, :9], whole[:, :9])


def test_windows_are_batched_window_major_and_extra_arguments_pass_through():
    schedule = WindowSchedule.for_clip(41, 13, window_overlap=16)
    calls = []

    def predict_window(window_latents, indices, t, scale=1.0):
        calls.append((tuple(window_latents.shape), indices, t, scale))
        # window-major rows: each window's rows hold that window's frames
        expected = split_windows(latents, schedule, indices)
        assert torch.equal(window_latents, expected)
        return window_latents * scale

    latents = torch.randn(3, 41, 2, 2, 2)
    combined = windowed(predict_window, schedule, window_batch_size=2)(latents, 7, scale=2.0)
    assert [call[1] for call in calls] == [(0, 1), (2, 3), (4,)]
    assert calls[0][0] == (6, 13, 2, 2, 2) and calls[-1][0] == (3, 13, 2, 2, 2)
    assert all(call[2:] == (7, 2.0) for call in calls)
    torch.testing.assert_close(combined, latents * 2)


def test_one_window_calls_the_model_once_on_the_whole_clip_unchanged():
    schedule = WindowSchedule.for_clip(13, 13)
    latents = torch.randn(1, 13, 2, 2, 2)
    output = torch.randn(1, 13, 2, 2, 2, dtype=torch.bfloat16)
    seen = []
    predict = windowed(lambda x, indices: seen.append((x, indices)) or output, schedule)
    assert predict(latents) is output and seen[0][0] is latents and seen[0][1] == (0,)


def test_windowed_refuses_bad_input():
    schedule = WindowSchedule.for_clip(41, 13)
    with pytest.raises(ValueError, match="`window_batch_size` must be a positive int"):
        windowed(frame_independent_model, schedule, 0)
    with pytest.raises(ValueError, match="has 40 latent frames but the window schedule is for 41"):
        windowed(frame_independent_model, schedule)(torch.zeros(1, 40, 1, 1, 1))
    with pytest.raises(ValueError, match=r"returned shape \(1, 12, 1, 1, 1\) for 1 windows of 1 rows and 13 frames"):
        windowed(lambda x, indices: x[:, 1:], schedule)(torch.zeros(1, 41, 1, 1, 1))


def test_memory_is_bounded_by_the_window():
    """The largest model call on a 161-frame clip has as many tokens as the one call on a 49-frame clip."""
    sizes = []

    def predict_window(window_latents, indices):
        sizes.append(window_latents.numel())
        return window_latents

    native = WindowSchedule.for_clip(latent_frame_count(49), 13)
    long = WindowSchedule.for_clip(latent_frame_count(161), 13, window_overlap=16)
    windowed(predict_window, native)(torch.zeros(1, 13, 16, 6, 9))
    native_size = sizes.pop()
    windowed(predict_window, long)(torch.zeros(1, 41, 16, 6, 9))
    assert long.num_windows == 5 and len(sizes) == 5 and max(sizes) == native_size
    sizes.clear()
    windowed(predict_window, long, window_batch_size=2)(torch.zeros(1, 41, 16, 6, 9))
    assert max(sizes) == 2 * native_size


# Exactness: the pipeline's refined inverse step and the scheduler's forward step, with the combined prediction.
def inverse_step_solver(pipe):
    """The pipeline's refined inverse step `(predict, t, sample, iterations, tolerance) -> (latents, evaluations)`."""
    return functools.partial(solve_inverse_step, pipe.ddim_scheduler())


def analytic_setup(latent_frames, seed=0):
    components = build_components("cogvideox-5b")
    scheduler = CogVideoXDDIMScheduler.from_config(components["scheduler"].config)
    denoiser = GaussianVDenoiser.for_pipeline_components({**components, "scheduler": scheduler}, seed=seed)
    pipe = CogVideoXDDIMInversionPipeline(**{**components, "scheduler": scheduler, "transformer": denoiser})
    data = denoiser.sample_data((1, latent_frames, 16, 4, 6), torch.Generator().manual_seed(seed))
    return pipe, denoiser, data


def window_model(denoiser):
    """The analytic denoiser plus a term coupling each window's frames (as attention does), so windows disagree
    about the frames they share: the combined prediction is a genuinely windowed function."""

    def predict_window(window_latents, indices, t):
        v = denoiser(window_latents, timestep=t.expand(window_latents.shape[0]))[0].float()
        return v + 0.05 * window_latents.mean(dim=1, keepdim=True)

    return predict_window


def round_trip(pipe, predict, data, steps=50, iterations=4):
    """Refined inversion of `data` with `predict`, then DDIM regeneration with it: the relative error."""
    scheduler = pipe.ddim_scheduler()
    scheduler.set_timesteps(steps)
    solve = inverse_step_solver(pipe)
    latents = data
    for t in reversed(scheduler.timesteps):
        latents, _ = solve(lambda sample: predict(sample, t), t, latents, iterations, 1e-5)
    for t in scheduler.timesteps:
        latents = scheduler.step(predict(latents, t), t, latents, return_dict=False)[0]
    return ((latents - data).norm() / data.norm()).item()


@pytest.mark.parametrize("scheme", ["flat", "pyramid"])
def test_four_windows_invert_and_regenerate_as_exactly_as_one_window(scheme):
    pipe, denoiser, data = analytic_setup(40)
    schedule = WindowSchedule.for_clip(40, 13, window_overlap=16, scheme=scheme)
    assert schedule.num_windows == 4
    model = window_model(denoiser)
    windows_error = round_trip(pipe, windowed(model, schedule), data)
    one_window = WindowSchedule.for_clip(13, 13)
    one_error = round_trip(pipe, windowed(model, one_window), data[:, :13])
    print(f"{scheme}: 4 windows {windows_error:.2e}, one window {one_error:.2e}")
    assert one_error <= 1e-4 and windows_error <= 1e-4
    # the windows genuinely disagree: the combined prediction is not the whole-clip call of the same model
    t = pipe.ddim_scheduler().timesteps[10]
    assert (windowed(model, schedule)(data, t) - model(data, (0,), t)).abs().max() > 1e-3
    # and it is one deterministic function: batching the windows differently gives the same prediction
    torch.testing.assert_close(
        windowed(model, schedule, 3)(data, t), windowed(model, schedule, 1)(data, t), rtol=1e-6, atol=1e-6
    )


def test_the_command_line_names_the_pipeline_weightings():
    """The front ends offer the weightings of the torch-free choices module: the windows module's own."""
    from cogvideox_ddim_inversion import cogvideox_ddim_choices as choices
    from cogvideox_ddim_inversion.cogvideox_ddim_windows import DEFAULT_WINDOW_WEIGHTING, WEIGHTING_SCHEMES
    from cogvideox_ddim_inversion.workflow.settings import EDIT_OPTIONS

    assert tuple(WEIGHTING_SCHEMES) == choices.WINDOW_WEIGHTINGS == EDIT_OPTIONS["window_weighting"].choices
    assert DEFAULT_WINDOW_WEIGHTING == choices.DEFAULT_WINDOW_WEIGHTING
    assert WindowSchedule.for_clip(41, 13).scheme == DEFAULT_WINDOW_WEIGHTING
