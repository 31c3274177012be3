"""Hostile and mistaken input refused before any weights load, with a message naming the fix (issue 33): devices this
machine does not have, a mistyped local checkpoint path, a frame count of 0, a demo option that does nothing."""

import pytest
import torch

from cogvideox_ddim_inversion.cli import main


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from cogvideox_ddim_inversion.testing.sample_clip import write_sample_clip

    return str(write_sample_clip(tmp_path_factory.mktemp("clips") / "clip.mp4"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without CUDA")
@pytest.mark.parametrize("flags, expected", [
    (["--device", "cuda"], "--device cuda asks for a GPU, but this machine has none"),
    (["--trajectory-device", "cuda:7"], "--trajectory-device cuda:7 asks for a GPU, but this machine has none"),
    (["--device", "bogus"], "--device 'bogus' is not a device: pass cpu, cuda or cuda:N."),
])
def test_devices_the_machine_lacks_are_refused_before_loading(tiny_checkpoint, clip, tmp_path, capsys, no_weights,
                                                              flags, expected):
    for command in (["edit", clip, "--prompt", "x", "--output-dir", str(tmp_path / "out")],
                    ["invert", clip, "--output", str(tmp_path / "inv.safetensors")]):
        assert main([*command, "--model", tiny_checkpoint(), *flags]) == 2
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err
    assert no_weights == [] and not (tmp_path / "out").exists()


@pytest.mark.parametrize("model, what", [("/abs/path/cogvideox-5", "does not exist"),
                                         ("./ckpt/cogvideox-5b", "does not exist")])
def test_a_mistyped_local_checkpoint_is_not_looked_up_on_the_hub(clip, tmp_path, capsys, no_weights, model, what):
    assert main(["edit", clip, "--prompt", "x", "--model", model, "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"--model {model!r} {what}: a local checkpoint is a folder" in err and "Hub (" not in err


def test_a_file_given_as_the_checkpoint_is_called_a_file(clip, tmp_path, capsys, no_weights):
    assert main(["edit", clip, "--prompt", "x", "--model", clip, "--output-dir", str(tmp_path / "out")]) == 2
    assert f"--model {clip!r} is a file" in capsys.readouterr().err


def test_zero_frames_is_refused_not_taken_as_the_default(tiny_checkpoint, clip, tmp_path, capsys, no_weights):
    assert main(["edit", clip, "--prompt", "x", "--model", tiny_checkpoint(), "--num-frames", "0",
                 "--output-dir", str(tmp_path / "out")]) == 2
    assert "--num-frames must be a frame count (at least 1) or 'all', got 0" in capsys.readouterr().err


def test_the_toy_demo_refuses_a_variant_it_would_ignore(tmp_path, capsys):
    assert main(["demo", "--variant", "cogvideox-2b", "--output-dir", str(tmp_path / "demo")]) == 2
    assert "--variant picks the tiny random checkpoint of --random-tiny" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


def test_ctrl_c_is_reported_without_a_traceback(monkeypatch, capsys):
    from cogvideox_ddim_inversion import cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_tiny_checkpoint", interrupted)
    assert main(["tiny-checkpoint", "somewhere"]) == 130
    assert capsys.readouterr().err == "Interrupted.\n"
