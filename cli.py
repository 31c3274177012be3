"""Command line: edit video files with CogVideoX (`edit`, `invert`, `batch`), the toy demo, tiny checkpoints, the app,
publishing and scoring.

Every edit option is a row of `workflow.settings`' tables: the flags are made from it (`workflow.flags`), the checks
and the run are `workflow`'s, and a `SettingsError` is printed naming the option by its flag. Parsing and `--help`
import neither torch nor diffusers: each command imports what it needs when it runs.
"""

import argparse
import contextlib
import os
import signal
import sys
import threading

from .workflow.flags import add_model_options, add_options, model_and_edit_settings, option_group
from .workflow.launcher import USER_ERRORS, launched_command
from .workflow.settings import DEFAULT_MODEL, render_error


def _leave_process_group():
    """A launched run's process group, once joined, is left at the end (context parallelism)."""
    if "torch" in sys.modules:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


@launched_command(cleanup=_leave_process_group)
def run_edit(args) -> dict:
    """Check everything, load the checkpoint, then invert (or load the inversion of) the video and write the edits.
    With `--context-parallel N` every launched process computes them and process 0 writes them."""
    from .cogvideox_ddim_context_parallel import start_context_parallel
    from .workflow.checks import check_devices, prepare_edit
    from .workflow.loading import load_pipeline
    from .workflow.run import edit_video, print_log
    from .workflow.window_plan import log_plan

    model_settings, settings = model_and_edit_settings(args)
    check_devices(model_settings, settings)
    prepared = prepare_edit(settings, model_settings.model, output_dir=args.output_dir,
                            memory=model_settings.memory_options())
    launch = start_context_parallel(args.context_parallel, prepared.config["transformer"], model_settings.device)
    log = print_log if launch.writes else None
    log_plan(settings, prepared.config, log, plan=prepared.plan)  # a long clip's windows, before the weights load
    pipe, load_info = load_pipeline(launch.on_own_device(model_settings), log=log)
    launch.enable(pipe, load_info)
    record = edit_video(pipe, settings, args.output_dir, load_info, log=log, write_outputs=launch.writes)
    for name, path in record["outputs"].items():
        print(f"{name}: {path}")
    return record["outputs"]


@launched_command(cleanup=_leave_process_group)
def run_invert(args) -> dict:
    """`invert VIDEO --output PATH`: the inversion alone, saved for `edit --inversion PATH`; with --mask-words, also
    the recorded mask as a video beside it (`mask_video_path`). With `--context-parallel N`, process 0 writes them."""
    from .cogvideox_ddim_context_parallel import start_context_parallel
    from .cogvideox_ddim_video_io import write_mask_video
    from .workflow.checks import check_devices, prepare_edit
    from .workflow.loading import load_pipeline
    from .workflow.run import invert_source, print_log, write_video_whole
    from .workflow.settings import SettingsError
    from .workflow.sources import read_source
    from .workflow.window_plan import log_plan

    model_settings, settings = model_and_edit_settings(args)
    settings.save_inversion = args.output
    if settings.video is None:
        raise SettingsError("video", "invert needs a video file: cogvideox-ddim-inversion invert VIDEO --output PATH.")
    check_devices(model_settings, settings)
    prepared = prepare_edit(settings, model_settings.model, command="invert")
    launch = start_context_parallel(args.context_parallel, prepared.config["transformer"], model_settings.device)
    log = print_log if launch.writes else None
    log_plan(settings, prepared.config, log, command="invert", plan=prepared.plan)
    pipe, load_info = load_pipeline(launch.on_own_device(model_settings), log=log)
    launch.enable(pipe, load_info)
    if not launch.writes:
        settings.save_inversion = None
    source = read_source(pipe, settings)
    inv = invert_source(pipe, settings, source, log=log)
    if not launch.writes:
        return {}
    written = {"inversion": args.output}
    if inv.mask is not None:
        written["mask"] = write_video_whole(write_mask_video, inv.mask[0], mask_video_path(args.output), source.fps)
    for name, path in written.items():
        print(f"{name}: {path}")
    return written


