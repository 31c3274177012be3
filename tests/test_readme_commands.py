"""The README's commands work as typed: every `cogvideox-ddim-inversion` and `accelerate launch` line of its bash
blocks parses with the real parser, and the ones that edit run end to end in-process, the tiny checkpoint standing in
for the Hub id (no download here) and a generated clip for the user's video. The Python example runs the same way."""

import re
import shlex

import pytest

from conftest import README, REPO_ROOT  # noqa: F401  (README: the page under test)


BASH_BLOCK = re.compile(r"```bash\n(.*?)```", re.DOTALL)
HUB_IDS = re.compile(r"THUDM/CogVideoX[0-9.]*-[0-9a-zA-Z-]+")


def readme_commands() -> list[list[str]]:
    """Each command line of the README's bash blocks (continuations joined), split as a shell splits it."""
    commands = []
    for block in BASH_BLOCK.findall(README.read_text()):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part.strip())
                if words:
                    commands.append(words)
    return commands


def cli_arguments(words: list[str]) -> list[str] | None:
    """The arguments of our console command in a README line (`cogvideox-ddim-inversion ...` or
    `accelerate launch ... -m cogvideox_ddim_inversion.cli ...`); None for other commands (pip, pytest)."""
    if words[0] == "cogvideox-ddim-inversion":
        return words[1:]
    if words[:2] == ["accelerate", "launch"] and "cogvideox_ddim_inversion.cli" in words:
        return words[words.index("cogvideox_ddim_inversion.cli") + 1:]
    return None


def test_the_readme_shows_the_commands_it_documents():
    commands = [cli_arguments(words) for words in readme_commands()]
    names = {arguments[0] for arguments in commands if arguments}
    assert {"demo", "edit", "invert", "batch", "app"} <= names
    launches = [words for words in readme_commands() if words[:2] == ["accelerate", "launch"]]
    # without --multi_gpu, accelerate runs one process on a machine without GPUs, whatever --num_processes says
    assert launches and all("--multi_gpu" in words for words in launches)


def test_every_readme_command_parses_with_the_real_parser():
    from cogvideox_ddim_inversion.cli import build_parser

    parser = build_parser()
    for words in readme_commands():
        arguments = cli_arguments(words)
        if arguments is not None:
            parser.parse_args(arguments)  # exits (fails the test) on a flag the parser does not have


def substitute(arguments: list[str], checkpoint: str, clip: str, folder) -> list[str]:
    """A README command with the tiny checkpoint for a Hub id, the generated clip for horse.mp4 / clip.mp4, paths
    under `folder`, 2 steps and the CPU; `...` in a prompt is kept as typed."""
    replaced = []
    for word in arguments:
        word = HUB_IDS.sub(checkpoint, word)
        if word in ("horse.mp4", "clip.mp4"):
            word = clip
        elif word in ("out", "demo_output") or word.endswith(".safetensors"):
            word = str(folder / word)
        replaced.append(word)
    return [*replaced, "--steps", "2", "--device", "cpu"]


def test_the_readme_edit_and_invert_commands_run_as_typed(tiny_checkpoint, tmp_path, capsys):
    from cogvideox_ddim_inversion.cli import main
    from cogvideox_ddim_inversion.testing.sample_clip import write_sample_clip

    checkpoint = tiny_checkpoint("cogvideox-5b")
    clip = str(write_sample_clip(tmp_path / "clip.mp4"))
    ran = []
    for words in readme_commands():
        arguments = cli_arguments(words)
        if not arguments or arguments[0] not in ("edit", "invert") or words[0] != "cogvideox-ddim-inversion":
            continue
        if any(HUB_IDS.fullmatch(word) for word in arguments if "I2V" in word or "1.5" in word):
            continue  # the checkpoints table's other families: tests/test_families.py runs each
        if "--mask-words" in arguments:  # the README's horse prompt has its own words; give the clip's
            continue
        arguments = substitute(arguments, checkpoint, clip, tmp_path)
        if arguments[0] == "edit" and "--output-dir" not in arguments:
            arguments += ["--output-dir", str(tmp_path / f"run-{len(ran)}")]
        assert main(arguments) == 0, (arguments, capsys.readouterr().err[-2000:])
        ran.append(arguments[0])
    assert {"edit", "invert"} <= set(ran)


def test_the_readmes_python_example_runs(tiny_checkpoint, tmp_path, monkeypatch):
    """The README's Python block, with the tiny checkpoint for the Hub id, the CPU for cuda and 2 steps."""
    from cogvideox_ddim_inversion.testing.sample_clip import write_sample_clip

    block = re.search(r"```python\n(.*?)```", README.read_text(), re.DOTALL).group(1)
    assert "dtype=torch.bfloat16" in block and "torch_dtype" not in block  # diffusers 0.42 deprecates torch_dtype
    write_sample_clip(tmp_path / "horse.mp4")  # the example reads "horse.mp4" from the working folder
    code = (HUB_IDS.sub(tiny_checkpoint("cogvideox-5b"), block)
            .replace('.to("cuda")', "")
            .replace("torch.bfloat16", "torch.float32")
            .replace("num_inference_steps=50", "num_inference_steps=2")
            .replace('"pipeline_cogvideox_ddim_inversion.py"', repr(str(REPO_ROOT / "pipeline_cogvideox_ddim_inversion.py")))
            .replace('"edit.mp4"', repr(str(tmp_path / "edit.mp4"))))
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert (tmp_path / "edit.mp4").stat().st_size > 0
    assert len(namespace["video"]) == 9  # the tiny model's native frame count


@pytest.mark.slow
def test_the_readme_demo_runs_as_typed(tmp_path, capsys):
    from cogvideox_ddim_inversion.cli import main

    demo = next(cli_arguments(words) for words in readme_commands() if cli_arguments(words)
                and cli_arguments(words)[0] == "demo")
    arguments = [word if word != "demo_output" else str(tmp_path / "demo_output") for word in demo]
    assert main([*arguments, "--steps", "4"]) == 0
    assert (tmp_path / "demo_output" / "edit.mp4").is_file()
