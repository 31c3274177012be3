"""Mutation audit: break the code in small, realistic ways, one at a time, and see which breakages the tests catch.

Not a test (pytest does not collect this file; CI does not run it): run it by hand after changing the code or the
tests. Each mutation replaces exact text in one or more files of a fresh temporary copy of the repository (tracked and
untracked, not ignored, files; the working tree is never edited, so Ctrl-C leaves nothing to restore), pytest runs
in that copy with `-x`, and a table says which mutations were killed (a test failed) or survived, the failing tests
and the seconds each run took. A mutation whose text is no longer in the code is reported as stale, not run: update
its text after a refactor.

    python tests/mutation_audit.py                   # each mutation against the tests listed for it
    python tests/mutation_audit.py --full            # each mutation against the whole suite
    python tests/mutation_audit.py -k seed -k fps    # only mutations whose name contains one of these
    python tests/mutation_audit.py --list            # names and descriptions only

The copy is imported as `cogvideox_ddim_inversion` through PYTHONPATH, ahead of an editable install of the
working tree; the script checks that before it runs anything.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "cogvideox_ddim_inversion"


@dataclass(frozen=True)
class Mutation:
    name: str
    description: str
    file: str
    edits: tuple[tuple[str, str], ...]  # (exact old text, new text); each old text must occur exactly once
    tests: tuple[str, ...]  # pytest arguments: files or node ids


MUTATIONS = [
    Mutation(
        "call-reference-rows-interleaved",
        "__call__ lays out per-step reference rows with repeat_interleave instead of repeat (paired mode, guidance, "
        "several videos: video 0's uncond row reads video 1's reference)",
        "cogvideox_ddim_reference.py",
        (
            (
                "reference.repeat(reference_rows // reference.shape[0], 1, 1, 1, 1)",
                "reference.repeat_interleave(reference_rows // reference.shape[0], dim=0)",
            ),
        ),
        ("tests/test_pipeline.py",),
    ),
    Mutation(
        "processor-reference-interleaved",
        "the reference attention processor pairs sample row j with reference row j // (S/R) instead of j % R",
        "processors/reference_attention.py",
        (
            ("key_reference.repeat(repeats, 1, 1, 1)", "key_reference.repeat_interleave(repeats, dim=0)"),
            ("value_reference.repeat(repeats, 1, 1, 1)", "value_reference.repeat_interleave(repeats, dim=0)"),
        ),
        ("tests/test_reference_attention.py",),
    ),
    Mutation(
        "pad-1.5-with-zeros",
        "CogVideoX 1.5 latents padded with zeros instead of copies of the first latent frame (diffusers' padding)",
        "pipeline_cogvideox_ddim_inversion.py",
        (
            (
                "torch.cat([latents[:, :1]] * padding + [latents], dim=1)",
                "torch.cat([torch.zeros_like(latents[:, :1])] * padding + [latents], dim=1)",
            ),
        ),
        ("tests/test_families.py",),
    ),
    Mutation(
        "invert-ignores-callback-latents",
        "invert() ignores the latents a callback_on_step_end returns",
        "pipeline_cogvideox_ddim_inversion.py",
        (
            (
                'step_latents = callback_on_step_end(self, step, t, callback_kwargs).pop("latents", step_latents)',
                'callback_on_step_end(self, step, t, callback_kwargs).pop("latents", step_latents)',
            ),
        ),
        ("tests/test_pipeline.py",),
    ),
    Mutation(
        "image-latents-ignore-invert-scale",
        "1.5-I2V image latents multiplied by the scaling factor although the VAE sets invert_scale_latents",
        "cogvideox_ddim_latents.py",
        (
            (
                "image_latents = image_latents / pipe.vae_scaling_factor_image",
                "image_latents = image_latents * pipe.vae_scaling_factor_image",
            ),
        ),
        ("tests/test_families.py",),
    ),
    Mutation(
        "cli-ignores-seed",
        "the edit workflow behind the CLI seeds its generator with a constant instead of --seed (matters with "
        "--start noise)",
        "workflow/run.py",
        (
            (
                'torch.Generator(device="cpu").manual_seed(settings.seed)',
                'torch.Generator(device="cpu").manual_seed(42)',
            ),
        ),
        ("tests/test_cli.py",),
    ),
    Mutation(
        "cli-ignores-fps",
        "the edit workflow behind the CLI writes at the source's frame rate whatever --fps says",
        "workflow/run.py",
        (
            (
                "    if settings.fps:\n        fps, fps_from = settings.fps",
                "    if False:\n        fps, fps_from = settings.fps",
            ),
        ),
        ("tests/test_cli.py",),
    ),
    Mutation(
        "write-video-straight-to-target",
        "write_video writes straight to the target (no temporary file), so a failure part-way destroys it",
        "cogvideox_ddim_video_writer.py",
        (
            (
                '    handle, partial = tempfile.mkstemp(suffix=".mp4", prefix=".partial-", dir=directory)\n'
                "    os.close(handle)\n",
                "    partial = path\n",
            ),
            ("        if os.path.exists(partial):\n            os.remove(partial)\n", ""),
        ),
        ("tests/test_video_io.py",),
    ),
    Mutation(
        "write-video-removes-partial-before-ffmpeg-stops",
        "on a failure, write_video removes its partial file while ffmpeg's writer is still open (it finishes, and "
        "recreates the file, when garbage collected): the orphaned .partial-*.mp4 bug",
        "cogvideox_ddim_video_writer.py",
        (
            (
                "        if writer is not None:\n            writer.close()\n        if os.path.exists(partial):",
                "        if os.path.exists(partial):",
            ),
        ),
        ("tests/test_video_io.py",),
    ),
    Mutation(
        "training-leaves-determinism-off",
        "toy training turns torch's deterministic mode off afterwards instead of restoring the caller's setting",
        "toy/train.py",
        (
            (
                "torch.use_deterministic_algorithms(enabled, warn_only=warn_only)",
                "torch.use_deterministic_algorithms(False)",
            ),
        ),
        ("tests/test_train_toy_model.py",),
    ),
    Mutation(
        "demo-reports-vae-psnr-as-reconstruction",
        "the toy demo reports the VAE-only PSNR as the reconstruction's",
        "toy/demo.py",
        (
            (
                '"reconstruction": toy_world.psnr(reconstruction, clip.frames)',
                '"reconstruction": toy_world.psnr(vae_only, clip.frames)',
            ),
        ),
        ("tests/test_cli.py",),
    ),
    Mutation(
        "batch-every-process-does-every-job",
        "batch gives every process the whole job list instead of its share",
        "batch.py",
        (("    mine = jobs[state.process_index :: state.num_processes]", "    mine = jobs"),),
        ("tests/test_batch.py::test_two_processes_do_every_good_job_once_and_record_the_bad_ones",),
    ),
    Mutation(
        "batch-partial-state-not-told-cpu",
        "batch asks PartialState for the default device on a machine without GPUs (processes are not connected)",
        "batch.py",
        (
            (
                'cpu = device == "cpu" or parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available()',
                "cpu = False",
            ),
        ),
        ("tests/test_batch.py::test_two_processes_do_every_good_job_once_and_record_the_bad_ones",),
    ),
    Mutation(
        "batch-redoes-finished-jobs",
        "batch never finds a finished job with the same settings, so a rerun redoes everything",
        "batch.py",
        (("            record = finished_record(final, digest)", "            record = None"),),
        ("tests/test_batch.py::test_a_rerun_resumes_an_interrupted_run_without_redoing_finished_jobs",),
    ),
    Mutation(
        "batch-keeps-partial-folders",
        "batch does not delete the temporary folders an interrupted run left",
        "batch.py",
        (("        removed = remove_partial_outputs(output_dir)", "        removed = []"),),
        ("tests/test_batch.py::test_a_rerun_resumes_an_interrupted_run_without_redoing_finished_jobs",),
    ),
    Mutation(
        "batch-hash-ignores-seed",
        "the settings hash leaves the seed out, so a job whose seed changed is skipped",
        "workflow/jobs.py",
        (
            (
                'skipped = {"extra", "video", *type(settings).table.names(memory_only=True)}',
                'skipped = {"extra", "video", "seed", *type(settings).table.names(memory_only=True)}',
            ),
        ),
        ("tests/test_batch.py::test_a_rerun_resumes_an_interrupted_run_without_redoing_finished_jobs",),
    ),
    Mutation(
        "mask-blending-skipped",
        "__call__ never sets the latents outside the mask to the source's: the mask does nothing in latent space",
        "pipeline_cogvideox_ddim_inversion.py",
        (("                if latent_mask is not None and i in checked.mask_window:",
          "                if False and latent_mask is not None and i in checked.mask_window:"),),
        ("tests/test_masks.py",),
    ),
    Mutation(
        "paste-back-skipped",
        "paste_back=True decodes the edit but never composites the source outside the mask",
        "pipeline_cogvideox_ddim_inversion.py",
        (("paste_mask = pixel_mask if paste_back else None", "paste_mask = None"),),
        ("tests/test_masks.py",),
    ),
    Mutation(
        "cli-drops-mask-dilation",
        "the edit workflow does not pass --mask-dilation to the pipeline",
        "workflow/run.py",
        (("                          mask_dilation=settings.mask_dilation, mask_feather=settings.mask_feather)",
          "                          mask_feather=settings.mask_feather)"),),
        ("tests/test_masks_cli.py",),
    ),
    Mutation(
        "app-ignores-mask-words",
        "the app drops the page's mask words",
        "app/fields.py",
        (
            (
                "    option = page_option(name)\n    if value is None and option.kind in TEXT_KINDS:",
                "    option = page_option(name)\n    if name == \"mask_words\":\n        return None\n"
                "    if value is None and option.kind in TEXT_KINDS:",
            ),
        ),
        ("tests/test_app.py::test_local_edits_with_mask_words_or_a_mask_video",),
    ),
    Mutation(
        "reference-rows-take-the-edited-image",
        "image-to-video reference rows are conditioned on the edit's image even when reference_image_latents is given",
        "cogvideox_ddim_reference.py",
        (("        reference_image = reference_image_latents\n", "        reference_image = None\n"),),
        ("tests/test_families.py",),
    ),
    Mutation(
        "edited-first-frame-stretched",
        "--image is stretched to the video's size whatever --resize-mode says",
        "workflow/run.py",
        (("    image = resize_frames(frame, height, width, settings.resize_mode) * 2 - 1",
          '    image = resize_frames(frame, height, width, "stretch") * 2 - 1'),),
        ("tests/test_workflow.py",),
    ),
    Mutation(
        "frames-4k-plus-1",
        "sources are read as 4k + 1 frames again, so an even latent count decodes to 4 frames each",
        "cogvideox_ddim_video_io.py",
        (("    step = 2 * temporal_compression\n", "    step = temporal_compression\n"),),
        (
            "tests/test_video_io.py",
            "tests/test_cli.py::test_frame_counts_that_the_vae_cannot_decode_in_step_are_not_read",
        ),
    ),
    Mutation(
        "window-last-not-shifted-back",
        "the last temporal window is not shifted back to end at the last latent frame: it runs past the clip's end",
        "cogvideox_ddim_windows.py",
        (
            (
                "return [i * (window - overlap) for i in range(count - 1)] + [latent_frames - window]",
                "return [i * (window - overlap) for i in range(count)]",
            ),
        ),
        ("tests/test_windows.py",),
    ),
    Mutation(
        "window-weights-not-normalised-per-frame",
        "window weights are normalised per window (each sums to 1) instead of per frame over the windows holding it",
        "cogvideox_ddim_windows.py",
        (
            (
                "return torch.stack([raw / total[start : start + self.window] for start in self.starts])",
                "return torch.stack([raw / raw.sum() for start in self.starts])",
            ),
        ),
        ("tests/test_windows.py",),
    ),
    Mutation(
        "window-reference-rows-from-another-window",
        "a window's reference rows hold the trajectory's frames of the next window (the last: the first), so their "
        "keys and positions do not line up with the sample window reading them",
        "cogvideox_ddim_reference.py",
        (
            (
                "return split_windows(reference, schedule, windows), window_rows(",
                "return split_windows(reference, schedule, [(i + 1) % schedule.num_windows for i in windows]), "
                "window_rows(",
            ),
        ),
        (
            "tests/test_long_videos.py",
            "tests/test_long_videos.py::test_each_window_attends_to_its_own_frames_of_the_reference",
        ),
    ),
    Mutation(
        "window-weighting-not-recorded",
        "invert() records the default window weighting (pyramid) in inv.windows instead of the one it used, so "
        "__call__ regenerates with other weights and loses the round trip",
        "pipeline_cogvideox_ddim_inversion.py",
        (
            (
                '**({"windows": schedule.to_dict()} if schedule.num_windows > 1 else {}),',
                '**({"windows": {**schedule.to_dict(), "scheme": "pyramid"}} '
                "if schedule.num_windows > 1 else {}),",
            ),
        ),
        ("tests/test_long_videos.py",),
    ),
    Mutation(
        "group-offload-t5-whole",
        "block-level group offloading is applied to the T5 model rather than its encoder: block level finds no "
        "block list at T5's top level, so the whole encoder is onloaded at once (same output, not the same memory)",
        "cogvideox_ddim_memory.py",
        (("            module = module.encoder\n", "            pass\n"),),
        (
            "tests/test_memory.py::test_group_offload_to_the_cpu_gives_the_plain_output_bit_for_bit",
            "tests/test_memory.py::test_block_level_group_offload_onloads_t5_one_block_at_a_time",
        ),
    ),
]

def repository_files() -> list[str]:
    """The files of the working tree a checkout would have (tracked, and untracked but not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sorted({name for name in listed.split("\0") if name and (REPO_ROOT / name).is_file()})


def make_copy(root: Path, files: list[str]) -> Path:
    """Copy the repository to `root/cogvideox_ddim_inversion` (importable from `root`), with `root/shared` pointing at
    the real ../shared so that tests using it run rather than skip."""
    copy = root / PACKAGE
    for name in files:
        target = copy / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target)
    shared = REPO_ROOT.parent / "shared"
    if shared.exists():
        (root / "shared").symlink_to(shared.resolve(), target_is_directory=True)
    return copy


