"""The edit workflow every entry point shares (`workflow`): defaults, loading choices, the edited first frame."""

import dataclasses
import inspect

import pytest
import torch

from cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline
from cogvideox_ddim_inversion.cogvideox_ddim_memory import MemoryOptions
from cogvideox_ddim_inversion.workflow.loading import load_pipeline
from cogvideox_ddim_inversion.workflow.settings import EDIT_OPTIONS, EditSettings, ModelSettings


def test_edit_defaults_are_the_pipelines():
    """Every entry point takes its defaults from EditSettings; they must be those of invert() and __call__."""
    invert = inspect.signature(CogVideoXDDIMInversionPipeline.invert).parameters
    call = inspect.signature(CogVideoXDDIMInversionPipeline.__call__).parameters
    defaults = {f.name: f.default for f in dataclasses.fields(EditSettings)}
    assert defaults["steps"] == invert["num_inference_steps"].default == call["num_inference_steps"].default
    assert defaults["guidance"] == call["guidance_scale"].default
    assert defaults["strength"] == invert["strength"].default == call["strength"].default
    assert defaults["fixed_point_iterations"] == invert["fixed_point_iterations"].default
    for name in ("reference_mode", "reference_steps", "reference_blocks", "reference_weight"):
        assert defaults[name] == call[name].default, name
    assert defaults["source_prompt"] == invert["prompt"].default == call["reference_prompt"].default


def test_load_pipeline_applies_the_memory_settings(tiny_checkpoint):
    pipe, info = load_pipeline(ModelSettings(model=tiny_checkpoint("cogvideox-5b"), device="cpu", vae_tiling="on"))
    assert pipe.vae.use_tiling and pipe.vae.use_slicing
    # `--offload auto` (now cogvideox_ddim_memory.choose_offload, tested in tests/test_memory.py) is none on the CPU
    assert info == {"device": "cpu", "dtype": "float32", **dataclasses.asdict(MemoryOptions()), "offload": "none",
                    "offload_streams": False, "vae_tiling": True, "compile": False, "free_gpu_memory_gib": None}
    pipe, info = load_pipeline(ModelSettings(model=tiny_checkpoint("cogvideox-5b"), device="cpu", dtype="bf16"))
    assert not pipe.vae.use_tiling and pipe.transformer.dtype == torch.bfloat16 and info["vae_tiling"] is False
    with pytest.raises(ValueError, match="model moves weights to a GPU"):
        load_pipeline(ModelSettings(model=tiny_checkpoint("cogvideox-5b"), device="cpu", offload="model"))


@pytest.mark.parametrize("mode", ["crop", "pad", "stretch"])
def test_an_edited_first_frame_is_resized_as_the_source_was(tiny_checkpoint, tmp_path, mode):
    """--image (image-to-video) goes through --resize-mode like the source frames, so an edited first frame of the
    source's aspect ratio lines up with the cropped (or padded) video. A 3:1 image, red thirds either side of a green
    one, for a 96x64 (3:2) video."""
    import types

    import numpy as np
    import PIL.Image

    from cogvideox_ddim_inversion.workflow.run import _image_latents

    pipe = CogVideoXDDIMInversionPipeline.from_pretrained(tiny_checkpoint("cogvideox1.5-5b-i2v"))
    image = np.zeros((32, 96, 3), np.uint8)
    image[:, :32] = image[:, 64:] = (255, 0, 0)
    image[:, 32:64] = (0, 255, 0)
    path = tmp_path / "first_frame.png"
    PIL.Image.fromarray(image).save(path)
    seen = []
    pipe.prepare_image_latents = lambda frame, *args: seen.append(frame)
    inv = types.SimpleNamespace(latents=torch.zeros(1, 3, 16, 8, 12))  # 64x96 pixels
    _image_latents(pipe, EditSettings(video=None, prompts=["x"], image=str(path), resize_mode=mode), inv)
    frame = (seen[0][0] + 1) / 2  # [3, 64, 96] in [0, 1]
    red, green = frame[0], frame[1]
    assert frame.shape == (3, 64, 96)
    if mode == "crop":  # scaled to 192x64, the middle 96 columns: red 16 columns each side, green between
        assert red[:, :12].min() > 0.9 and green[:, 20:76].min() > 0.9 and red[:, 84:].min() > 0.9
    elif mode == "pad":  # scaled to 96x32 and centred on black
        assert frame[:, :14].max() < 0.05 and frame[:, 50:].max() < 0.05
        assert red[18:46, :28].min() > 0.9 and green[18:46, 36:60].min() > 0.9
    else:  # each axis scaled: the thirds stay thirds, over the whole height
        assert red[:, :28].min() > 0.9 and green[:, 36:60].min() > 0.9 and red[:, 68:].min() > 0.9


def test_every_setting_is_a_flag_with_the_same_default():
    """The command line, batch (whose jobs are read by these flags) and the app (whose fields are EditSettings') offer
    the same options: each EditSettings field is a flag of `edit` with the field's default."""
    from cogvideox_ddim_inversion.cli import build_parser

    edit = build_parser()._subparsers._group_actions[0].choices["edit"]
    flags = {action.dest: action.default for action in edit._actions}
    for f in dataclasses.fields(EditSettings):
        if f.name in ("extra", "prompts", "video"):  # the positional video, repeated --prompt, run.json's extras
            continue
        assert f.name in flags, f"no flag for EditSettings.{f.name}"
        assert flags[f.name] == f.default, f.name


def test_new_pipeline_options_keep_the_pipelines_defaults_and_what_an_inversion_depends_on():
    settings_fields = EDIT_OPTIONS.names
    invert = inspect.signature(CogVideoXDDIMInversionPipeline.invert).parameters
    call = inspect.signature(CogVideoXDDIMInversionPipeline.__call__).parameters
    defaults = {f.name: f.default for f in dataclasses.fields(EditSettings)}
    for name in ("mask_blocks", "mask_steps", "mask_refine", "trajectory_device", "mask_threshold"):
        assert defaults[name] == invert[name].default, name
    assert defaults["mask_steps"] == call["mask_steps"].default
    for name in ("window_overlap", "window_batch_size", "window_weighting"):  # long clips (issue 26)
        assert defaults[name] == invert[name].default == call[name].default, name
    assert set(settings_fields(inversion="always")) == {"source_prompt", "steps", "strength", "fixed_point_iterations",
                                                        "window_overlap", "window_weighting"}
    assert set(settings_fields(inversion="source")) == {"num_frames", "skip_frames_start", "skip_frames_end",
                                                        "frame_stride", "sampling", "height", "width", "resize_mode"}
    assert set(settings_fields(inversion="mask")) == {"mask_words", "mask_threshold", "mask_blocks", "mask_steps",
                                                      "mask_refine"}
    assert set(settings_fields(memory_only=True)) == {"prompt_batch_size", "trajectory_device", "window_batch_size"}
