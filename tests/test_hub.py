"""Publishing to, and loading from, a Hub: against a Hub-compatible server on 127.0.0.1 (tests/hub_server.py).

The real `cogvideox-ddim-inversion publish` command uploads the code repo; a child process then loads it with
`custom_pipeline="<namespace>/<name>"`, loads a model repo that bundles the pipeline with the weights, and runs a short
inversion + edit. Both run with `HF_ENDPOINT` pointing at the server and their own `HF_HOME`: huggingface_hub reads
those when it is imported, so they are set for fresh processes rather than patched into this one.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import PIPELINE_FILE, REPO_ROOT
from hub_server import HubServer

import cogvideox_ddim_inversion
from cogvideox_ddim_inversion import cli
from cogvideox_ddim_inversion.publish import HUB_PIPELINE_FILE, PIPELINE_MODULES, copy_pipeline_files, publish


TOKEN = "hf_test_token"
CODE_REPO = "tester/cogvideox-ddim-inversion"
PRIVATE_REPO = "tester/private-pipeline"
MODEL_REPO = "tester/tiny-cogvideox-with-pipeline"
BUNDLED_PIPELINE = "pipeline_cogvideox_ddim_inversion"
BRANCH = "v0.1"
CHILD_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def hub():
    with HubServer(tokens=(TOKEN,), lifetime_s=900) as server:
        yield server
    assert not server.running


def package_path() -> str:
    """The folder the tested `cogvideox_ddim_inversion` was imported from when it is not the installed one (a checkout
    put on PYTHONPATH as `<folder>/cogvideox_ddim_inversion`); empty for the installed package."""
    package = Path(os.path.abspath(cogvideox_ddim_inversion.__file__)).parent  # not resolved: a symlinked checkout
    return str(package.parent) if package.name == "cogvideox_ddim_inversion" else ""


@pytest.fixture(scope="module")
def hub_env(hub, tmp_path_factory):
    """Environment of the child processes: the test Hub, a fresh cache, no proxy, no stray Hugging Face settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "DIFFUSERS_"))}
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env.pop(proxy, None)
    env.update(
        HF_ENDPOINT=hub.url,
        HF_HOME=str(tmp_path_factory.mktemp("hf-home")),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        PYTHONPATH=package_path(),  # the package under test, not whatever else a caller put on the path
    )
    return env