def mask_video_path(inversion_path: str) -> str:
    """Where `invert --mask-words` writes the recorded mask: beside the inversion, `NAME.mask.mp4`."""
    root, extension = os.path.splitext(inversion_path)
    return (root if extension == ".safetensors" else inversion_path) + ".mask.mp4"


def run_demo(args) -> dict:
    """Edit a toy-world clip with the committed, trained toy checkpoint; `--random-tiny` runs the old noise demo."""
    if not args.random_tiny:
        if args.variant != DEMO_VARIANT:
            raise ValueError(f"--variant picks the tiny random checkpoint of --random-tiny; the toy demo has one "
                             f"model (it mirrors {DEMO_VARIANT}): add --random-tiny, or leave --variant out.")
        from .toy.demo import run_toy_demo

        metrics = run_toy_demo(args.output_dir, steps=args.steps, checkpoint=args.model, seed=args.seed)
        print(
            f"edit {metrics['source_prompt']!r} -> {metrics['edit_prompt']!r}: detected colour "
            f"{metrics['detected_colour']['edit']} (target {metrics['detected_colour']['target']}), centroid error "
            f"{metrics['centroid_error_px']['edit']:.2f} px, reconstruction PSNR "
            f"{metrics['psnr_db']['reconstruction']:.2f} dB (VAE ceiling {metrics['psnr_db']['vae_ceiling']:.2f} dB)",
            file=sys.stderr,
        )
        for name, path in metrics["files"].items():
            print(f"{name}: {path}")
        return metrics["files"]
    return _run_random_tiny_demo(args)


def _run_random_tiny_demo(args) -> dict:
    """Write a tiny random checkpoint and a sample clip, then run `edit` on them."""
    from .testing.sample_clip import write_sample_clip
    from .testing.tiny_checkpoint import write_tiny_checkpoint

    checkpoint = os.path.join(args.output_dir, "tiny-checkpoint")
    if not os.path.isfile(os.path.join(checkpoint, "model_index.json")):
        write_tiny_checkpoint(checkpoint, variant=args.variant)
    clip = write_sample_clip(os.path.join(args.output_dir, "sample.mp4"))
    print(
        "Demo with a tiny, randomly initialised CogVideoX: the outputs are noise. This shows the pipeline runs end to "
        f"end; real edits need a real checkpoint (e.g. --model {DEFAULT_MODEL} on a GPU).",
        file=sys.stderr,
    )
    edit_args = build_parser().parse_args([
        "edit", clip, "--prompt", "a blue circle moving right", "--source-prompt", "a red circle moving right",
        "--model", checkpoint, "--output-dir", args.output_dir, "--steps", str(args.steps), "--device", "cpu",
        "--dtype", "fp32", "--seed", "0", "--reconstruction",
    ])
    outputs = run_edit(edit_args)
    return {"sample": clip, **outputs}


def run_tiny_checkpoint(args) -> str:
    from .testing.tiny_checkpoint import write_tiny_checkpoint

    path = write_tiny_checkpoint(args.path, args.variant, args.seed)
    print(path)
    return path


def add_context_parallel_flag(parser):
    option_group(parser, "context parallelism").add_argument(
        "--context-parallel", type=int, default=None, metavar="N",
        help="spread the video's tokens over N processes, one per GPU, launched with `torchrun --nproc_per_node N "
        "-m cogvideox_ddim_inversion.cli ...` (or accelerate launch); N must divide the attention heads (2B: 30, "
        "5B: 48); process 0 writes the outputs (default: one process)",
    )


