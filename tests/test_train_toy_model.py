"""The toy training script: deterministic, loadable output, and the architecture of the committed checkpoint."""

import json
import os

import pytest
import torch

from cogvideox_ddim_inversion.toy import train as train_toy_model
from cogvideox_ddim_inversion.toy.demo import TOY_CHECKPOINT


pytestmark = pytest.mark.slow  # trains twice: every test here shares those runs

# A few steps of each stage on a handful of clips: enough to run every line of the training, not to learn anything.
TINY_RUN = dict(vae_steps=2, vae_batch=2, num_clips=6, transformer_steps=3, transformer_batch=4, max_minutes=5.0)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    torch.set_num_threads(min(2, torch.get_num_threads()))
    folders = [str(tmp_path_factory.mktemp(f"toy_run_{index}")) for index in range(2)]

    def determinism_setting():
        return torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()

    caller_setting = determinism_setting()
    # The two runs start from different caller settings (off; on with warn_only): each must be given back as it was.
    settings_after = []
    stats = []
    try:
        for folder, (enabled, warn_only) in zip(folders, [(False, False), (True, True)]):
            torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
            stats.append(train_toy_model.train(folder, seed=5, **TINY_RUN))
            settings_after.append(determinism_setting())
    finally:
        torch.use_deterministic_algorithms(caller_setting[0], warn_only=caller_setting[1])
    return folders, stats, settings_after


def _weights(folder):
    from cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline

    pipe = CogVideoXDDIMInversionPipeline.from_pretrained(folder)
    return pipe, {f"{name}.{key}": value for name in ("vae", "transformer")
                  for key, value in getattr(pipe, name).state_dict().items()}


def test_same_seed_gives_the_same_weights_bit_for_bit(two_runs):
    (first, second), *_ = two_runs
    _, weights_a = _weights(first)
    _, weights_b = _weights(second)
    assert weights_a.keys() == weights_b.keys()
    different = [key for key in weights_a if not torch.equal(weights_a[key], weights_b[key])]
    assert different == []


def test_training_leaves_the_callers_determinism_setting_alone(two_runs):
    *_, settings_after = two_runs
    assert settings_after == [(False, False), (True, True)]


def test_output_loads_and_records_its_training(two_runs):
    (folder, _), (stats, _), _ = two_runs
    pipe, _ = _weights(folder)
    assert pipe.vae.config.scaling_factor == pytest.approx(stats["vae_scaling_factor"])
    assert stats["vae_steps"] == TINY_RUN["vae_steps"]
    assert stats["transformer_steps"] == TINY_RUN["transformer_steps"]
    with open(os.path.join(folder, "toy_checkpoint.json")) as f:
        info = json.load(f)
    assert info["training"] == json.loads(json.dumps(stats))
    assert info["max_sequence_length"] == train_toy_model.TEXT_LENGTH


@pytest.mark.parametrize("component", ["transformer", "vae", "text_encoder", "scheduler"])
def test_script_builds_the_committed_checkpoints_architecture(two_runs, component):
    """Changing the script's architecture without retraining and recommitting the checkpoint fails here."""
    (folder, _), *_ = two_runs
    name = "scheduler_config.json" if component == "scheduler" else "config.json"

    def config(root):
        with open(os.path.join(root, component, name)) as f:
            values = json.load(f)
        # Versions of the libraries that wrote it, and the scaling factor the training measures, may differ.
        return {key: value for key, value in values.items()
                if key not in ("_diffusers_version", "transformers_version", "scaling_factor", "dtype")}

    assert config(folder) == config(TOY_CHECKPOINT)