@pytest.fixture(scope="module")
def published(hub, hub_env, tmp_path_factory):
    """Run the real publish command (a fresh process: it sees HF_ENDPOINT as a user's shell would set it)."""
    command = [sys.executable, "-m", "cogvideox_ddim_inversion.cli", "publish", CODE_REPO, "--token", TOKEN]
    done = subprocess.run(command, env=hub_env, cwd=tmp_path_factory.mktemp("publish-cwd"), capture_output=True,
                          text=True, timeout=CHILD_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def published_branch(hub, hub_env, monkeypatch_module):
    """Publish a private repo on a branch, in this process: the endpoint is patched into huggingface_hub's constants."""
    import huggingface_hub.constants

    monkeypatch_module.setattr(huggingface_hub.constants, "ENDPOINT", hub.url)
    assert cli.main(["publish", PRIVATE_REPO, "--token", TOKEN, "--private", "--revision", BRANCH]) == 0
    return hub.head(PRIVATE_REPO, BRANCH)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def model_repo(hub, tiny_checkpoint, tmp_path_factory):
    """A model repo on the server that bundles the pipeline file (and its modules) with a tiny checkpoint."""
    folder = tmp_path_factory.mktemp("bundled") / "model"
    shutil.copytree(tiny_checkpoint("cogvideox-5b"), folder)
    copy_pipeline_files(folder, pipeline_file_name=f"{BUNDLED_PIPELINE}.py")
    return hub.add_repo(MODEL_REPO, folder)


CHILD = textwrap.dedent(
    """
    import json, sys, time, traceback

    import numpy as np
    import torch
    from diffusers import DiffusionPipeline

    from cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline
    from cogvideox_ddim_inversion.testing.sample_clip import sample_clip_frames

    args = json.loads(sys.argv[1])
    video = np.stack(sample_clip_frames(num_frames=9))
    phases, outputs = {}, {}


    def edit(pipe):
        pipe.set_progress_bar_config(disable=True)
        seen = set()

        def spy(p, step, timestep, callback_kwargs):
            seen.update(f"{type(x).__module__}.{type(x).__name__}" for x in p.transformer.attn_processors.values())
            return {}

        inv = pipe.invert(video=video, num_inference_steps=3, max_sequence_length=16)
        out = pipe(prompt="a blue circle moving right", latents=inv.trajectory[0], reference_latents=inv.trajectory,
                   num_inference_steps=3, max_sequence_length=16, output_type="latent", callback_on_step_end=spy)
        return inv.trajectory, out.frames, sorted(seen)


    def describe(pipe, with_edit):
        info = {"class": type(pipe).__name__, "module": type(pipe).__module__}
        if with_edit:
            trajectory, frames, seen = edit(pipe)
            ref_trajectory, ref_frames = outputs["reference"]
            info.update(processors=seen, same_as_package=bool(
                torch.equal(trajectory, ref_trajectory) and torch.equal(frames, ref_frames)))
        return info


    def phase(name, load, with_edit=False):
        start = time.time()
        try:
            phases[name] = {"ok": True, **describe(load(), with_edit)}
        except Exception as error:
            chain, cause = [], error
            while cause is not None:
                chain.append(type(cause).__name__)
                cause = cause.__cause__
            phases[name] = {"ok": False, "error": type(error).__name__, "message": str(error), "chain": chain,
                            "traceback": traceback.format_exc()[-3000:]}
        phases[name].update(start=start, end=time.time())


    reference = CogVideoXDDIMInversionPipeline.from_pretrained(args["checkpoint"])
    trajectory, frames, _ = edit(reference)
    outputs["reference"] = (trajectory, frames)

    code = dict(custom_pipeline=args["code_repo"], trust_remote_code=True)
    phase("code_repo", lambda: DiffusionPipeline.from_pretrained(args["checkpoint"], **code), with_edit=True)
    phase("code_repo_again", lambda: DiffusionPipeline.from_pretrained(args["checkpoint"], **code))
    phase("code_repo_wrong_revision", lambda: DiffusionPipeline.from_pretrained(
        args["checkpoint"], custom_revision="no-such-revision", **code))
    phase("private_branch", lambda: DiffusionPipeline.from_pretrained(
        args["checkpoint"], custom_pipeline=args["private_repo"], custom_revision=args["branch"],
        trust_remote_code=True))
    bundled = dict(custom_pipeline=args["bundled_pipeline"], trust_remote_code=True)
    phase("model_repo", lambda: DiffusionPipeline.from_pretrained(args["model_repo"], **bundled), with_edit=True)
    phase("model_repo_wrong_revision", lambda: DiffusionPipeline.from_pretrained(
        args["model_repo"], revision="no-such-revision", **bundled))
    print("RESULT " + json.dumps(phases))
    """
)


@pytest.fixture(scope="module")
def client(hub, hub_env, published, published_branch, model_repo, tiny_checkpoint, tmp_path_factory):
    """Run the loading scenarios in one child process; returns its per-phase results (with start and end times)."""
    workdir = tmp_path_factory.mktemp("client")
    script = workdir / "client.py"
    script.write_text(CHILD)
    args = dict(checkpoint=tiny_checkpoint("cogvideox-5b"), code_repo=CODE_REPO, private_repo=PRIVATE_REPO,
                branch=BRANCH, model_repo=MODEL_REPO, bundled_pipeline=BUNDLED_PIPELINE)
    env = dict(hub_env, HF_TOKEN=TOKEN)  # read by huggingface_hub for the private repo
    done = subprocess.run([sys.executable, str(script), json.dumps(args)], env=env, cwd=workdir,
                          capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-5000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def requests_during(hub, phase, **match):
    return [
        r for r in hub.requests
        if phase["start"] <= r.time <= phase["end"] and all(getattr(r, k) == v for k, v in match.items())
    ]


def ok(phase: dict) -> dict:
    assert phase["ok"], phase.get("traceback")
    return phase


# -- publish -------------------------------------------------------------------------------------------------------


def test_publish_command_uploads_the_hub_folder(hub, published):
    files = hub.repo_files(CODE_REPO)
    assert set(files) == {".gitattributes", HUB_PIPELINE_FILE, "README.md", *PIPELINE_MODULES}
    assert files[HUB_PIPELINE_FILE] == PIPELINE_FILE.read_bytes()
    for module in PIPELINE_MODULES:
        assert files[module] == (REPO_ROOT / module).read_bytes(), module

    card = files["README.md"].decode()
    assert card.startswith("---\n")
    metadata = yaml.safe_load(card.split("---\n")[1])
    assert metadata["license"] == "apache-2.0"
    assert metadata["library_name"] == "diffusers"
    assert {"diffusers", "cogvideox", "video-editing", "ddim-inversion"} <= set(metadata["tags"])
    assert f'custom_pipeline="{CODE_REPO}"' in card and "trust_remote_code=True" in card

    # Created, then committed with the user's token; every file went inline ("regular"), no other endpoint was used.
    writes = [r for r in hub.requests if r.method == "POST" and r.repo_id == CODE_REPO]
    assert {r.path for r in writes} >= {"/api/repos/create", f"/api/models/{CODE_REPO}/commit/main"}
    assert all(r.authorization == f"Bearer {TOKEN}" for r in writes)
    assert hub.count("POST", path_prefix=f"/api/models/{CODE_REPO}/commit/main") == 1
    assert not hub.repo_is_private(CODE_REPO)
    assert hub.unhandled == []
    assert f"{hub.url}/{CODE_REPO}" in published.stdout


def test_publish_private_repo_on_a_branch(hub, published_branch):
    assert hub.repo_is_private(PRIVATE_REPO)
    assert set(hub.repo_files(PRIVATE_REPO, BRANCH)) >= {HUB_PIPELINE_FILE, "README.md", *PIPELINE_MODULES}
    assert set(hub.repo_files(PRIVATE_REPO, "main")) == {".gitattributes"}  # the branch got the commit, not main


def test_publish_again_is_idempotent(hub, published, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.url)
    before = hub.head(CODE_REPO)
    result = publish(CODE_REPO, token=TOKEN)
    # Nothing changed: huggingface_hub skips unchanged files (the server reports their oids), so no new commit.
    assert hub.head(CODE_REPO) == before
    assert result.repo_url == f"{hub.url}/{CODE_REPO}"


def test_publish_with_a_token_the_hub_refuses(hub, monkeypatch, capsys):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.url)
    assert cli.main(["publish", "tester/refused", "--token", "hf_wrong"]) == 2
    error = capsys.readouterr().err
    assert "write access" in error and "--token" in error
    assert not hub.has_repo("tester/refused")


def test_publish_dry_run_writes_the_folder_only(tmp_path, monkeypatch, capsys):
    import huggingface_hub

    def no_hub(*args, **kwargs):
        raise AssertionError("a dry run must not talk to the Hub")

    monkeypatch.setattr(huggingface_hub, "HfApi", no_hub)
    folder = tmp_path / "hub-folder"
    assert cli.main(["publish", CODE_REPO, "--folder", str(folder), "--dry-run"]) == 0
    written = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert written == sorted([HUB_PIPELINE_FILE, "README.md", *PIPELINE_MODULES])
    assert (folder / HUB_PIPELINE_FILE).read_bytes() == PIPELINE_FILE.read_bytes()
    assert "nothing uploaded" in capsys.readouterr().out
    # Writing the same folder again is fine (it only holds our files).
    assert cli.main(["publish", CODE_REPO, "--folder", str(folder), "--dry-run"]) == 0


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["publish", "no-namespace", "--dry-run"], "'namespace/name'"),
        (["publish", "tester/bad name", "--dry-run"], "letters, digits"),
        (["publish", "tester/a--b", "--dry-run"], "no '--'"),
        (["publish", CODE_REPO], "hf auth login"),  # no token anywhere
        (["publish", CODE_REPO, "--dry-run", "--folder", "{occupied}"], "holds other files"),
    ],
)
def test_publish_bad_input_names_the_fix(argv, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)  # HF_HOME is a fresh folder (conftest): no saved token either
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "weights.bin").write_bytes(b"x")
    argv = [arg.replace("{occupied}", str(occupied)) for arg in argv]
    assert cli.main(argv) == 2
    assert expected in capsys.readouterr().err
    assert sorted(p.name for p in occupied.iterdir()) == ["weights.bin"]  # nothing written on failure