def build_parser(table=None) -> argparse.ArgumentParser:
    """The command line; `table` replaces the edit options' table (`EDIT_OPTIONS`), e.g. with a new option."""
    from .workflow.settings import EDIT_OPTIONS

    table = table or EDIT_OPTIONS
    parser = argparse.ArgumentParser(
        prog="cogvideox-ddim-inversion",
        description="DDIM-invert a video with CogVideoX and regenerate it under a new prompt.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    edit = commands.add_parser(
        "edit", help="invert a video (or load a saved inversion) and write edits under one or more prompts as MP4"
    )
    add_options(edit, "edit", table, video=True)
    option_group(edit, "outputs").add_argument(
        "--output-dir", default="output",
        help="folder for edit-<n>.mp4, side_by_side.mp4, reconstruction.mp4 and run.json (default: %(default)s)")
    add_model_options(edit)
    add_context_parallel_flag(edit)
    edit.set_defaults(func=run_edit, command_name="edit")

    invert = commands.add_parser("invert", help="invert a video and save the inversion for `edit --inversion`")
    add_options(invert, "invert", table, video=True)
    option_group(invert, "outputs").add_argument("--output", required=True,
                                                 help="inversion file to write (.safetensors; required)")
    add_model_options(invert, "invert")
    add_context_parallel_flag(invert)
    invert.set_defaults(func=run_invert, command_name="invert")

    add_batch_parser(commands, table)
    add_demo_parser(commands)

    from .testing.variants import VARIANTS

    tiny = commands.add_parser("tiny-checkpoint", help="write a tiny random CogVideoX checkpoint (tests, demos)")
    tiny.add_argument("path", help="folder to write the checkpoint to")
    checkpoint = option_group(tiny, "checkpoint")
    checkpoint.add_argument("--variant", default="cogvideox-5b", choices=sorted(VARIANTS),
                            help="family whose structure the tiny model mirrors: %(choices)s (default: %(default)s)")
    checkpoint.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: %(default)s)")
    tiny.set_defaults(func=run_tiny_checkpoint)

    from .app import add_app_arguments, run_app  # neither imports Gradio until the app starts

    app = commands.add_parser(
        "app", help="web page for editing videos (Gradio; pip install 'cogvideox-ddim-inversion[app]'); without "
        "--model it runs the committed toy checkpoint, offline"
    )
    add_app_arguments(app)
    app.set_defaults(func=run_app)

    add_publish_parser(commands)
    add_evaluate_parser(commands)
    return parser


def add_batch_parser(commands, table):
    # `--save-inversion PATH` of `edit` becomes a switch here: each job's inversion goes into its own folder.
    batch = commands.add_parser(
        "batch",
        help="edit many videos listed in a JSONL or CSV file, resumably, on one process or under accelerate launch",
        description="Edit every video of JOBS (one per line: video, source_prompt, prompts and any per-job option) "
        "into OUTPUT_DIR/<job id>/. Flags give every job's defaults; a job's own options replace them. Rerunning "
        "skips finished jobs. Run it under `accelerate launch` for one process per GPU (docs/batch.md).",
    )
    batch.add_argument("jobs", help="JSONL (one JSON object per line) or CSV file (header row; several prompts "
                       "separated by '|'); video, image and inversion paths are relative to its folder")
    add_options(batch, "batch", table)
    outputs = option_group(batch, "outputs")
    outputs.add_argument("--output-dir", required=True,
                         help="one folder per job (edits, side_by_side.mp4, run.json, job.json) and manifest.jsonl "
                         "(required)")
    outputs.add_argument("--save-inversion", action="store_true",
                         help="also save each job's inversion as OUTPUT_DIR/<job id>/inversion.safetensors (default: "
                         "off)")
    outputs.add_argument("--fail-on-error", action="store_true",
                         help="exit with status 1 when any job failed (default: off, exit 0; failures are in "
                         "manifest.jsonl)")
    add_model_options(batch, "batch")
    batch.set_defaults(func=run_batch, command_name="batch")


DEMO_VARIANT = "cogvideox-5b"


