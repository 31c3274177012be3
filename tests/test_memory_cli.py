"""The memory and cache options through every entry point (`cli.main` with tiny checkpoints on the CPU): each rung
and cache runs an edit end to end and is recorded in run.json; options that cannot work are refused before any
weights load; a saved inversion is refused by a pipeline whose weights are stored otherwise."""

import importlib.util
import json

import numpy as np
import pytest

from cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline
from cogvideox_ddim_inversion.cli import build_parser, main
from cogvideox_ddim_inversion.cogvideox_ddim_memory import MemoryOptions
from cogvideox_ddim_inversion.workflow.flags import model_and_edit_settings
from cogvideox_ddim_inversion.workflow.settings import ModelSettings
from cogvideox_ddim_inversion.testing.sample_clip import write_sample_clip
from cogvideox_ddim_inversion.video_io import read_video


HAS_TORCHAO = importlib.util.find_spec("torchao") is not None
needs_torchao = pytest.mark.skipif(not HAS_TORCHAO, reason='torchao is not installed: pip install '
                                   '"cogvideox-ddim-inversion[quantization]"')
STEPS = 4


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_sample_clip(tmp_path_factory.mktemp("memory_cli") / "clip.mp4", num_frames=9, fps=8)


def run_edit(clip, model, out_dir, *flags) -> int:
    return main(["edit", str(clip), "--prompt", "a blue circle", "--source-prompt", "a red circle", "--model", model,
                 "--output-dir", str(out_dir), "--steps", str(STEPS), "--device", "cpu", "--seed", "1",
                 *map(str, flags)])


def edit_frames(out_dir):
    return np.stack(read_video(out_dir / "edit-1.mp4")[0]).astype(int)


