"""`cli edit --context-parallel N` under `torchrun`: the edit spread over N real processes (gloo, CPU) equals the
single-process run, process 0 alone writes, and a degree the checkpoint or the launch cannot run is refused before
any weights load."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from cogvideox_ddim_inversion import CogVideoXDDIMInversionOutput
from cogvideox_ddim_inversion.cli import main
from cogvideox_ddim_inversion.testing.sample_clip import write_sample_clip
from cogvideox_ddim_inversion.video_io import read_video


TOLERANCE = 1e-5
OUTPUTS = ("mask", "edit-1", "edit-2", "reconstruction", "side_by_side", "inversion", "run")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(processes: int, *args, timeout: int = 600) -> subprocess.CompletedProcess:
    """The console command's module under `torchrun --nproc_per_node processes` (1: a plain process), one thread per
    process: CPU kernels sum in another order with another thread count, which the lossy MP4s can show."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for attempt in range(2):  # the free port may be taken before torchrun binds it (other sessions' launches)
        launcher = [str(Path(sys.executable).with_name("torchrun")), "--nproc_per_node", str(processes),
                    "--master_port", str(free_port())]
        command = [*(launcher if processes > 1 else [sys.executable]), "-m", "cogvideox_ddim_inversion.cli",
                   *map(str, args)]
        run = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
        if "address already in use" not in run.stderr.lower():
            break
    return run


def relative_error(got, expected) -> float:
    got, expected = torch.as_tensor(np.asarray(got)).double(), torch.as_tensor(np.asarray(expected)).double()
    return ((got - expected).abs().max() / expected.abs().max()).item()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_sample_clip(tmp_path_factory.mktemp("cp-clip") / "clip.mp4", num_frames=13)


EDITS = {
    # CogVideoX-5B: shared reference row, two prompts in one batch, a mask from --mask-words, a reconstruction
    "cogvideox-5b": ["--mask-words", "circle", "--reconstruction", "--steps", "2"],
    # CogVideoX1.5-5B-I2V: image rows, 1.5's frame padding, paired rows, strength and fixed-point inversion
    "cogvideox1.5-5b-i2v": ["--reference-mode", "paired", "--strength", "0.5", "--fixed-point-iterations", "1",
                            "--mask-words", "circle", "--reconstruction", "--steps", "4"],
}


def edit_on_one_and_two_processes(edit, tmp_path):
    """Run `edit` on one process and on two with `--context-parallel 2`, each saving its inversion; both must succeed.
    Returns the two output folders and the two-process run."""
    one, two = tmp_path / "one", tmp_path / "two"
    run = torchrun(1, *edit, "--output-dir", one, "--save-inversion", one / "inv.safetensors")
    assert run.returncode == 0, run.stderr[-6000:]
    run = torchrun(2, *edit, "--output-dir", two, "--save-inversion", two / "inv.safetensors",
                   "--context-parallel", 2)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    return one, two, run


@pytest.mark.parametrize("variant", sorted(EDITS))
@pytest.mark.slow
def test_edit_on_two_processes_equals_one_process_and_only_process_0_writes(tiny_checkpoint, clip, tmp_path,
                                                                             variant):
    edit = ["edit", clip, "--prompt", "a blue circle", "--prompt", "a green circle", "--source-prompt",
            "a red circle", "--model", tiny_checkpoint(variant), "--device", "cpu", "--seed", "5", *EDITS[variant]]
    one, two, run = edit_on_one_and_two_processes(edit, tmp_path)

    # Process 0 alone reports (and writes): each output is printed once, and progress is logged once.
    for name in OUTPUTS:
        assert run.stdout.count(f"{name}: ") == 1, (name, run.stdout)
    assert run.stderr.count("Inverting 9 frames") == 1
    assert sorted(os.listdir(two)) == sorted(os.listdir(one))
    record = json.loads((two / "run.json").read_text())
    assert record["load"]["context_parallel"] == 2 and json.loads((one / "run.json").read_text())["load"][
        "context_parallel"] == 1

    expected, got = load_file(one / "inv.safetensors"), load_file(two / "inv.safetensors")
    assert expected.keys() == got.keys() and {"trajectory", "latents", "attention_map", "mask"} <= set(got)
    for name in expected:
        assert relative_error(got[name], expected[name]) <= TOLERANCE, name
    for name in ("mask", "edit-1", "edit-2", "reconstruction", "side_by_side"):
        frames_one, frames_two = (np.stack(list(map(np.asarray, read_video(folder / f"{name}.mp4")[0])))
                                  for folder in (one, two))
        assert relative_error(frames_two, frames_one) <= TOLERANCE, name


@pytest.mark.slow
def test_invert_on_two_processes_saves_the_same_inversion_once(tiny_checkpoint, clip, tmp_path):
    invert = ["invert", clip, "--source-prompt", "a red circle", "--model", tiny_checkpoint("cogvideox-2b"),
              "--device", "cpu", "--steps", "2"]
    assert torchrun(1, *invert, "--output", tmp_path / "one.safetensors").returncode == 0
    run = torchrun(2, *invert, "--output", tmp_path / "two.safetensors", "--context-parallel", 2)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-6000:]
    assert run.stdout.count("inversion: ") == 1
    expected, got = load_file(tmp_path / "one.safetensors"), load_file(tmp_path / "two.safetensors")
    assert relative_error(got["trajectory"], expected["trajectory"]) <= TOLERANCE