def check_edits(mutation: Mutation) -> str | None:
    """None if every old text occurs exactly once in the working tree's file, else why the mutation is stale."""
    path = REPO_ROOT / mutation.file
    if not path.is_file():
        return f"{mutation.file} does not exist"
    text = path.read_text()
    for old, _ in mutation.edits:
        count = text.count(old)
        if count != 1:
            return f"text found {count} times in {mutation.file}: {old.strip()[:60]!r}"
    return None


def apply(mutation: Mutation, copy: Path):
    path = copy / mutation.file
    text = path.read_text()
    for old, new in mutation.edits:
        text = text.replace(old, new)
    path.write_text(text)


def environment(root: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("PYTEST_ADDOPTS", None)
    return env


def check_import(root: Path, copy: Path):
    found = subprocess.run(
        [sys.executable, "-c", f"import {PACKAGE}, os; print(os.path.dirname(os.path.abspath({PACKAGE}.__file__)))"],
        cwd=copy,
        env=environment(root),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if Path(found).resolve() != copy.resolve():
        sys.exit(f"The copy is not what `import {PACKAGE}` finds ({found}); cannot audit.")


FAILED_LINE = re.compile(r"^(FAILED|ERROR) (\S+)")


def run_pytest(root: Path, copy: Path, tests: list[str], timeout: float) -> tuple[str, list[str], float, str]:
    """(result, failing node ids, seconds, output tail) of `pytest -x` on `tests` in the copy."""
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-rfE", *tests]
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command, cwd=copy, env=environment(root), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return "timeout", [], time.perf_counter() - start, ""
    seconds = time.perf_counter() - start
    failing = [match.group(2) for line in done.stdout.splitlines() if (match := FAILED_LINE.match(line))]
    result = {0: "survived", 1: "killed"}.get(done.returncode, f"error (pytest exit {done.returncode})")
    return result, failing, seconds, "\n".join((done.stdout + done.stderr).splitlines()[-15:])


def print_table(rows: list[tuple[str, str, str, float | None]]):
    headers = ("mutation", "result", "failing test(s)", "s")
    cells = [
        (name, result, failing, "" if seconds is None else f"{seconds:.0f}") for name, result, failing, seconds in rows
    ]
    widths = [max(len(headers[i]), *(len(row[i]) for row in cells)) for i in range(4)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*headers))
    print(line.format(*("-" * w for w in widths)))
    for row in cells:
        print(line.format(*row))


def short(failing: list[str]) -> str:
    names = [name.removeprefix("tests/") for name in failing]
    return ", ".join(names[:2]) + (f" (+{len(names) - 2} more)" if len(names) > 2 else "") or "-"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", dest="names", action="append", default=[], help="run mutations whose name has this")
    parser.add_argument("--full", action="store_true", help="run the whole suite (with -x) for every mutation")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per pytest run (default 1200)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of the same tests")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    args = parser.parse_args(argv)

    selected = [m for m in MUTATIONS if not args.names or any(name in m.name for name in args.names)]
    if args.list or not selected:
        for mutation in selected or MUTATIONS:
            print(f"{mutation.name}: {mutation.description} [{mutation.file}; {' '.join(mutation.tests)}]")
        return 0 if selected else 2

    files = repository_files()
    rows: list[tuple[str, str, str, float | None]] = []
    try:
        if not args.no_baseline:
            tests = [] if args.full else sorted({test for m in selected for test in m.tests})
            with tempfile.TemporaryDirectory(prefix="mutation-audit-") as root:
                copy = make_copy(Path(root), files)
                check_import(Path(root), copy)
                result, failing, seconds, tail = run_pytest(Path(root), copy, tests, args.timeout)
            rows.append(("(none: baseline)", "passed" if result == "survived" else result, short(failing), seconds))
            print(f"baseline: {rows[-1][1]} in {seconds:.0f} s", flush=True)
            if result != "survived":
                print(tail)
                print_table(rows)
                print("The unmutated tests do not pass: fix that first (or pass --no-baseline).")
                return 1
        for mutation in selected:
            stale = check_edits(mutation)
            if stale:
                rows.append((mutation.name, "stale", stale, None))
                print(f"{mutation.name}: stale ({stale})", flush=True)
                continue
            with tempfile.TemporaryDirectory(prefix="mutation-audit-") as root:
                copy = make_copy(Path(root), files)
                apply(mutation, copy)
                result, failing, seconds, tail = run_pytest(
                    Path(root), copy, [] if args.full else list(mutation.tests), args.timeout
                )
            rows.append((mutation.name, result, short(failing), seconds))
            print(f"{mutation.name}: {result} in {seconds:.0f} s", flush=True)
            if result.startswith("error"):
                print(tail)
    except KeyboardInterrupt:
        print("\nInterrupted: the working tree was not touched; results so far:")
    print()
    print_table(rows)
    survived = [row[0] for row in rows if row[1] == "survived"]
    if survived:
        print(f"\nSurvived (no test failed): {', '.join(survived)}")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
