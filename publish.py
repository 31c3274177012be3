"""Publish the pipeline as a Hub repo that `custom_pipeline="<namespace>/<name>"` loads.

diffusers loads a `custom_pipeline` repo (or local folder) by downloading its `pipeline.py` and then, one by one, the
modules that file imports relatively. So the Hub folder holds `pipeline.py` (a copy of
`pipeline_cogvideox_ddim_inversion.py`), the relatively imported modules at the same relative paths, and a model card.
The upload goes through huggingface_hub, which reads `HF_ENDPOINT` and the saved token (`hf auth login`) or `HF_TOKEN`
itself.
"""

import argparse
import ast
import importlib.metadata
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple


PACKAGE_DIR = Path(__file__).resolve().parent
PIPELINE_SOURCE = "pipeline_cogvideox_ddim_inversion.py"


def relative_imports(path: str | os.PathLike) -> list[str]:
    """The modules a Python file imports relatively (`from .a.b import c`), as paths `a/b.py` from its folder, in
    the order of the file. `from . import x` names no module path and is refused: diffusers' loader does not see it."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    modules = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            if node.level != 1 or not node.module:
                raise ValueError(
                    f"{path}: `from {'.' * node.level}{node.module or ''} import ...` is not a direct relative import; "
                    "diffusers' custom_pipeline loader ships only `from .module import name`."
                )
            module = node.module.replace(".", "/") + ".py"
            if module not in modules:
                modules.append(module)
    return sorted(modules, key=lambda module: (module.count("/"), module))


def pipeline_modules() -> tuple[str, ...]:
    """The modules `pipeline_cogvideox_ddim_inversion.py` imports relatively, as paths from the package root, derived
    from its imports: diffusers' `custom_pipeline` loader fetches exactly these next to the pipeline file (only the
    pipeline file's direct relative imports, so a shipped module may import only modules among these)."""
    return tuple(relative_imports(PACKAGE_DIR / PIPELINE_SOURCE))


PIPELINE_MODULES = pipeline_modules()  # derived from the pipeline file's imports, not a hand list
# The file name diffusers looks for in a `custom_pipeline` repo or folder.
HUB_PIPELINE_FILE = "pipeline.py"
MODEL_CARD = "README.md"
DEFAULT_COMMIT_MESSAGE = "Upload CogVideoX DDIM inversion pipeline"
CARD_TAGS = ("diffusers", "cogvideox", "video-editing", "ddim-inversion", "video-to-video")


class PublishResult(NamedTuple):
    folder: str | None  # the Hub folder written; None when it was a temporary folder, removed after the upload
    repo_url: str | None  # None for a dry run
    commit_url: str | None


def check_repo_id(repo_id: str) -> str:
    """Return `repo_id` if it is a valid `namespace/name` model repo id; otherwise raise a ValueError naming the fix."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    example = "your-username/cogvideox-ddim-inversion"
    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise ValueError(
            f"Invalid repo id {repo_id!r}: give it as 'namespace/name' (your user or organization name, then the repo "
            f"name), e.g. {example!r}."
        )
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(
            f"Invalid repo id {repo_id!r}: use letters, digits, '-', '_' and '.' only, no '--' or '..', not starting "
            f"or ending with '-' or '.', at most 96 characters, e.g. {example!r}. ({error})"
        ) from None
    return repo_id


def copy_pipeline_files(folder: str | os.PathLike, pipeline_file_name: str = HUB_PIPELINE_FILE) -> list[str]:
    """Copy the pipeline file (as `pipeline_file_name`) and the modules it imports into `folder`.

    `pipeline.py` is the layout of a `custom_pipeline` repo or folder; pass `pipeline_file_name=
    "pipeline_cogvideox_ddim_inversion.py"` to bundle the code with a checkpoint, which then loads with
    `custom_pipeline="pipeline_cogvideox_ddim_inversion"`. Returns the written paths, relative to `folder`.
    """
    folder = Path(folder)
    written = []
    for source, target in [(PIPELINE_SOURCE, pipeline_file_name), *((m, m) for m in PIPELINE_MODULES)]:
        destination = folder / target
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PACKAGE_DIR / source, destination)
        written.append(target)
    return written


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def model_card(repo_id: str) -> str:
    """The README.md of the Hub repo: YAML metadata, then what the pipeline does and copy-paste usage."""
    tags = "".join(f"- {tag}\n" for tag in CARD_TAGS)
    modules = "".join(
        f"- `{module}`: imported by the pipeline; diffusers downloads it next to `{HUB_PIPELINE_FILE}`.\n"
        for module in PIPELINE_MODULES
    )
    return f"""---