def test_a_process_that_does_not_write_writes_nothing(tiny_checkpoint, clip, tmp_path):
    from cogvideox_ddim_inversion.workflow.loading import load_pipeline
    from cogvideox_ddim_inversion.workflow.run import edit_video
    from cogvideox_ddim_inversion.workflow.settings import EditSettings, ModelSettings

    pipe, info = load_pipeline(ModelSettings(model=tiny_checkpoint("cogvideox-5b"), device="cpu"))
    out = tmp_path / "out"
    settings = EditSettings(video=clip, prompts=["a blue circle"], source_prompt="a red circle", steps=2,
                            mask_words=["circle"], reconstruction=True, save_inversion=str(out / "inv.safetensors"))
    record = edit_video(pipe, settings, str(out), info, write_outputs=False)
    assert not out.exists() and record["outputs"] == {}
    assert record["timings_s"]["edit_s"] > 0  # it did compute the edit
    record = edit_video(pipe, settings, str(out), info)
    assert set(record["outputs"]) == {"mask", "edit-1", "reconstruction", "side_by_side", "inversion", "run"}


@pytest.mark.parametrize(
    "flags, world_size, expected",
    [
        (["--context-parallel", "3"], None, "--context-parallel 3 does not divide this checkpoint's 2 attention heads"
                                            ", which the processes share evenly: pass one of [1, 2]."),
        (["--context-parallel", "2"], None, "--context-parallel 2 but 1 process(es) were launched: launch with "
                                            "`torchrun --nproc_per_node 2 -m cogvideox_ddim_inversion.cli ...`"),
        (["--context-parallel", "2"], "4", "--context-parallel 2 but 4 process(es) were launched"),
        (["--context-parallel", "0"], None, "--context-parallel must be at least 1, got 0."),
        ([], "2", "2 processes were launched, each of which would run the whole edit: pass --context-parallel 2"),
        (["--context-parallel", "2", "--device", "cuda:1"], "2", "--device cuda:1 would put every process on one "
                                                                 "device"),
    ],
)
def test_degrees_the_checkpoint_or_launch_cannot_run_are_refused_before_loading(
        tiny_checkpoint, clip, tmp_path, no_weights, monkeypatch, capsys, flags, world_size, expected):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    if world_size is not None:
        monkeypatch.setenv("WORLD_SIZE", world_size)
    if "cuda:1" in flags:  # a machine with two GPUs, where the device exists and only the launch is wrong
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    out = tmp_path / "out"
    code = main(["edit", str(clip), "--prompt", "x", "--model", tiny_checkpoint("cogvideox-5b"), "--output-dir",
                 str(out), *flags])
    assert code == 2
    assert expected in capsys.readouterr().err
    assert no_weights == [] and not out.exists()
    assert not torch.distributed.is_initialized()


@pytest.mark.slow
def test_a_launch_of_another_size_is_refused_once_before_loading(tiny_checkpoint, clip, tmp_path):
    out = tmp_path / "out"
    run = torchrun(2, "edit", clip, "--prompt", "x", "--model", tiny_checkpoint("cogvideox-5b"), "--device", "cpu",
                   "--output-dir", out, "--context-parallel", 1, timeout=120)
    assert run.returncode != 0
    message = "error: --context-parallel 1 but 2 process(es) were launched"
    assert (run.stdout + run.stderr).count(message) == 1, run.stderr[-3000:]
    assert "Loading" not in run.stderr and not out.exists()


@pytest.mark.slow
def test_speed_benchmark_measures_on_n_processes(tmp_path):
    """benchmarks/speed.py --context-parallel 2: each configuration runs under torchrun, process 0 reports."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py"
    out = tmp_path / "speed.json"
    run = subprocess.run(
        [sys.executable, str(script), "--sizes", "tiny", "--configs", "shared", "--steps", "2", "--repeats", "1",
         "--e2e", "none", "--count-sizes", "--context-parallel", "2", "--json", str(out)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "BENCH_THREADS": "2"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    (measured,) = json.loads(out.read_text())["measured"]
    assert measured["context_parallel"] == 2 and measured["rows_per_step"] == 3 and measured["seconds_per_step"] > 0
    assert "the transformer on 2 processes (context parallelism)" in run.stdout


@pytest.mark.slow
def test_a_long_clip_in_windows_on_two_processes_equals_one_process(tiny_checkpoint, tmp_path):
    """Long clips (temporal windows, issue 26) under context parallelism: every window's transformer call is sharded,
    and the windowed inversion and edit equal one process's."""
    long_clip = write_sample_clip(tmp_path / "long.mp4", num_frames=21)  # 17 frames: windows of the tiny model's 9
    edit = ["edit", long_clip, "--prompt", "a blue circle", "--source-prompt", "a red circle", "--num-frames", "all",
            "--model", tiny_checkpoint("cogvideox-5b"), "--device", "cpu", "--seed", "5", "--steps", "2"]
    one, two, run = edit_on_one_and_two_processes(edit, tmp_path)
    expected, got = load_file(one / "inv.safetensors"), load_file(two / "inv.safetensors")
    assert expected["trajectory"].shape[2] == 5  # 17 frames: 5 latent frames, more than the tiny model's 3
    windows = CogVideoXDDIMInversionOutput.read_settings(two / "inv.safetensors")["windows"]
    assert windows["starts"] == [0, 2] and windows["window"] == 3  # two overlapping windows
    for name in expected:
        assert relative_error(got[name], expected[name]) <= TOLERANCE, name
    frames_one, frames_two = (np.stack(list(map(np.asarray, read_video(folder / "edit-1.mp4")[0])))
                              for folder in (one, two))
    assert len(frames_one) == 17 and relative_error(frames_two, frames_one) <= TOLERANCE
