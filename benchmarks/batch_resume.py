"""Time to resume a batch whose jobs are all finished: `batch JOBS --output-dir OUT` over N jobs (default 10,000),
each with its own video file, whose output folders already hold a finished job (job.json with the settings hash the
run computes, and its listed outputs) and a manifest from the earlier run. No weights load: every job is skipped.

The jobs' folders and records are made by this script (fake outputs: a few bytes each), with the settings hash from
the same functions batch uses (`job_settings`, `settings_hash`), so the run must skip them all. The checkpoint is a
tiny random one (its config is read; its weights never load). Target (issue 33.8): under 60 s for 10,000 jobs.

Usage: PYTHONPATH=... python benchmarks/batch_resume.py [--jobs 10000] [--keep DIR]
"""

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time


def make_finished_batch(root: str, count: int, checkpoint: str, clip: str) -> tuple[str, list[str]]:
    """Write `root`/jobs.jsonl (`count` jobs, each its own copy of `clip`) and `root`/out with every job finished
    (fake outputs, job.json with the hash batch computes) and a manifest. Returns the jobs file and the batch flags."""
    from cogvideox_ddim_inversion.batch import JOB_RECORD
    from cogvideox_ddim_inversion.cli import build_parser
    from cogvideox_ddim_inversion.workflow.flags import model_and_edit_settings
    from cogvideox_ddim_inversion.workflow.jobs import job_settings, read_jobs, settings_hash

    videos = os.path.join(root, "videos")
    os.makedirs(videos, exist_ok=True)
    jobs_path = os.path.join(root, "jobs.jsonl")
    with open(jobs_path, "w") as file:
        for index in range(count):
            video = os.path.join(videos, f"clip-{index:05d}.mp4")
            if not os.path.exists(video):
                shutil.copyfile(clip, video)  # each job its own file: no digest is shared between jobs
            file.write(json.dumps({"id": f"job-{index:05d}", "video": f"videos/clip-{index:05d}.mp4",
                                   "prompts": ["a blue circle"], "steps": 2}) + "\n")
    out = os.path.join(root, "out")
    flags = ["--output-dir", out, "--model", checkpoint, "--device", "cpu", "--dtype", "fp32"]
    model_settings, defaults = model_and_edit_settings(build_parser().parse_args(["batch", jobs_path, *flags]))
    manifest = []
    for job in read_jobs(jobs_path):
        digest = settings_hash(job_settings(job, defaults, root), model_settings.model, "float32",
                               model_settings.output_options())
        folder = os.path.join(out, job.id)
        os.makedirs(folder, exist_ok=True)
        outputs = {"edit-1": "edit-1.mp4", "side_by_side": "side_by_side.mp4", "run": "run.json"}
        for name in outputs.values():
            with open(os.path.join(folder, name), "w") as output:
                output.write("fake")
        with open(os.path.join(folder, JOB_RECORD), "w") as record:
            json.dump({"id": job.id, "status": "done", "settings_hash": digest, "outputs": outputs}, record)
        manifest.append({"id": job.id, "line": job.line, "status": "done", "settings_hash": digest,
                         "outputs": {name: f"{job.id}/{path}" for name, path in outputs.items()}})
    with open(os.path.join(out, "manifest.jsonl"), "w") as file:
        file.writelines(json.dumps(row) + "\n" for row in manifest)
    return jobs_path, flags


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--keep", help="make the batch in this folder and keep it (default: a temporary folder)")
    args = parser.parse_args(argv)

    from cogvideox_ddim_inversion.cli import main as cli_main
    from cogvideox_ddim_inversion.testing.sample_clip import write_sample_clip
    from cogvideox_ddim_inversion.testing.tiny_checkpoint import write_tiny_checkpoint

    root = args.keep or tempfile.mkdtemp(prefix="batch-resume-")
    os.makedirs(root, exist_ok=True)
    checkpoint = write_tiny_checkpoint(os.path.join(root, "checkpoint"))
    clip = write_sample_clip(os.path.join(root, "clip.mp4"), num_frames=9)
    started = time.perf_counter()
    jobs_path, flags = make_finished_batch(root, args.jobs, checkpoint, clip)
    print(f"made {args.jobs} finished jobs in {root} ({time.perf_counter() - started:.1f} s)", flush=True)

    stdout = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()):
        status = cli_main(["batch", jobs_path, *flags])
    seconds = time.perf_counter() - started
    summary = stdout.getvalue().strip().splitlines()[0] if stdout.getvalue().strip() else ""
    print(summary)
    expected = f"{args.jobs} jobs: 0 done, {args.jobs} skipped"
    print(f"resume of {args.jobs} finished jobs: {seconds:.2f} s ({1000 * seconds / args.jobs:.2f} ms per job); "
          f"target under 60 s: {'met' if seconds < 60 and status == 0 and summary.startswith(expected) else 'NOT met'}")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if status == 0 and summary.startswith(expected) else 1


if __name__ == "__main__":
    sys.exit(main())
