"""GuidanceScaleCallback: the guidance scale changes exactly at the cutoff, and bad setups fail with a clear message."""

import numpy as np
import pytest
import torch
from conftest import TEXT_LENGTH
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

from cogvideox_ddim_inversion.callbacks import GuidanceScaleCallback
from cogvideox_ddim_inversion.testing.sample_clip import sample_clip_frames


STEPS = 4
CALL = dict(num_inference_steps=STEPS, max_sequence_length=TEXT_LENGTH, output_type="latent")
FRAMES = np.stack(sample_clip_frames(num_frames=9))


class RecordGuidance(PipelineCallback):
    """Records the guidance scale the next step will use."""

    tensor_inputs = []

    def __init__(self):
        super().__init__()
        self.scales = []

    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
        self.scales.append(pipeline.guidance_scale)
        return callback_kwargs


@pytest.fixture
def inverted(load_pipe):
    pipe = load_pipe("cogvideox-5b")
    return pipe, pipe.invert(video=FRAMES, prompt="a horse", num_inference_steps=STEPS,
                             max_sequence_length=TEXT_LENGTH)


def test_guidance_changes_after_the_cutoff_step(inverted):
    pipe, inv = inverted
    record = RecordGuidance()
    pipe(prompt="a zebra", guidance_scale=2.0, latents=inv.trajectory[0], reference_latents=inv.trajectory,
         callback_on_step_end=MultiPipelineCallbacks([GuidanceScaleCallback(7.0, cutoff_step_ratio=0.5), record]),
         **CALL)
    # int(4 * 0.5) = 2: steps 0-2 at 2, step 3 at 7 (diffusers' cutoff callbacks count the same way)
    assert record.scales == [2.0, 2.0, 7.0, 7.0]


def test_ramped_edit_equals_two_calls_split_at_the_cutoff(inverted):
    """Steps 0-1 at guidance 2 then steps 2-3 at guidance 7 in one call == the same as two calls (strength 0.5)."""
    pipe, inv = inverted
    edit = dict(prompt="a zebra", negative_prompt="a horse", reference_prompt="a horse")
    ramped = pipe(guidance_scale=2.0, latents=inv.trajectory[0], reference_latents=inv.trajectory,
                  callback_on_step_end=GuidanceScaleCallback(7.0, cutoff_step_index=1), **edit, **CALL).frames

    middle = {}

    def keep_step_1(pipeline, step_index, timestep, callback_kwargs):
        if step_index == 1:
            middle["latents"] = callback_kwargs["latents"].clone()
        return callback_kwargs

    first = pipe(guidance_scale=2.0, latents=inv.trajectory[0], reference_latents=inv.trajectory,
                 callback_on_step_end=keep_step_1, **edit, **CALL).frames
    second = pipe(guidance_scale=7.0, latents=middle["latents"], reference_latents=inv.trajectory[2:], strength=0.5,
                  **edit, **CALL).frames
    torch.testing.assert_close(ramped, second, rtol=0, atol=0)
    assert not torch.equal(ramped, first)


def test_bad_setups_say_what_to_do(inverted):
    pipe, inv = inverted
    with pytest.raises(ValueError, match="must be > 1"):
        GuidanceScaleCallback(guidance_scale=1.0)
    with pytest.raises(ValueError, match="pass `guidance_scale` > 1"):
        pipe(prompt="a zebra", guidance_scale=1.0, latents=inv.trajectory[0], reference_latents=inv.trajectory,
             callback_on_step_end=GuidanceScaleCallback(7.0), **CALL)
