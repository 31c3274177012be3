"""A small synthetic clip (a disc moving over a gradient), so the demo and tests need no downloaded video."""

import numpy as np

from ..video_io import write_video


def sample_clip_frames(num_frames: int = 17, height: int = 64, width: int = 96) -> list[np.ndarray]:
    """RGB uint8 frames of a red disc moving left to right over a blue-green vertical gradient."""
    rows, cols = np.mgrid[0:height, 0:width]
    background = np.stack(
        [np.full((height, width), 30.0), 60 + 120 * rows / height, 200 - 100 * rows / height], axis=-1
    )
    radius = height / 5
    frames = []
    for index in range(num_frames):
        center_x = radius + (width - 2 * radius) * index / max(num_frames - 1, 1)
        disc = (cols - center_x) ** 2 + (rows - height / 2) ** 2 <= radius**2
        frame = background.copy()
        frame[disc] = (220, 40, 40)
        frames.append(frame.astype(np.uint8))
    return frames


def write_sample_clip(path, num_frames: int = 17, height: int = 64, width: int = 96, fps: float = 8.0) -> str:
    """Write the sample clip as an MP4 and return its path."""
    return write_video(sample_clip_frames(num_frames, height, width), path, fps=fps)
