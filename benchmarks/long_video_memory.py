"""Peak resident memory of the `cogvideox-ddim-inversion edit` command on long clips, against what the clip adds.

For each length (`--seconds`, default 20 and 60) the script writes a 720x480 clip at 8 fps of `seconds x 8 + 1`
frames (161 and 481: a moving gradient and a bouncing square, with imageio-ffmpeg's ffmpeg), then runs the real
console command on it in a fresh process: `edit CLIP --num-frames all` (every frame at the clip's rate, trimmed to
8k + 1) on a tiny random checkpoint (testing/tiny_checkpoint.py: windows of 3 latent frames), `--steps 2`, at
`--height`/`--width` (default 160x240, so that the frames weigh something beside the process's fixed cost). The peak
RSS is the process's own `ru_maxrss` from `os.wait4` (its ffmpeg children included where larger).

Windows bound the model's working memory by the window, so two clips should differ only by what scales with the
clip: the decoded frames at the pipeline's size and the latents with their trajectory. The table gives each term
for one copy (frames as float32 and as uint8, latents and the trajectory of `--steps` in float32) and compares the
measured difference between consecutive clips with frames (float32) + latents + trajectory.

Usage:
  python benchmarks/long_video_memory.py                           # 20 s and 60 s clips, markdown table
  python benchmarks/long_video_memory.py --seconds 6 20 60 --json long_video_memory.json
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import imageio_ffmpeg


FPS = 8
SOURCE_SIZE = (480, 720)  # height, width of the generated clips
LATENT_CHANNELS, SPATIAL_COMPRESSION, TEMPORAL_COMPRESSION = 16, 8, 4
FLOAT32 = 4


def write_clip(path: Path, frames: int, height: int, width: int):
    """`frames` frames at 8 fps: ffmpeg's moving test gradient with a square bouncing across it (H.264)."""
    source = (f"testsrc2=size={width}x{height}:rate={FPS},"
              f"drawbox=x='mod(t*160,{width - 64})':y='abs(mod(t*90,{2 * (height - 64)})-{height - 64})':"
              "w=64:h=64:color=red:t=fill")
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", source, "-frames:v", str(frames), "-pix_fmt", "yuv420p", "-c:v", "libx264", str(path)],
                   check=True)


def command_line() -> list[str]:
    """The installed console command, or the same entry point through this Python where it is not on PATH."""
    console = shutil.which("cogvideox-ddim-inversion")
    return [console] if console else [sys.executable, "-m", "cogvideox_ddim_inversion.cli"]


def peak_rss_of(command: list[str], log: Path) -> tuple[int, float]:
    """Run `command`; its exit status and peak resident memory in MiB (`ru_maxrss` of this child, from wait4)."""
    with open(log, "w") as file:
        process = subprocess.Popen(command, stdout=file, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_maxrss / 1024  # KiB on Linux


def expected_bytes(frames: int, height: int, width: int, steps: int) -> dict:
    """What a clip of `frames` holds that scales with its length, one copy each."""
    latent_frames = (frames - 1) // TEMPORAL_COMPRESSION + 1
    latent = latent_frames * LATENT_CHANNELS * (height // SPATIAL_COMPRESSION) * (width // SPATIAL_COMPRESSION)
    return {
        "frames_float32": frames * height * width * 3 * FLOAT32,
        "frames_uint8": frames * height * width * 3,
        "latents_float32": latent * FLOAT32,
        "trajectory_float32": steps * latent * FLOAT32,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", nargs="+", type=int, default=[20, 60], help="clip lengths at 8 fps")
    parser.add_argument("--height", type=int, default=160)
    parser.add_argument("--width", type=int, default=240)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--model", default=None, help="checkpoint (default: a tiny random one, written to a temp dir)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--keep", default=None, help="keep the clips and outputs in this folder")
    args = parser.parse_args()
    if sorted(args.seconds) != args.seconds or len(set(args.seconds)) != len(args.seconds) or args.seconds[0] < 1:
        parser.error("--seconds: pass increasing positive lengths, e.g. 20 60.")
    if args.height % 16 or args.width % 16:
        parser.error("--height/--width must be multiples of 16.")

    work = Path(args.keep or tempfile.mkdtemp(prefix="long-video-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    model = args.model
    if model is None:
        from cogvideox_ddim_inversion.testing.tiny_checkpoint import write_tiny_checkpoint

        model = write_tiny_checkpoint(work / "tiny-cogvideox-5b")
    results = []
    try:
        for seconds in args.seconds:
            frames = seconds * FPS + 1
            clip = work / f"clip-{seconds}s.mp4"
            write_clip(clip, frames, *SOURCE_SIZE)
            out = work / f"out-{seconds}s"
            command = [*command_line(), "edit", str(clip), "--prompt", "a blue square", "--model", str(model),
                       "--device", "cpu", "--steps", str(args.steps), "--num-frames", "all", "--height",
                       str(args.height), "--width", str(args.width), "--output-dir", str(out)]
            code, peak = peak_rss_of(command, work / f"log-{seconds}s.txt")
            if code != 0:
                sys.exit(f"{' '.join(command)} failed ({code}):\n{(work / f'log-{seconds}s.txt').read_text()[-3000:]}")
            run = json.loads((out / "run.json").read_text())
            windows = run["inversion"]["windows"]
            results.append({
                "seconds": seconds,
                "frames": run["inversion"]["num_frames"],
                "latent_frames": windows["latent_frames"] if windows else (frames - 1) // TEMPORAL_COMPRESSION + 1,
                "windows": len(windows["starts"]) if windows else 1,
                "window": windows["window"] if windows else None,
                "peak_rss_mib": peak,
                "expected_bytes": expected_bytes(run["inversion"]["num_frames"], args.height, args.width, args.steps),
            })
            print(f"[{seconds} s] peak RSS {peak:.0f} MiB", file=sys.stderr, flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)

    mib = 2**20
    print(f"Peak RSS of `cogvideox-ddim-inversion edit CLIP --num-frames all --steps {args.steps} --height "
          f"{args.height} --width {args.width} --device cpu` (tiny random checkpoint, windows of "
          f"{results[0]['window']} latent frames), 720x480 clips at 8 fps; one copy of each term, float32:\n")
    print("| clip | frames | latent frames | windows | peak RSS MiB | frames MiB (uint8) | latents + trajectory MiB "
          "| difference from the previous clip: measured MiB | expected (frames + latents + trajectory) MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    previous = None
    for r in results:
        e = r["expected_bytes"]
        scaling = e["frames_float32"] + e["latents_float32"] + e["trajectory_float32"]
        if previous is None:
            measured = expected = "-"
        else:
            p = previous["expected_bytes"]
            measured = f"{r['peak_rss_mib'] - previous['peak_rss_mib']:.0f}"
            expected = f"{(scaling - p['frames_float32'] - p['latents_float32'] - p['trajectory_float32']) / mib:.0f}"
        print(f"| {r['seconds']} s | {r['frames']} | {r['latent_frames']} | {r['windows']} | {r['peak_rss_mib']:.0f} "
              f"| {e['frames_float32'] / mib:.0f} ({e['frames_uint8'] / mib:.0f}) | "
              f"{(e['latents_float32'] + e['trajectory_float32']) / mib:.1f} | {measured} | {expected} |")
        previous = r
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"command": " ".join(sys.argv), "results": results}, file, indent=1)


if __name__ == "__main__":
    main()