license: apache-2.0
library_name: diffusers
tags:
{tags}---

# CogVideoX DDIM inversion (community pipeline)

`CogVideoXDDIMInversionPipeline` edits real videos with CogVideoX: `invert()` runs the checkpoint's own deterministic
DDIM sampler backwards from a video to noise and keeps the whole trajectory; calling the pipeline with
`reference_latents=trajectory` regenerates the video under a new prompt while its attention also reads the inverted
source at every step, which keeps the source's structure and motion.

This repo holds only code: load it on top of any CogVideoX text-to-video checkpoint (`THUDM/CogVideoX-2b`,
`THUDM/CogVideoX-5b`, ...) with `custom_pipeline`. The weights come from the checkpoint.

## Usage

```bash
pip install diffusers transformers accelerate sentencepiece imageio imageio-ffmpeg
```

```python
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import export_to_video

pipe = DiffusionPipeline.from_pretrained(
    "THUDM/CogVideoX-5b",
    custom_pipeline="{repo_id}",
    trust_remote_code=True,
    torch_dtype=torch.bfloat16,
).to("cuda")

# 1. Invert the source video (49 frames at 720x480 for CogVideoX-5b).
inv = pipe.invert(video="source.mp4", prompt="", num_inference_steps=50)

# 2. Regenerate it under a new prompt, guided by the inverted trajectory.
video = pipe(
    prompt="a zebra running across a field",
    latents=inv.trajectory[0],
    reference_latents=inv.trajectory,
    num_inference_steps=50,
    guidance_scale=6,
).frames[0]
export_to_video(video, "edit.mp4", fps=8)
```

Pin the code to a commit or tag with `custom_revision="<commit sha or tag>"`: `trust_remote_code=True` runs this
repo's Python on your machine, so read it first and pin what you reviewed.

## Files

- `{HUB_PIPELINE_FILE}`: the pipeline (`pipeline_cogvideox_ddim_inversion.py` in the source package).
{modules}
The same code is also a Python package, `cogvideox-ddim-inversion`: installed, it provides the pipeline as
`from cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline` and a `cogvideox-ddim-inversion` command.

