"""Time `evaluate_edit` on a real clip: 49 frames at 720x480, with a mask and window boundaries (issue 26: < 10 s).

python benchmarks/evaluate_speed.py [--video ../shared/data/videos/horse.mp4] [--repeats 1]
"""

import argparse
import os
import time

import numpy as np

from cogvideox_ddim_inversion.cogvideox_ddim_video_io import read_video
from cogvideox_ddim_inversion.evaluate import evaluate_edit


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "videos", "horse.mp4")
    parser.add_argument("--video", default=default, help="a real clip (default: ../shared's horse.mp4)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    frames, _ = read_video(args.video, max_num_frames=49, height=480, width=720)
    source = np.stack([np.asarray(frame) for frame in frames])
    edit = np.clip(source.astype(np.int16) + 10, 0, 255).astype(np.uint8)
    mask = np.zeros(source.shape[:3], dtype=np.float32)
    mask[:, 120:360, 180:540] = 1
    for _ in range(args.repeats):
        start, cpu = time.perf_counter(), time.process_time()
        scores = evaluate_edit(edit, source, mask=mask, window_boundaries=[13, 37], temporal_compression=4)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        print(f"{len(source)} frames {source.shape[2]}x{source.shape[1]}: {wall:.2f} s wall, {cpu:.2f} s CPU time")
    print(scores)


if __name__ == "__main__":
    main()
