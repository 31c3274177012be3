"""Every local way of loading the pipeline gives the same pipeline: same code, same weights, same edit.

Covered here: `custom_pipeline="<file>.py"`, `custom_pipeline="<folder>"` (a folder with `pipeline.py`), a model folder
that bundles the pipeline file with the weights, the installed package, and `from_pipe`. The Hub repo forms are in
test_hub.py. Each path runs the same short inversion + edit and must match the installed package's result exactly.
"""

import importlib.metadata
import json
import shutil

import numpy as np
import pytest
import torch
from conftest import PIPELINE_FILE, REPO_ROOT, TEXT_LENGTH
from diffusers import CogVideoXPipeline, DiffusionPipeline
from diffusers.utils.dynamic_modules_utils import get_relative_imports

import cogvideox_ddim_inversion
from cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline, CogVideoXRefAttnProcessor
from cogvideox_ddim_inversion.publish import (
    PIPELINE_MODULES,
    copy_pipeline_files,
    pipeline_modules,
    relative_imports,
    write_hub_folder,
)
from cogvideox_ddim_inversion.testing.sample_clip import sample_clip_frames


STEPS = 3
BUNDLED_PIPELINE = "pipeline_cogvideox_ddim_inversion"  # the file name a model repo bundles the code under


def qualname(obj) -> str:
    return f"{type(obj).__module__}.{type(obj).__name__}"


def run_edit(pipe) -> dict:
    """Invert the sample clip and edit it (3 steps); also record the attention processors in use mid-edit."""
    pipe.set_progress_bar_config(disable=True)
    seen = set()

    def spy(p, step, timestep, callback_kwargs):
        seen.update(qualname(proc) for proc in p.transformer.attn_processors.values())
        return {}

    video = np.stack(sample_clip_frames(num_frames=9))  # 9 frames, 3 latent frames: the shortest clip, the cheapest
    inv = pipe.invert(video=video, num_inference_steps=STEPS, max_sequence_length=TEXT_LENGTH)
    out = pipe(
        prompt="a blue circle moving right",
        latents=inv.trajectory[0],
        reference_latents=inv.trajectory,
        num_inference_steps=STEPS,
        max_sequence_length=TEXT_LENGTH,
        output_type="latent",
        callback_on_step_end=spy,
    )
    return {"trajectory": inv.trajectory, "edit": out.frames, "processors_during_edit": seen,
            "processors_after": {qualname(p) for p in pipe.transformer.attn_processors.values()}}


def assert_same_edit(result: dict, reference: dict) -> None:
    assert torch.equal(result["trajectory"], reference["trajectory"])
    assert torch.equal(result["edit"], reference["edit"])


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint):
    return tiny_checkpoint("cogvideox-5b")


@pytest.fixture(scope="module")
def reference(checkpoint):
    """The edit made by the installed package's class, which every other loading path must reproduce."""
    pipe = CogVideoXDDIMInversionPipeline.from_pretrained(checkpoint)
    result = run_edit(pipe)
    assert torch.isfinite(result["edit"]).all()
    return result


def test_installed_package_exports_the_pipeline_and_processor(checkpoint, reference):
    from cogvideox_ddim_inversion.pipeline_cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline as defined
    from cogvideox_ddim_inversion.processors.reference_attention import CogVideoXRefAttnProcessor as processor

    assert CogVideoXDDIMInversionPipeline is defined
    assert CogVideoXRefAttnProcessor is processor
    assert issubclass(CogVideoXDDIMInversionPipeline, CogVideoXPipeline)
    assert set(cogvideox_ddim_inversion.__all__) >= {"CogVideoXDDIMInversionPipeline", "CogVideoXRefAttnProcessor"}
    assert importlib.metadata.version("cogvideox-ddim-inversion") == cogvideox_ddim_inversion.__version__
    scripts = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts")}
    assert scripts.get("cogvideox-ddim-inversion") == "cogvideox_ddim_inversion.cli:main"

    # The edit swaps in the package's reference processor, and puts the checkpoint's processors back afterwards.
    assert reference["processors_during_edit"] == {qualname(CogVideoXRefAttnProcessor())}
    assert all("CogVideoXAttnProcessor" in name for name in reference["processors_after"])
    assert reference["edit"].shape == (1, 3, 16, 8, 12)


def test_pipeline_modules_list_matches_the_relative_imports():
    # diffusers copies a custom pipeline's direct relative imports (no recursion) next to it: the Hub folder and
    # bundled layouts must ship exactly those, and a shipped module may import only modules among them.
    imported = {name.replace(".", "/") + ".py" for name in get_relative_imports(PIPELINE_FILE)}
    assert imported == set(PIPELINE_MODULES) == set(pipeline_modules())
    assert "cogvideox_ddim_sampling.py" in imported and "processors/reference_attention.py" in imported
    for module in PIPELINE_MODULES:
        own = get_relative_imports(REPO_ROOT / module)
        if module.startswith("processors/"):  # a subfolder: its relative imports would resolve inside processors/
            assert own == [], f"{module} imports a local module"
        own_paths = {name.replace(".", "/") + ".py" for name in own}
        assert own_paths <= imported, f"{module} imports {own_paths - imported}, which the pipeline file does not"