@pytest.fixture(scope="module")
def plain_run(tiny_checkpoint, clip, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("plain")
    assert run_edit(clip, tiny_checkpoint("cogvideox-5b"), out_dir) == 0
    return out_dir


@pytest.mark.parametrize("flags, recorded, storage, same_as_plain", [
    pytest.param(["--quantize", "int8"], {"quantize": "int8"}, {"transformer": "int8", "text_encoder": None}, False,
                 marks=needs_torchao),
    pytest.param(["--quantize", "int8", "--quantize-text-encoder"],
                 {"quantize": "int8", "quantize_text_encoder": True}, {"transformer": "int8", "text_encoder": "int8"},
                 False, marks=needs_torchao),
    (["--weights", "fp8"], {"weights": "fp8"}, {"transformer": "fp8-storage", "text_encoder": None}, False),
    (["--offload", "group"], {"offload": "group", "offload_streams": False}, None, True),
    (["--offload", "group-leaf"], {"offload": "group-leaf", "offload_streams": False}, None, True),
    (["--cache", "first-block", "--cache-threshold", "10"], {"cache": "first-block", "cache_threshold": 10.0}, None,
     False),
    (["--cache", "taylorseer", "--cache-interval", "2"], {"cache": "taylorseer", "cache_interval": 2}, None, False),
    (["--cache", "mag", "--mag-ratios", "1,1,1,1,1,1", "--cache-threshold", "10"],
     {"cache": "mag", "mag_ratios": [1.0] * 6}, None, False),
])
def test_each_rung_and_cache_edits_end_to_end_and_is_recorded(tiny_checkpoint, clip, plain_run, tmp_path, flags,
                                                              recorded, storage, same_as_plain):
    out_dir = tmp_path / "out"
    assert run_edit(clip, tiny_checkpoint("cogvideox-5b"), out_dir, *flags) == 0
    record = json.loads((out_dir / "run.json").read_text())
    assert {name: record["load"][name] for name in recorded} == recorded
    assert set(record["load"]) >= set(MemoryOptions().record())  # every option, chosen or default
    assert record["inversion"]["model"]["weights_storage"] == storage
    plain = edit_frames(plain_run)
    if same_as_plain:  # group offloading onto the CPU: the plain edit bit for bit
        assert np.array_equal(edit_frames(out_dir), plain)
    else:  # the option took effect: another edit, still close to the plain one (measured: 2.4 int8, 2.7 fp8
        # storage, 4.9 first-block, 6.2 taylorseer, 6.8 mag, in mean absolute 8-bit pixel values)
        difference = np.abs(edit_frames(out_dir) - plain).mean()
        assert 0 < difference < 15


def test_a_cache_never_reaches_the_inversion_from_the_command_line(tiny_checkpoint, clip, plain_run, tmp_path):
    """`--cache` leaves the inversion exact (the saved trajectory is the plain one); `--cache-inversion` lets it in."""
    from cogvideox_ddim_inversion.cogvideox_ddim_output import CogVideoXDDIMInversionOutput

    model = tiny_checkpoint("cogvideox-5b")
    trajectories = {}
    for name, flags in (("plain", []), ("cached", ["--cache", "first-block", "--cache-threshold", "10"]),
                        ("allowed", ["--cache", "first-block", "--cache-threshold", "10", "--cache-inversion"])):
        path = tmp_path / f"{name}.safetensors"
        assert run_edit(clip, model, tmp_path / name, "--fixed-point-iterations", 2, "--save-inversion", path,
                        *flags) == 0
        trajectories[name] = CogVideoXDDIMInversionOutput.load(str(path)).trajectory
    assert np.array_equal(trajectories["cached"].numpy(), trajectories["plain"].numpy())
    assert not np.array_equal(trajectories["allowed"].numpy(), trajectories["plain"].numpy())


@needs_torchao
def test_an_inversion_is_refused_by_weights_stored_otherwise(tiny_checkpoint, clip, tmp_path, capsys):
    """A quantized inversion is exact only when the same quantized model regenerates it: reusing it with bf16
    weights (or a bf16 inversion with int8 weights) is refused, naming the flags."""
    model = tiny_checkpoint("cogvideox-5b")
    saved = tmp_path / "int8.safetensors"
    assert main(["invert", str(clip), "--source-prompt", "a red circle", "--model", model, "--steps", str(STEPS),
                 "--device", "cpu", "--quantize", "int8", "--output", str(saved)]) == 0
    capsys.readouterr()
    reuse = ["--inversion", saved]
    assert run_edit(clip, model, tmp_path / "bf16", *reuse) == 2
    assert ("This inversion was made with transformer int8 (--quantize int8); this pipeline has weights in the "
            "load dtype") in capsys.readouterr().err
    assert run_edit(clip, model, tmp_path / "fp8", *reuse, "--weights", "fp8") == 2
    assert "this pipeline has transformer fp8-storage (--weights fp8)" in capsys.readouterr().err
    assert not (tmp_path / "bf16").exists() and not (tmp_path / "fp8").exists()  # refused before loading
    assert run_edit(clip, model, tmp_path / "int8", *reuse, "--quantize", "int8") == 0

    # The pipeline refuses it too, from Python: the loaded weights are what count.
    from cogvideox_ddim_inversion.cogvideox_ddim_output import CogVideoXDDIMInversionOutput

    pipe = CogVideoXDDIMInversionPipeline.from_pretrained(model)
    with pytest.raises(ValueError, match=r"made with transformer int8 \(`quantize` int8\)"):  # Python's names
        CogVideoXDDIMInversionOutput.load(str(saved), pipeline=pipe)


REFUSALS = [
    (["--offload", "group", "--offload-streams"], "CUDA streams prefetch offloaded weights onto a GPU"),
    (["--quantize", "fp8"], "--quantize fp8 computes in fp8 on a GPU; on cpu use --quantize int8"),
    (["--offload", "model"], "--offload model moves weights to a GPU; on cpu use --offload none"),
    (["--offload", "sequential"], "--offload sequential moves weights to a GPU"),
    (["--weights", "fp8", "--quantize", "int8"], "--weights fp8 and --quantize int8 both change"),
    (["--cache", "mag"], "--cache mag needs magnitude ratios calibrated for this checkpoint"),
    (["--cache", "taylorseer", "--cache-threshold", "0.1"], "--cache taylorseer has no threshold"),
    (["--cache-inversion"], "Caching during inversion was asked for without a cache: add --cache"),
]


@pytest.mark.parametrize("flags, message", REFUSALS)
@pytest.mark.parametrize("command", ["edit", "invert", "batch", "app"])
def test_impossible_options_are_refused_before_any_weights_load(tiny_checkpoint, clip, tmp_path, capsys, no_weights,
                                                                command, flags, message):
    out_dir = tmp_path / "out"
    arguments = {
        "edit": ["edit", str(clip), "--prompt", "a blue circle", "--output-dir", str(out_dir)],
        "invert": ["invert", str(clip), "--output", str(out_dir / "inversion.safetensors")],
        "batch": ["batch", str(tmp_path / "jobs.jsonl"), "--output-dir", str(out_dir)],
        "app": ["app", "--temp-dir", str(out_dir)],
    }[command]
    (tmp_path / "jobs.jsonl").write_text(json.dumps({"video": str(clip), "prompts": ["a blue circle"]}) + "\n")
    code = main([*arguments, "--model", tiny_checkpoint("cogvideox-5b"), "--device", "cpu", *flags])
    assert code == 2
    assert message in capsys.readouterr().err
    assert no_weights == [] and not out_dir.exists()  # refused before loading or writing anything


def test_quantize_fp8_is_refused_on_a_gpu_without_fp8(monkeypatch):
    """fp8 compute needs compute capability 8.9: an A100 (8.0) is refused as the settings are made."""
    import torch

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(ValueError, match=r"compute capability 8.9 or more.*this one has 8.0"):
        ModelSettings(device="cuda", quantize="fp8")


def test_the_flags_are_the_model_settings_of_every_entry_point(tmp_path):
    """edit, invert, batch and the app share `add_model_arguments`: every memory option is a flag there, read back
    into `ModelSettings` (the app builds its settings from the same names)."""
    ratios = tmp_path / "ratios.json"
    ratios.write_text(json.dumps([1.0, 0.98, 0.95]))
    flags = ["--weights", "fp8", "--quantize-text-encoder", "--offload", "group", "--no-offload-streams", "--cache",
             "mag", "--cache-threshold", "0.1", "--mag-ratios", str(ratios), "--cache-inversion", "--device", "cpu"]
    parser = build_parser()
    expected = MemoryOptions(weights="fp8", quantize_text_encoder=True, offload="group", offload_streams=False,
                             cache="mag", cache_threshold=0.1, cache_inversion=True, mag_ratios=(1.0, 0.98, 0.95))
    for command in (["edit", "clip.mp4", "--prompt", "x"], ["invert", "clip.mp4", "--output", "x.safetensors"],
                    ["batch", "jobs.jsonl", "--output-dir", "out"]):
        model, _ = model_and_edit_settings(parser.parse_args([*command, *flags]))
        assert model.memory_options() == expected
    app_args = parser.parse_args(["app", *flags])
    import dataclasses

    app_model = ModelSettings(**{f.name: getattr(app_args, f.name) for f in dataclasses.fields(ModelSettings)})
    assert app_model.memory_options() == expected
    assert parser.parse_args(["edit", "--mag-ratios", "1,0.5"]).mag_ratios == (1.0, 0.5)


def test_batch_redoes_finished_jobs_when_the_weights_or_cache_change(tiny_checkpoint, clip, tmp_path):
    """Offloading changes no output: a finished job is skipped. 8-bit weights or a cache change the edit: redone. Each
    job's job.json records the run's memory options."""
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"id": "one", "video": str(clip), "prompts": ["a blue circle"]}) + "\n")
    out_dir = tmp_path / "out"

    def status(*flags):
        assert main(["batch", str(jobs), "--output-dir", str(out_dir), "--model", tiny_checkpoint("cogvideox-5b"),
                     "--device", "cpu", "--steps", "2", *flags]) == 0
        return json.loads((out_dir / "manifest.jsonl").read_text().splitlines()[0])["status"]

    assert status() == "done"
    assert status("--offload", "group") == "skipped"
    assert status("--cache", "first-block", "--offload", "group") == "done"  # for the cache
    record = json.loads((out_dir / "one" / "job.json").read_text())
    assert record["load"]["cache"] == "first-block" and record["load"]["offload"] == "group"
    assert record["settings"]["model"]["cache"] == "first-block"
    assert status("--cache", "first-block", "--cache-interval", "3") == "skipped"  # taylorseer's setting only
    assert status("--weights", "fp8") == "done"
    assert ModelSettings(device="cpu", offload="group", cache_threshold=0.1).output_options() == {}
