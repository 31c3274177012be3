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