def add_demo_parser(commands):
    from .testing.variants import VARIANTS

    demo = commands.add_parser(
        "demo", help="invert and colour-edit a toy-world clip with the committed toy model (trained on CPU)"
    )
    group = option_group(demo, "demo")
    group.add_argument("--output-dir", default="demo_output",
                       help="folder for the demo's videos and metrics.json (default: %(default)s)")
    group.add_argument("--steps", type=int, default=50,
                       help="DDIM steps; with --random-tiny 10 is plenty (default: %(default)s)")
    group.add_argument("--model", default=None,
                       help="toy checkpoint folder (default: the one shipped in the package)")
    group.add_argument("--seed", type=int, default=0, help="which held-out toy clip to edit (default: %(default)s)")
    group.add_argument(
        "--random-tiny", action="store_true",
        help="instead: write a tiny randomly initialised checkpoint and run edit on a sample clip, whose outputs are "
        "noise (default: off)",
    )
    group.add_argument("--variant", default=DEMO_VARIANT, choices=sorted(VARIANTS),
                       help="with --random-tiny: tiny model structure to mirror, %(choices)s (default: %(default)s)")
    demo.set_defaults(func=run_demo)


def add_publish_parser(commands):
    from .publish import run_publish  # stdlib only at import time: huggingface_hub loads when publishing

    publish = commands.add_parser(
        "publish", help="upload the pipeline code as a Hub repo that custom_pipeline='<namespace>/<name>' loads"
    )
    publish.add_argument("repo_id", help="model repo to create or update, as namespace/name")
    hub = option_group(publish, "Hub")
    hub.add_argument("--folder", default=None, help="write the Hub folder here (default: a temporary folder)")
    hub.add_argument("--token", default=None,
                     help="Hub token with write access (default: HF_TOKEN, or the login of `hf auth login`)")
    hub.add_argument("--private", action="store_true", help="create the repo as private (default: public)")
    hub.add_argument("--dry-run", action="store_true", help="only write the folder; upload nothing (default: off)")
    hub.add_argument("--revision", default=None, help="branch to commit to, created if missing (default: main)")
    hub.add_argument("--commit-message", default=None,
                     help="message of the Hub commit (default: one naming the package version)")
    publish.set_defaults(func=run_publish)