# -- loading from the Hub --------------------------------------------------------------------------------------------


def test_custom_pipeline_from_a_hub_repo(hub, client):
    phase = ok(client["code_repo"])
    # diffusers keys the dynamic module by the repo's commit, and the reference processor comes from the repo too.
    dynamic = f"diffusers_modules.local.tester--cogvideox-ddim-inversion.{hub.head(CODE_REPO)}"
    assert phase["class"] == "CogVideoXDDIMInversionPipeline"
    assert phase["module"] == f"{dynamic}.pipeline"
    assert phase["processors"] == [f"{dynamic}.processors.reference_attention.CogVideoXRefAttnProcessor"]
    assert phase["same_as_package"]
    # pipeline.py and each relatively imported module were downloaded once.
    for filename in (HUB_PIPELINE_FILE, *PIPELINE_MODULES):
        assert len(requests_during(hub, phase, method="GET", repo_id=CODE_REPO, filename=filename)) == 1, filename
    assert hub.unhandled == []


def test_second_load_uses_the_cache(hub, client):
    phase = ok(client["code_repo_again"])
    assert phase["module"].endswith(".pipeline")
    # It checked the server for a newer commit (HEAD), but downloaded nothing again.
    assert requests_during(hub, phase, method="HEAD", repo_id=CODE_REPO, filename=HUB_PIPELINE_FILE)
    assert requests_during(hub, phase, method="GET", filename=HUB_PIPELINE_FILE) == []
    assert hub.count("GET", repo_id=CODE_REPO, filename=HUB_PIPELINE_FILE) == 1


