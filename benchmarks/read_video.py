"""Time and peak memory of reading 49 frames from long 1080p clips, before and after the streaming reader.

Clips: generated 1080p H.264 at 30 fps (ffmpeg's moving `testsrc2` pattern, about 13 Mbit/s, a keyframe every
second), 2 s, 60 s and 5 minutes long (`testing/generated_clips.write_long_clip`: a 10 s segment repeated by stream
copy). Reads of 49 frames: from the start, from the middle (a centred window) and spread over the whole clip.

- before: the reader of commit 7d5b160 (reproduced below): it decoded the whole file into memory, then selected.
  "Spread" is its nearest equivalent, `frame_stride = frames // 49`. It stops at `--before-cap-gib` of decoded frames
  (this machine has 24 GiB, shared) and then shows `>`: the time and memory it had used when it was stopped.
- after: `read_video_frames` at the source size, and with `height=480, width=720` (ffmpeg resizes while decoding).

Each measurement runs in its own process, so that its peak resident memory (`ru_maxrss`) is its own; "+read" is that
peak minus the process's memory after its imports (torch and diffusers), i.e. what reading added. CPU time counts
this process and its ffmpeg children. ffmpeg's own memory is not in the table (`ru_maxrss` of children counts the
Python image they are forked from); measure it with e.g. `/usr/bin/time -f %M` on the ffmpeg command.

Usage: python benchmarks/read_video.py [--clips-dir DIR] [--lengths 2 60 300] [--before-cap-gib 4]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time


READS = ("start", "middle", "spread")
NUM_FRAMES = 49


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (ffmpeg)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def read_video_before(path, skip_frames_start=0, frame_stride=1, max_num_frames=None, cap_bytes=None):
    """The reader of commit 7d5b160 (whole-file decode, then select), stopping once it holds `cap_bytes`."""
    import imageio_ffmpeg
    import numpy as np
    import PIL.Image

    from cogvideox_ddim_inversion.video_io import select_frame_indices

    reader = imageio_ffmpeg.read_frames(path)
    meta = next(reader)
    width, height = meta["size"]
    frames = []
    for raw in reader:
        frames.append(np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3))
        if cap_bytes is not None and len(frames) * width * height * 3 >= cap_bytes:
            reader.close()
            return None, len(frames)  # stopped by the cap
    indices = select_frame_indices(len(frames), skip_frames_start, 0, frame_stride, max_num_frames)
    fps = float(meta.get("fps") or 8.0) / frame_stride
    return [PIL.Image.fromarray(frames[i]) for i in indices], fps


def run_one(path, read, method, cap_gib):
    """One measurement in this process; prints a JSON line."""
    from cogvideox_ddim_inversion.video_io import count_frames, read_video_frames

    total = count_frames(path)  # outside the timed part: "before" needs it for its stride, "middle" for its start
    baseline = rss_mib()
    skip = (total - NUM_FRAMES) // 2 if read == "middle" else 0
    cpu_start = cpu_seconds()
    start = time.perf_counter()
    capped_at, decoded = None, None
    if method == "before":
        stride = max(1, total // NUM_FRAMES) if read == "spread" else 1
        frames, fps = read_video_before(path, skip, stride, NUM_FRAMES, cap_bytes=int(cap_gib * 2**30))
        if frames is None:
            capped_at = fps
        decoded = capped_at or total
    else:
        size = {"after": {}, "after 720x480": {"height": 480, "width": 720}}[method]
        sampling = {"sampling": "spread"} if read == "spread" else {}
        result = read_video_frames(path, skip_frames_start=skip, max_num_frames=NUM_FRAMES, **size, **sampling)
        decoded = result.frames_decoded
    elapsed = time.perf_counter() - start
    cpu = cpu_seconds() - cpu_start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "seconds": elapsed,
                "cpu_seconds": cpu,
                "peak_rss_mib": peak,
                "added_mib": peak - baseline,
                "frames_decoded": decoded,
                "total_frames": total,
                "capped_at": capped_at,
            }
        )
    )


def measure(path, read, method, cap_gib):
    command = [sys.executable, __file__, "--one", path, read, method, "--before-cap-gib", str(cap_gib)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def make_clips(directory, lengths):
    from cogvideox_ddim_inversion.testing.generated_clips import write_long_clip

    os.makedirs(directory, exist_ok=True)
    paths = {}
    for seconds in lengths:
        path = os.path.join(directory, f"testsrc2_1080p_{seconds}s.mp4")
        if not os.path.exists(path):
            print(f"generating {path} ...", file=sys.stderr)
            write_long_clip(path, seconds, segment_seconds=min(10, seconds), background="testsrc2")
        paths[seconds] = path
    return paths


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips-dir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "read_video_bench"))
    parser.add_argument("--lengths", type=int, nargs="+", default=[2, 60, 300], help="clip lengths in seconds")
    parser.add_argument("--before-cap-gib", type=float, default=4.0)
    parser.add_argument("--one", nargs=3, metavar=("PATH", "READ", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(*args.one, args.before_cap_gib)
        return

    clips = make_clips(args.clips_dir, args.lengths)
    print(f"load average before the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", file=sys.stderr)
    results = {}
    for seconds, path in clips.items():
        for read in READS:
            for method in ("before", "after", "after 720x480"):
                results[seconds, read, method] = result = measure(path, read, method, args.before_cap_gib)
                print(seconds, read, method, result, file=sys.stderr)

    def cell(result):
        capped = ">" if result["capped_at"] else ""
        return (
            f"{capped}{result['seconds']:.2f} ({capped}{result['cpu_seconds']:.2f}) | "
            f"{capped}{result['peak_rss_mib']:.0f} (+{result['added_mib']:.0f})"
        )

    print(
        "| clip | read | before: s (CPU s) | before: peak RSS MiB (+read) | after: s (CPU s) | "
        "after: peak RSS MiB (+read) | after: frames decoded | after, 720x480: s (CPU s) | "
        "after, 720x480: peak RSS MiB (+read) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for seconds in clips:
        for read in READS:
            before, after, small = (results[seconds, read, m] for m in ("before", "after", "after 720x480"))
            print(
                f"| {seconds} s ({after['total_frames']} frames) | {read} | {cell(before)} | {cell(after)} | "
                f"{after['frames_decoded']} | {cell(small)} |"
            )
    shortest = min(clips)
    for seconds in clips:
        for method in ("after", "after 720x480"):
            ratio = results[seconds, "start", method]["seconds"] / results[shortest, "start", method]["seconds"]
            print(f"{method}, from the start: {seconds} s clip / {shortest} s clip = {ratio:.2f}x time")
    for seconds in clips:
        capped = results[seconds, "start", "before"]["capped_at"]
        if capped:
            need = results[seconds, "start", "after"]["total_frames"] * 1920 * 1080 * 3 / 2**30
            print(
                f"before, {seconds} s clip: stopped at the {args.before_cap_gib:g} GiB cap after {capped} frames; "
                f"the whole clip would hold {need:.1f} GiB of frames"
            )


if __name__ == "__main__":
    main()