Published with cogvideox-ddim-inversion {_version("cogvideox-ddim-inversion")} (diffusers {_version("diffusers")}).
"""


def write_hub_folder(folder: str | os.PathLike, repo_id: str) -> Path:
    """Write the files of the Hub repo `repo_id` into `folder` (created if needed); returns the folder.

    `folder` must be new, empty, or a folder this function wrote before: anything else in it would be uploaded too.
    """
    check_repo_id(repo_id)
    folder = Path(folder)
    ours = {HUB_PIPELINE_FILE, MODEL_CARD, *PIPELINE_MODULES}
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{str(folder)!r} is a file: pass a folder to write the Hub repo into.")
    if folder.is_dir():
        others = sorted(
            p.relative_to(folder).as_posix()
            for p in folder.rglob("*")
            if p.is_file() and p.relative_to(folder).as_posix() not in ours and "__pycache__" not in p.parts
        )
        if others:
            shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
            raise ValueError(
                f"Folder {str(folder)!r} holds other files ({shown}), which would be uploaded too: pass a new or "
                "empty folder with --folder, or leave it out to use a temporary one."
            )
    folder.mkdir(parents=True, exist_ok=True)
    copy_pipeline_files(folder)
    (folder / MODEL_CARD).write_text(model_card(repo_id), encoding="utf-8")
    return folder


def publish(
    repo_id: str,
    folder: str | os.PathLike | None = None,
    token: str | None = None,
    private: bool = False,
    dry_run: bool = False,
    revision: str | None = None,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
) -> PublishResult:
    """Write the Hub folder for `repo_id` and, unless `dry_run`, upload it.

    Args:
        repo_id: `namespace/name` of the model repo; created if missing.
        folder: where to write the files; a temporary folder (removed after the upload) when left out. A dry run
            without a folder keeps its temporary folder and returns its path.
        token: a Hugging Face token with write access; defaults to `HF_TOKEN` or the token saved by `hf auth login`.
        private: create the repo as private (an existing repo keeps its visibility).
        dry_run: write the folder only; nothing is sent to the Hub.
        revision: branch to commit to; created from `main` if missing. Defaults to `main`.
        commit_message: message of the upload commit.
    """
    check_repo_id(repo_id)
    if revision is not None and (not revision.strip() or re.search(r"\s|\.\.", revision)):
        raise ValueError(f"Invalid revision {revision!r}: give a branch name such as 'main' or 'v0.1'.")
    if dry_run:
        target = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="cogvideox-ddim-inversion-hub-"))
        return PublishResult(str(write_hub_folder(target, repo_id)), None, None)

    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    token = token or get_token()
    if not token:
        raise ValueError(
            "No Hugging Face token found: run `hf auth login`, set HF_TOKEN, or pass --token (a token with write "
            "access to the namespace)."
        )
    api = HfApi(token=token)  # HfApi reads HF_ENDPOINT: no endpoint is hardcoded here

    with tempfile.TemporaryDirectory(prefix="cogvideox-ddim-inversion-hub-") as scratch:
        target = write_hub_folder(Path(folder) if folder is not None else scratch, repo_id)
        try:
            repo_url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
            if revision not in (None, "main"):
                api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
            commit = api.upload_folder(
                folder_path=target, repo_id=repo_id, repo_type="model", revision=revision,
                commit_message=commit_message,
            )
        except HfHubHTTPError as error:
            status = error.response.status_code if error.response is not None else None
            if status in (401, 403):
                raise OSError(
                    f"The Hub refused the upload to {repo_id!r} ({status}): check that the token has write access to "
                    f"the namespace {repo_id.split('/')[0]!r} (`hf auth login` with a write token, or --token). "
                    f"Details: {error}"
                ) from None
            raise
    return PublishResult(str(folder) if folder is not None else None, str(repo_url), commit.commit_url)


def run_publish(args: argparse.Namespace) -> PublishResult:
    """`cogvideox-ddim-inversion publish`: write the Hub folder and upload it (or only write it, with --dry-run)."""
    result = publish(
        args.repo_id, folder=args.folder, token=args.token, private=args.private, dry_run=args.dry_run,
        revision=getattr(args, "revision", None),
        commit_message=getattr(args, "commit_message", None) or DEFAULT_COMMIT_MESSAGE,
    )
    if args.dry_run:
        print(f"Wrote the Hub folder for {args.repo_id} to {result.folder} (dry run: nothing uploaded).")
    else:
        print(f"Published {args.repo_id}: {result.repo_url}")
        print(f"Commit: {result.commit_url}")
    revision = getattr(args, "revision", None)
    pin = f', custom_revision="{revision}"' if revision not in (None, "main") else ""
    print(
        f'Load it with: DiffusionPipeline.from_pretrained("THUDM/CogVideoX-5b", custom_pipeline="{args.repo_id}"'
        f"{pin}, trust_remote_code=True)",
        file=sys.stderr,
    )
    return result