def test_wrong_revision_of_the_code_repo(client):
    phase = client["code_repo_wrong_revision"]
    assert not phase["ok"]
    assert phase["error"] == "RevisionNotFoundError"
    assert "Revision Not Found" in phase["message"]
    assert f"{CODE_REPO}/resolve/no-such-revision/{HUB_PIPELINE_FILE}" in phase["message"]


def test_private_repo_at_a_branch(hub, client, published_branch):
    phase = ok(client["private_branch"])
    assert phase["module"] == f"diffusers_modules.local.tester--private-pipeline.{published_branch}.pipeline"
    downloads = requests_during(hub, phase, method="GET", repo_id=PRIVATE_REPO, filename=HUB_PIPELINE_FILE)
    assert [r.revision for r in downloads] == [BRANCH]
    assert all(r.authorization == f"Bearer {TOKEN}" for r in downloads)  # HF_TOKEN was sent


def test_model_repo_bundling_the_pipeline_from_the_hub(hub, client, model_repo):
    phase = ok(client["model_repo"])
    assert phase["class"] == "CogVideoXDDIMInversionPipeline"
    assert phase["same_as_package"]  # same code, and the weights came through intact
    downloaded = {r.filename for r in requests_during(hub, phase, method="GET", repo_id=MODEL_REPO)}
    assert {f"{BUNDLED_PIPELINE}.py", *PIPELINE_MODULES, "transformer/diffusion_pytorch_model.safetensors",
            "vae/diffusion_pytorch_model.safetensors", "model_index.json"} <= downloaded
    assert hub.unhandled == []


def test_wrong_revision_of_the_model_repo(client):
    phase = client["model_repo_wrong_revision"]
    assert not phase["ok"]
    # diffusers 0.42 wraps it in an OSError naming the model (and blaming the cache); the cause is the Hub's answer.
    assert phase["error"] in ("OSError", "RevisionNotFoundError")
    assert MODEL_REPO in phase["message"]
    assert "RevisionNotFoundError" in phase["chain"]


def test_server_binds_loopback_only(hub):
    assert hub.url.startswith("http://127.0.0.1:")
