import atexit
import os
import shutil
import tempfile
from pathlib import Path


# Keep Hugging Face caches (and diffusers' dynamic-module copies) out of the user's home. Set before diffusers loads.
# Removed when pytest exits, after every test and the subprocesses they start (which inherit HF_HOME) have ended.
HF_HOME_PREFIX = "cogvideox-ddim-inversion-hf-home-"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix=HF_HOME_PREFIX)
atexit.register(shutil.rmtree, os.environ["HF_HOME"], ignore_errors=True)
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


REPO_ROOT = Path(__file__).resolve().parents[1]
PIPELINE_FILE = REPO_ROOT / "pipeline_cogvideox_ddim_inversion.py"
README = REPO_ROOT / "README.md"
SHARED = REPO_ROOT.parent / "shared"
HORSE = SHARED / "data" / "videos" / "horse.mp4"
TEXT_LENGTH = 16  # max_text_seq_length of the tiny checkpoints


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """`tiny_checkpoint(variant)` -> path of a saved tiny random checkpoint, written once per session."""
    from cogvideox_ddim_inversion.testing.tiny_checkpoint import write_tiny_checkpoint

    root = tmp_path_factory.mktemp("checkpoints")
    written = {}

    def get(variant: str = "cogvideox-5b") -> str:
        if variant not in written:
            written[variant] = write_tiny_checkpoint(root / variant, variant=variant)
        return written[variant]

    return get


@pytest.fixture
def load_pipe(tiny_checkpoint):
    """`load_pipe(variant)` -> CogVideoXDDIMInversionPipeline loaded with from_pretrained, progress bars off."""
    from cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline

    def load(variant: str = "cogvideox-5b"):
        pipe = CogVideoXDDIMInversionPipeline.from_pretrained(tiny_checkpoint(variant))
        pipe.set_progress_bar_config(disable=True)
        return pipe

    return load


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(0)


@pytest.fixture
def no_weights(monkeypatch):
    """Loading any weights fails the test: every entry point's loader and `from_pretrained` record the attempt and
    raise, so a test can assert a refusal came before any weights loaded."""
    from cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline
    from cogvideox_ddim_inversion.workflow import loading

    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise RuntimeError("weights were loaded")

    # every entry point imports the loader from workflow.loading when it runs
    monkeypatch.setattr(loading, "load_pipeline", refuse)
    monkeypatch.setattr(CogVideoXDDIMInversionPipeline, "from_pretrained", refuse)
    return attempts
