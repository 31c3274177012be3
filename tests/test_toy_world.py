"""The toy world's ground truth is exact and its detectors read it back from rendered clips."""

import numpy as np
import pytest

from cogvideox_ddim_inversion.toy import world as toy_world


def test_split_holds_out_combinations_but_every_word_pair_is_trained():
    assert len(toy_world.ALL_COMBOS) == len(toy_world.TRAIN_COMBOS) + len(toy_world.HELD_OUT)
    assert not set(toy_world.TRAIN_COMBOS) & set(toy_world.HELD_OUT)
    assert len(toy_world.HELD_OUT) >= 20
    for i in range(4):
        for j in range(i + 1, 4):
            trained = {(combo[i], combo[j]) for combo in toy_world.TRAIN_COMBOS}
            assert trained == {(combo[i], combo[j]) for combo in toy_world.ALL_COMBOS}


def test_captions_follow_the_grammar_and_parse_back():
    text = toy_world.caption("circle", "red", "left", "black")
    assert text == "a red circle moving left on a black background"
    assert toy_world.parse_caption(text) == ("circle", "red", "left", "black")
    assert set(text.split()) <= set(toy_world.GRAMMAR_WORDS)


def test_generation_is_deterministic_and_splits_are_respected():
    a = toy_world.make_clips(6, seed=3, split="held_out")
    b = toy_world.make_clips(6, seed=3, split="held_out")
    for x, y in zip(a, b):
        assert np.array_equal(x.frames, y.frames) and x.caption == y.caption
        assert x.combo in toy_world.HELD_OUT
    assert all(c.combo in toy_world.TRAIN_COMBOS for c in toy_world.make_clips(6, seed=3, split="train"))
    assert not np.array_equal(a[0].frames, toy_world.make_clips(6, seed=4, split="held_out")[0].frames)


@pytest.mark.parametrize("combo", [("circle", "red", "left", "black"), ("square", "yellow", "up", "white"),
                                   ("triangle", "blue", "down", "gray"), ("square", "green", "right", "gray")])
def test_ground_truth_is_exact(combo):
    clip = toy_world.random_clip(np.random.default_rng(0), combo)
    shape, colour, direction, background = combo
    assert clip.frames.shape == (toy_world.NUM_FRAMES, toy_world.HEIGHT, toy_world.WIDTH, 3)
    assert (toy_world.NUM_FRAMES - 1) % 4 == 0
    rows, cols = np.mgrid[0 : toy_world.HEIGHT, 0 : toy_world.WIDTH]
    for frame, mask, centroid in zip(clip.frames, clip.masks, clip.centroids):
        assert mask.sum() > 50
        assert (frame[mask] == toy_world.COLOURS[colour]).all()
        assert (frame[~mask] == toy_world.BACKGROUNDS[background]).all()
        np.testing.assert_allclose(centroid, (cols[mask].mean(), rows[mask].mean()))
        # the shape stays inside the frame, off the 2-pixel border the background detector reads
        assert not mask[:2].any() and not mask[-2:].any() and not mask[:, :2].any() and not mask[:, -2:].any()
    dx, dy = toy_world.DIRECTIONS[direction]
    travel = clip.centroids[-1] - clip.centroids[0]
    # along the motion the centroid travels; across it, it only wobbles by pixel sampling of the mask
    assert abs(travel[0] * dy + travel[1] * dx) < 1.0
    assert abs(travel[0] * dx + travel[1] * dy) >= 19.0  # at least 2.5 px per frame over 8 frames (less rounding)


def test_detectors_recover_the_ground_truth_of_generated_clips():
    for clip in toy_world.make_clips(60, seed=11, split="all"):
        found = toy_world.describe(clip.frames)
        assert found["colour"] == clip.colour
        assert found["background"] == clip.background
        assert found["direction"] == clip.direction
        assert found["shape"] == clip.shape
        np.testing.assert_allclose(found["centroids"], clip.centroids, atol=1e-9)
        assert np.array_equal(toy_world.foreground_masks(clip.frames), clip.masks)