def parse_frame_list(text: str) -> list[int]:
    """`--window-boundaries 13,25`: video frame numbers."""
    try:
        return [int(part) for part in text.replace(" ", ",").split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected frame numbers separated by commas, got {text!r}") from None


def add_evaluate_parser(commands):
    from .workflow.settings import RESIZE_MODES

    evaluate = commands.add_parser(
        "evaluate", help="score an edit against its source without model weights: PSNR/SSIM (inside and outside a "
        "mask), flow-warp error, seam ratio at window boundaries (pip install 'cogvideox-ddim-inversion[evaluate]' "
        "for the flow-warp error)"
    )
    evaluate.add_argument("edit", help="the edited video file")
    evaluate.add_argument("source", help="the source video file (read at the edit's size and frame selection)")
    scores = option_group(evaluate, "scores")
    scores.add_argument("--mask", default=None,
                        help="mask video (white = may change): scores inside and outside it (default: none)")
    scores.add_argument("--window-boundaries", type=parse_frame_list, default=None, metavar="B,B,...",
                        help="video frames where temporal windows meet (the change from frame B - 1 to B): the seam "
                        "ratio there against the other frames (default: from --inversion, else none)")
    scores.add_argument("--inversion", default=None,
                        help="a saved inversion of a long clip: its windows give the boundaries (default: none)")
    scores.add_argument("--temporal-compression", type=int, default=None, metavar="N",
                        help="compare boundaries with the other latent-frame edges only (4 for CogVideoX; default: "
                        "every other frame)")
    scores.add_argument("--no-flow", dest="flow", action="store_false",
                        help="skip the flow-warp error (and OpenCV's optical flow; default: computed)")
    frames = option_group(evaluate, "source frames")
    frames.add_argument("--resize-mode", default="crop", choices=RESIZE_MODES,
                        help="how the edit fitted the source to its size (default: %(default)s)")
    frames.add_argument("--skip-frames-start", type=int, default=0, help="as the edit (default: %(default)s)")
    frames.add_argument("--frame-stride", type=int, default=1, help="as the edit (default: %(default)s)")
    option_group(evaluate, "outputs").add_argument("--output", default=None,
                                                    help="also write the scores to this JSON file (default: "
                                                    "printed only)")
    evaluate.set_defaults(func=run_evaluate)


def run_evaluate(args) -> dict:
    """`evaluate EDIT SOURCE`: `evaluate.evaluate_edit`'s scores, printed as JSON (and written to --output)."""
    import json

    from .evaluate import evaluate_edit

    for name, path in (("edit", args.edit), ("source", args.source), ("mask", args.mask),
                       ("inversion", args.inversion)):
        if path is not None and not os.path.isfile(path):
            raise FileNotFoundError(f"{name.capitalize()} file not found: {path!r}. Check the path.")
    boundaries = args.window_boundaries
    if boundaries is None and args.inversion is not None:
        from .cogvideox_ddim_output import CogVideoXDDIMInversionOutput
        from .cogvideox_ddim_windows import WindowSchedule

        recorded = CogVideoXDDIMInversionOutput.read_settings(args.inversion).get("windows")
        if recorded is None:
            raise ValueError(f"The inversion {args.inversion!r} is one window (no boundaries): pass "
                             "--window-boundaries, or leave both out.")
        boundaries = WindowSchedule.from_dict(recorded).video_boundaries(args.temporal_compression or 4)
    from .cogvideox_ddim_video_io import count_frames

    # the source's frames as the edit selected them: from the same start and stride, as many as the edit has
    read_options = {"skip_frames_start": args.skip_frames_start, "frame_stride": args.frame_stride,
                    "max_num_frames": count_frames(args.edit)}
    scores = evaluate_edit(args.edit, args.source, args.mask, boundaries, args.temporal_compression, args.flow,
                           args.resize_mode, **read_options)
    text = json.dumps(scores, indent=2)
    print(text)
    if args.output:
        from .cogvideox_ddim_files import atomic_write

        with atomic_write(args.output, suffix=".json") as partial, open(partial, "w") as file:
            file.write(text + "\n")
    return scores


def run_batch(args) -> int:
    from .batch import run_batch

    return run_batch(args)


# How each command names an option that differs from its flag in `edit` (invert saves with --output).
FLAG_OVERRIDES = {"invert": {"save_inversion": "--output"}}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is (as Ctrl+C raises KeyboardInterrupt) so that it unwinds the same way:
    temporary files and folders removed, the previous run kept; `main` exits 143."""


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def terminate_as_interrupt():
    """Handle SIGTERM like SIGINT while the block runs (main thread only: elsewhere signals cannot be handled)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv=None) -> int:
    from .workflow.quiet import quiet_known_warnings

    quiet_known_warnings()
    args = build_parser().parse_args(argv)
    try:
        with terminate_as_interrupt():
            outcome = args.func(args)
    except USER_ERRORS as error:  # a user's mistake: the message names the flag; anything else is a bug (traceback)
        overrides = FLAG_OVERRIDES.get(getattr(args, "command_name", None))
        print(f"error: {render_error(error, 'cli', overrides)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:  # Ctrl+C (SIGINT) or SIGTERM: no traceback; what was kept, when known
        stopped = "Terminated" if isinstance(error, Terminated) else "Interrupted"
        kept = getattr(error, "kept", None)  # set by `edit_video`
        print(f"{stopped}: {kept}." if kept else f"{stopped}.", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(error, Terminated) else signal.SIGINT)
    except Exception:  # a bug, not a mistake of the user's: keep its traceback, with one line of advice on top
        print("error: an unexpected failure (a bug in cogvideox-ddim-inversion, or in a library it uses); please "
              "report it with the traceback below.", file=sys.stderr)
        raise
    return outcome if type(outcome) is int else 0  # commands that decide their exit status return it


if __name__ == "__main__":
    sys.exit(main())
