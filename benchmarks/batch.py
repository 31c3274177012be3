"""Wall time of `cogvideox-ddim-inversion batch` with 1 and 2 processes, measured in one run, and a throughput model
of batch editing at CogVideoX-5B's real size.

The measured part runs the test suite's 6-job batch (4 good jobs on 9-frame 64x96 clips, one unreadable video, one
bad option; a tiny random CogVideoX-5B checkpoint, 2 steps) on the CPU, each run into a fresh output folder, as
`accelerate launch --num_processes 1` and `accelerate launch --multi_gpu --num_processes 2` (one CPU thread per
process in both; without GPUs `--multi_gpu` is what starts several processes), plus a plain process with torch's
default threads. Runs alternate (1, 2, plain, 1, 2, plain, ...) so that load from other programs falls on each alike.
Times include starting Python, importing torch and diffusers and loading the checkpoint in every process.

The model part is arithmetic, not a measurement: FLOPs per step from torch's FlopCounterMode on the real
CogVideoX-5B configuration (the figures of issue 14) divided by a GPU's dense bf16 peak at a stated utilisation.

Usage: python benchmarks/batch.py [--repeats 2] [--utilisation 0.5]
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


# TFLOP of one step at 720x480, 49 frames (17,550 video tokens), counted with torch's FlopCounterMode on the real
# CogVideoX-5B configuration on the meta device (issue 14): an inversion step at guidance 1 (one transformer row)
# and a shared-mode edit step for one prompt (conditional, unconditional and the shared reference row).
INVERSION_TFLOP_PER_STEP = 332
SHARED_EDIT_TFLOP_PER_STEP = 1323
# Dense bf16 tensor-core peaks from the vendors' data sheets (TFLOP/s, without sparsity).
GPU_PEAK_TFLOPS = {"H100 SXM / H200": 989, "A100": 312}


def write_jobs(root: Path) -> Path:
    from cogvideox_ddim_inversion.testing.sample_clip import write_sample_clip

    clips = root / "clips"
    write_sample_clip(clips / "a.mp4", num_frames=9)
    write_sample_clip(clips / "b.mp4", num_frames=13)
    (clips / "broken.mp4").write_text("not a video")
    jobs = [
        {"video": "clips/a.mp4", "source_prompt": "a red circle", "prompts": ["a blue circle", "a green circle"]},
        {"video": "clips/b.mp4", "prompts": "a cat"},
        {"id": "broken", "video": "clips/broken.mp4", "prompts": ["a dog"]},
        {"id": "a-seed-3", "video": "clips/a.mp4", "prompts": ["a dog"], "seed": 3, "reconstruction": True},
        {"id": "bad-strength", "video": "clips/b.mp4", "prompts": ["a dog"], "strength": 1.5},
        {"id": "b-late", "video": "clips/b.mp4", "prompts": ["a dog"], "skip_frames_start": 4, "save_inversion": True},
    ]
    path = root / "jobs.jsonl"
    path.write_text("".join(json.dumps(job) + "\n" for job in jobs))
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def command(kind: str, jobs: Path, out: Path, model: str) -> list[str]:
    batch = ["-m", "cogvideox_ddim_inversion.cli", "batch", str(jobs), "--output-dir", str(out), "--model", model,
             "--steps", "2"]
    if kind == "plain":
        return [sys.executable, *batch]
    processes = int(kind)
    launch = [str(Path(sys.executable).with_name("accelerate")), "launch", "--num_processes", str(processes),
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--num_cpu_threads_per_process", "1", "--main_process_port", str(free_port())]
    return launch + (["--multi_gpu"] if processes > 1 else []) + batch


def measure(repeats: int) -> dict[str, list[float]]:
    from cogvideox_ddim_inversion.testing.tiny_checkpoint import write_tiny_checkpoint

    root = Path(tempfile.mkdtemp(prefix="batch-benchmark-"))
    model = write_tiny_checkpoint(root / "checkpoint", variant="cogvideox-5b")
    jobs = write_jobs(root)
    runs = {"1": [], "2": [], "plain": []}
    for repeat in range(repeats):
        for kind in runs:
            out = root / f"out-{kind}-{repeat}"
            load = os.getloadavg()[0]
            started = time.perf_counter()
            run = subprocess.run(command(kind, jobs, out, model), capture_output=True, text=True, check=False)
            seconds = time.perf_counter() - started
            if "6 jobs: 4 done, 0 skipped" not in run.stdout:
                sys.exit(f"run {kind} did not finish its jobs:\n{run.stdout}\n{run.stderr[-3000:]}")
            manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
            busy = {}
            for row in manifest:  # seconds each process spent in its jobs (the first job includes the model load)
                busy[row["process_index"]] = busy.get(row["process_index"], 0) + row["seconds"]
            runs[kind].append({"wall": seconds, "busiest": max(busy.values()), "load": load})
            print(f"{kind:>5} process(es), run {repeat + 1}: {seconds:.1f} s (busiest process "
                  f"{max(busy.values()):.1f} s in jobs; load average {load:.1f})", file=sys.stderr)
    print(f"command (2 processes): {' '.join(command('2', jobs, root / 'out', model))}", file=sys.stderr)
    return runs


def print_measured(runs: dict[str, list[dict]]):
    labels = {"1": "accelerate launch, 1 process (1 thread)", "2": "accelerate launch, 2 processes (1 thread each)",
              "plain": "plain process (torch's default threads)"}
    print(f"6-job batch on this machine's {os.cpu_count()} CPU cores (4 jobs done, 2 failed):\n")
    print("| run | wall s (each run) | of which the busiest process in jobs, s | 1-min load average before each "
          "| fastest wall s | speed-up over 1 process |")
    print("|---|---|---|---|---|---|")
    fastest = {kind: min(run["wall"] for run in kind_runs) for kind, kind_runs in runs.items()}
    for kind, label in labels.items():
        walls, busiest, loads = (", ".join(f"{run[name]:.1f}" for run in runs[kind])
                                 for name in ("wall", "busiest", "load"))
        print(f"| {label} | {walls} | {busiest} | {loads} | {fastest[kind]:.1f} | "
              f"{fastest['1'] / fastest[kind]:.2f} |")


def print_model(utilisation: float, steps: int = 50):
    job_tflop = steps * (INVERSION_TFLOP_PER_STEP + SHARED_EDIT_TFLOP_PER_STEP)
    print(f"\nThroughput MODEL (not a measurement): CogVideoX-5B, 49 frames at 720x480, {steps} inversion + {steps} "
          f"shared edit steps for one prompt = {job_tflop:,} TFLOP per job; transformer FLOPs only (VAE, text "
          "encoder, video decoding and the model load are left out).\n")
    print("| GPU | bf16 peak TFLOP/s | utilisation | s per job | jobs per hour per GPU | 1,000 jobs on 1 GPU | "
          "on 8 GPUs |")
    print("|---|---|---|---|---|---|---|")
    for gpu, peak in GPU_PEAK_TFLOPS.items():
        for fraction in sorted({utilisation, 0.3}):
            seconds = job_tflop / (peak * fraction)
            hours = 1000 * seconds / 3600
            print(f"| {gpu} | {peak} | {fraction:.0%} | {seconds:.0f} | {3600 / seconds:.1f} | {hours:.1f} h | "
                  f"{hours / 8:.1f} h |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--utilisation", type=float, default=0.5, help="assumed fraction of the bf16 peak")
    parser.add_argument("--model-only", action="store_true", help="print the throughput model only")
    args = parser.parse_args()
    if not args.model_only:
        print_measured(measure(args.repeats))
    print_model(args.utilisation)


if __name__ == "__main__":
    main()
