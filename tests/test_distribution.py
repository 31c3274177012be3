"""Packaging: the sdist and the wheel build offline, ship the processors subpackage and no tests, and the wheel
installs into a fresh virtual environment where the console script and the public names work without the repository.
"""

import json
import os
import re
import shutil
import site
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import PIPELINE_FILE, REPO_ROOT


pytestmark = pytest.mark.slow

PACKAGE = "cogvideox_ddim_inversion"
PUBLIC_NAMES = (
    "CogVideoXDDIMInversionPipeline", "CogVideoXDDIMInversionOutput", "CogVideoXRefAttnProcessor", "read_video",
    "write_video",
)
TIMEOUT_S = 300

# Builds with the PEP 517 hooks of the setuptools already installed: no build isolation, so nothing is downloaded.
BUILD = """
import json, sys
from pathlib import Path
from setuptools import build_meta

out = Path(sys.argv[1])
(out / "sdist").mkdir(parents=True)
(out / "wheel").mkdir(parents=True)
sdist = out / "sdist" / build_meta.build_sdist(str(out / "sdist"))
wheel = out / "wheel" / build_meta.build_wheel(str(out / "wheel"))
print("RESULT " + json.dumps({"sdist": str(sdist), "wheel": str(wheel)}))
"""

# Run by the virtual environment's python, from a folder outside the repository.
CHECK = """
import importlib.metadata, json, sys
import cogvideox_ddim_inversion as package
from cogvideox_ddim_inversion import {names}
from cogvideox_ddim_inversion import cli

objects = [{names}]
code = cli.main(["publish", "tester/from-the-wheel", "--dry-run", "--folder", sys.argv[1]])
print("RESULT " + json.dumps({{
    "file": package.__file__,
    "modules": {{obj.__name__: obj.__module__ for obj in objects}},
    "version": importlib.metadata.version("cogvideox-ddim-inversion"),
    "sys_path": sys.path,
    "publish": code,
}}))
""".format(names=", ".join(PUBLIC_NAMES))


def run(command, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, **kwargs)
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done


def result_of(done: subprocess.CompletedProcess) -> dict:
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def source_files() -> list[str]:
    """The files a checkout has: tracked and untracked-but-not-ignored (so no caches, venvs or build outputs)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO_ROOT,
            capture_output=True, check=True, timeout=60,
        ).stdout.decode().split("\0")
        return [path for path in listed if path and (REPO_ROOT / path).is_file()]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: skip the usual outputs by name
        skip = {".git", ".venv", "venv", "build", "dist", "__pycache__", ".pytest_cache"}
        return [
            p.relative_to(REPO_ROOT).as_posix() for p in REPO_ROOT.rglob("*")
            if p.is_file() and not skip & set(p.relative_to(REPO_ROOT).parts) and ".egg-info" not in str(p)
        ]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A copy of the checkout, so building leaves no build/ or egg-info in the working tree."""
    root = tmp_path_factory.mktemp("source") / "cogvideox-ddim-inversion"
    for path in source_files():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / path, root / path)
    return root


@pytest.fixture(scope="module")
def dists(source, tmp_path_factory) -> dict:
    """sdist and wheel built from the source copy, and a second wheel built from the unpacked sdist."""
    out = tmp_path_factory.mktemp("dist")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    built = result_of(run([sys.executable, "-c", BUILD, str(out)], cwd=source, env=env))

    unpacked = tmp_path_factory.mktemp("unpacked-sdist")
    with tarfile.open(built["sdist"]) as archive:
        archive.extractall(unpacked, filter="data")
    (sdist_root,) = unpacked.iterdir()
    from_sdist = result_of(run([sys.executable, "-c", BUILD, str(out / "from-sdist")], cwd=sdist_root, env=env))
    return {"sdist": Path(built["sdist"]), "wheel": Path(built["wheel"]), "wheel_from_sdist": Path(from_sdist["wheel"])}


def wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_wheel_and_sdist_contents(source, dists):
    names = wheel_names(dists["wheel"])
    # The layout: the product at the root, the toy world and the test doubles in their own subpackages.
    for module in ("__init__.py", "pipeline_cogvideox_ddim_inversion.py", "video_io.py", "cli.py", "publish.py",
                   "callbacks.py", "processors/__init__.py", "processors/reference_attention.py",
                   "toy/__init__.py", "toy/world.py", "toy/train.py", "toy/demo.py",
                   "toy/checkpoint/model_index.json", "toy/checkpoint/transformer/diffusion_pytorch_model.safetensors",
                   "testing/__init__.py", "testing/tiny_checkpoint.py", "testing/analytic_denoiser.py",
                   "testing/sample_clip.py"):
        assert f"{PACKAGE}/{module}" in names, module
    # Every module of the source and its subpackages is shipped (a new subpackage must be declared in
    # pyproject.toml) ...
    packages = [source] + [init.parent for init in source.glob("*/__init__.py") if init.parent.name != "tests"]
    for package in packages:
        for path in package.glob("*.py"):
            assert f"{PACKAGE}/{path.relative_to(source).as_posix()}" in names, path
    # ... and nothing of the tests or benchmarks.
    assert not [name for name in names if name.startswith(("tests/", "benchmarks/")) or "/tests/" in name
                or "/benchmarks/" in name or "conftest" in name]
    entry_points = next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(dists["wheel"]) as archive:
        assert f"cogvideox-ddim-inversion = {PACKAGE}.cli:main" in archive.read(entry_points).decode()

    # The sdist carries the sources, and builds the same wheel.
    with tarfile.open(dists["sdist"]) as archive:
        members = {Path(name).relative_to(Path(name).parts[0]).as_posix() for name in archive.getnames() if "/" in name}
    assert {"pyproject.toml", "PKG-INFO", "pipeline_cogvideox_ddim_inversion.py", "processors/reference_attention.py",
            "video_io.py", "publish.py"} <= members
    assert wheel_names(dists["wheel_from_sdist"]) == names


def test_wheel_installs_and_runs_outside_the_repository(dists, tmp_path):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    purelib = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    if sys.prefix != sys.base_prefix:
        # The tests run in a virtual environment: --system-site-packages reaches the base interpreter's packages,
        # not this environment's, so point the new one at ours too (torch, diffusers, ... without downloading).
        ours = [p for p in site.getsitepackages() if Path(p).is_relative_to(sys.prefix)]
        (purelib / "_parent_environment.pth").write_text("".join(f"{p}\n" for p in ours))

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(HF_HOME=str(tmp_path / "hf-home"), PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    # This pip, run for the new interpreter: the venv needs no pip of its own.
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
         "--force-reinstall", str(dists["wheel"])], env=env)

    outside = tmp_path / "outside"
    outside.mkdir()
    script = venv / "bin" / "cogvideox-ddim-inversion"
    assert script.read_text().splitlines()[0] == f"#!{python}"
    helped = run([str(script), "--help"], cwd=outside, env=env)
    for command in ("edit", "demo", "tiny-checkpoint", "publish"):
        assert command in helped.stdout

    hub_folder = tmp_path / "hub-folder"
    checked = result_of(run([str(python), "-c", CHECK, str(hub_folder)], cwd=outside, env=env))
    assert Path(checked["file"]).is_relative_to(purelib)  # the installed wheel, not the repository
    assert str(REPO_ROOT) not in checked["sys_path"] and str(REPO_ROOT.parent) not in checked["sys_path"]
    assert set(checked["modules"]) == set(PUBLIC_NAMES)
    assert all(module.startswith(f"{PACKAGE}.") for module in checked["modules"].values())
    declared = re.search(r'^version = "([^"]+)"', (REPO_ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    assert checked["version"] == declared.group(1)
    # publish finds the pipeline files inside the installed package.
    assert checked["publish"] == 0
    assert (hub_folder / "pipeline.py").read_bytes() == PIPELINE_FILE.read_bytes()
    assert (hub_folder / "processors" / "reference_attention.py").is_file()
