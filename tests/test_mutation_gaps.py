"""Tests that surviving mutations of tests/mutation_audit.py showed were missing (each names its mutation). They sit
here while other files are being edited; where each belongs is said in its docstring."""

import torch
from conftest import TEXT_LENGTH

from cogvideox_ddim_inversion.cogvideox_ddim_memory import enable_group_offload


def test_block_level_group_offload_onloads_t5_one_block_at_a_time(load_pipe, monkeypatch):
    """Mutation group-offload-t5-whole (belongs in tests/test_memory.py, by the group offload test). Block level
    offloading must find T5's blocks, under `encoder`: offloading the T5 model itself onloads the whole encoder in
    one group, the same output on a CPU but T5-XXL's 9.5 GB at once on a GPU."""
    from diffusers.hooks.group_offloading import ModuleGroup

    pipe = load_pipe()
    enable_group_offload(pipe, onload_device="cpu", offload_device="cpu", level="block")
    blocks = list(pipe.text_encoder.encoder.block)
    assert len(blocks) > 1
    onloaded = []  # per onload: the T5 blocks its group holds (a block, or a module holding blocks)
    original = ModuleGroup.onload_

    def recording_onload(group):
        held = {id(module) for member in group.modules for module in member.modules()}
        onloaded.append([index for index, block in enumerate(blocks) if id(block) in held])
        return original(group)

    monkeypatch.setattr(ModuleGroup, "onload_", recording_onload)
    with torch.no_grad():
        pipe.encode_prompt("a red circle", do_classifier_free_guidance=False, max_sequence_length=TEXT_LENGTH,
                           device="cpu")
    t5_onloads = [held for held in onloaded if held]
    assert t5_onloads, "no group holding a T5 block was onloaded while encoding the prompt"
    assert all(len(held) == 1 for held in t5_onloads), f"groups onloaded T5 blocks {t5_onloads} together"
    assert sorted({held[0] for held in t5_onloads}) == list(range(len(blocks)))


def test_each_window_attends_to_its_own_frames_of_the_reference(load_pipe):
    """Mutation window-reference-rows-from-another-window (belongs in tests/test_long_videos.py, whose analytic
    denoiser ignores reference rows). A long clip's edit on a real (tiny) transformer, whose attention reads the
    reference rows: in one step, the frames only the last window holds come from that window's one model call, so they
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