def test_recolour_is_the_exact_colour_edit():
    clip = toy_world.make_clips(1, seed=5, split="held_out")[0]
    target = next(colour for colour in toy_world.COLOURS if colour != clip.colour)
    edited = toy_world.recolour(clip, target)
    assert edited.caption == toy_world.caption(clip.shape, target, clip.direction, clip.background)
    assert np.array_equal(edited.masks, clip.masks) and np.array_equal(edited.centroids, clip.centroids)
    assert np.array_equal(edited.frames[~clip.masks], clip.frames[~clip.masks])  # background untouched
    assert (edited.frames[clip.masks] == toy_world.COLOURS[target]).all()
    found = toy_world.describe(edited.frames)
    assert found["colour"] == target and toy_world.centroid_error(found["centroids"], clip.centroids) == 0
    assert clip.colour != target and (clip.frames[clip.masks] != edited.frames[clip.masks]).any()  # a copy
    with pytest.raises(ValueError, match="choose one of"):
        toy_world.recolour(clip, "purple")


def test_detectors_survive_blur_and_noise():
    rng = np.random.default_rng(1)
    for clip in toy_world.make_clips(20, seed=5, split="all"):
        frames = clip.frames.astype(np.float64)
        # a 3x3 box blur (soft edges, as a VAE gives) plus noise
        padded = np.pad(frames, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
        blurred = sum(padded[:, i : i + frames.shape[1], j : j + frames.shape[2]] for i in range(3) for j in range(3)) / 9
        noisy = np.clip(blurred + rng.normal(0, 8, frames.shape), 0, 255).astype(np.uint8)
        found = toy_world.describe(noisy)
        assert found["colour"] == clip.colour and found["direction"] == clip.direction
        assert toy_world.centroid_error(found["centroids"], clip.centroids) < 1.0


def test_detectors_report_nothing_on_an_empty_clip():
    empty = np.full((9, 64, 64, 3), toy_world.BACKGROUNDS["gray"], dtype=np.uint8)
    assert toy_world.detect_colour(empty)[0] is None
    assert toy_world.detect_direction(toy_world.detect_centroids(empty)) is None
    assert toy_world.centroid_error(toy_world.detect_centroids(empty), np.zeros((9, 2))) == float("inf")


def test_image_metrics():
    clip = toy_world.make_clips(1, seed=0)[0]
    assert toy_world.psnr(clip.frames, clip.frames) == float("inf")
    assert toy_world.ssim(clip.frames, clip.frames) == pytest.approx(1.0)
    noisy = np.clip(clip.frames.astype(int) + 10, 0, 255)
    assert 25 < toy_world.psnr(noisy, clip.frames) < 30
    assert toy_world.ssim(noisy, clip.frames) < 1.0
    # masked PSNR only looks at the masked pixels
    changed = clip.frames.copy()
    changed[clip.masks] = 0
    assert toy_world.psnr(changed, clip.frames, ~clip.masks) == float("inf")


def test_masked_ssim_averages_the_windows_centred_on_the_mask():
    clip = toy_world.make_clips(1, seed=0)[0]
    recoloured = toy_world.recolour(clip, "blue" if clip.colour != "blue" else "red").frames
    everywhere = np.ones(clip.masks.shape, dtype=bool)
    assert toy_world.ssim(recoloured, clip.frames, everywhere) == toy_world.ssim(recoloured, clip.frames) < 0.99
    # windows (11x11) centred more than 5 pixels away from the shape do not see the change
    far = ~dilate_square(clip.masks, 5)
    assert toy_world.ssim(recoloured, clip.frames, far) == pytest.approx(1.0)
    assert toy_world.ssim(recoloured, clip.frames, clip.masks) < 0.9


def dilate_square(masks, radius):
    out = masks.copy()
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            out |= np.roll(np.roll(masks, dy, axis=1), dx, axis=2)
    return out