def test_pipeline_modules_are_derived_from_the_imports(tmp_path):
    pipeline = tmp_path / "pipeline.py"
    pipeline.write_text("import os\nfrom .b_mod import x\nfrom .sub.a_mod import (\n    y,\n)\nfrom .b_mod import z\n")
    assert relative_imports(pipeline) == ["b_mod.py", "sub/a_mod.py"]
    pipeline.write_text("from . import b_mod\n")
    with pytest.raises(ValueError, match="not a direct relative import"):
        relative_imports(pipeline)


def test_custom_pipeline_file_path(checkpoint, reference):
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        DiffusionPipeline.from_pretrained(checkpoint, custom_pipeline=str(PIPELINE_FILE))

    pipe = DiffusionPipeline.from_pretrained(checkpoint, custom_pipeline=str(PIPELINE_FILE), trust_remote_code=True)

    # A dynamic copy of the file (not the installed package) with its relative imports resolved next to it.
    assert type(pipe).__name__ == "CogVideoXDDIMInversionPipeline"
    assert type(pipe).__module__ == "diffusers_modules.local.pipeline_cogvideox_ddim_inversion"
    result = run_edit(pipe)
    assert result["processors_during_edit"] == {
        "diffusers_modules.local.processors.reference_attention.CogVideoXRefAttnProcessor"
    }
    assert_same_edit(result, reference)


def test_custom_pipeline_folder(checkpoint, reference, tmp_path):
    folder = write_hub_folder(tmp_path / "hub-folder", "tester/cogvideox-ddim-inversion")
    assert (folder / "pipeline.py").read_bytes() == PIPELINE_FILE.read_bytes()

    pipe = DiffusionPipeline.from_pretrained(checkpoint, custom_pipeline=str(folder), trust_remote_code=True)

    assert type(pipe).__name__ == "CogVideoXDDIMInversionPipeline"
    assert type(pipe).__module__ == "diffusers_modules.local.pipeline"
    result = run_edit(pipe)
    assert result["processors_during_edit"] == {
        "diffusers_modules.local.processors.reference_attention.CogVideoXRefAttnProcessor"
    }
    assert_same_edit(result, reference)


@pytest.mark.parametrize("named_by", ["custom_pipeline", "model_index"])
def test_model_folder_bundling_the_pipeline(checkpoint, reference, tmp_path, named_by):
    model = tmp_path / "tiny-cogvideox-with-pipeline"
    shutil.copytree(checkpoint, model)
    written = copy_pipeline_files(model, pipeline_file_name=f"{BUNDLED_PIPELINE}.py")
    assert written == [f"{BUNDLED_PIPELINE}.py", *PIPELINE_MODULES]

    if named_by == "custom_pipeline":
        pipe = DiffusionPipeline.from_pretrained(model, custom_pipeline=BUNDLED_PIPELINE, trust_remote_code=True)
    else:
        # diffusers' other convention: model_index.json names [module file, class] and no argument is needed.
        index = json.loads((model / "model_index.json").read_text())
        index["_class_name"] = [BUNDLED_PIPELINE, "CogVideoXDDIMInversionPipeline"]
        (model / "model_index.json").write_text(json.dumps(index))
        pipe = DiffusionPipeline.from_pretrained(model, trust_remote_code=True)

    assert type(pipe).__name__ == "CogVideoXDDIMInversionPipeline"
    assert type(pipe).__module__ == f"diffusers_modules.local.{BUNDLED_PIPELINE}"
    assert_same_edit(run_edit(pipe), reference)


def test_from_pipe_shares_components_and_leaves_the_source_pipeline_intact(checkpoint, reference):
    base = CogVideoXPipeline.from_pretrained(checkpoint)
    base.set_progress_bar_config(disable=True)
    processors_before = {name: qualname(p) for name, p in base.transformer.attn_processors.items()}

    pipe = CogVideoXDDIMInversionPipeline.from_pipe(base)

    assert type(pipe) is CogVideoXDDIMInversionPipeline
    for name in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert getattr(pipe, name) is getattr(base, name), name
    assert_same_edit(run_edit(pipe), reference)

    # The shared transformer got its processors back, so the source pipeline still generates as before, and the
    # inversion pipeline without a reference is plain CogVideoX.
    assert {name: qualname(p) for name, p in base.transformer.attn_processors.items()} == processors_before
    common = dict(prompt="a red circle", num_inference_steps=2, max_sequence_length=TEXT_LENGTH, output_type="latent")
    plain = base(generator=torch.Generator().manual_seed(0), **common).frames
    again = pipe(generator=torch.Generator().manual_seed(0), **common).frames
    assert torch.equal(plain, again)

