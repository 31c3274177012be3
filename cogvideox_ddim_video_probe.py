"""Probing and indexing video files with the ffmpeg binary imageio-ffmpeg ships: a file's header (`probe_video`: size,
rotation, frame rate, duration) and its frame list from the packets (`index_frames`, `count_frames`), nothing decoded
but where the timestamps are unusable. `cogvideox_ddim_video_io` reads frames with them (and re-exports them).

Imports no other module of the package (a leaf): the pipeline file imports it directly, so diffusers'
`custom_pipeline` loader ships it beside the pipeline.
"""

import os
import re
import subprocess
from dataclasses import dataclass

import imageio_ffmpeg
import numpy as np
from diffusers.utils import logging


logger = logging.get_logger(__name__)  # pylint: disable=invalid-name


@dataclass(frozen=True)
class VideoInfo:
    """What ffmpeg's header says about a file's first video stream.

    `height` x `width` is the size of the decoded frames, after the rotation in the file's display matrix (ffmpeg
    applies it while decoding: a portrait phone video is portrait here). `fps` is the average frame rate and
    `duration` the container's, in seconds; either is `None` when the header has none.
    """

    path: str
    height: int
    width: int
    fps: float | None
    duration: float | None
    rotation: int
    pixel_aspect_ratio: float
    codec: str

    @property
    def display_size(self) -> tuple[int, int]:
        """`(height, width)` as the video is shown: the width scaled by the pixel aspect ratio (anamorphic video)."""
        return self.height, round(self.width * self.pixel_aspect_ratio)


def _run_ffmpeg(arguments: list[str], stdout=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", *arguments]
    return subprocess.run(command, stdout=stdout, stderr=subprocess.PIPE, check=False)


def _ffmpeg_error(log: str) -> str:
    """The last meaningful line of an ffmpeg log, for error messages."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    useful = [line for line in lines if "At least one output file" not in line and not line.startswith("Exiting")]
    return (useful or lines or ["no output"])[-1]


def _check_file(path: str):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Video file not found: {path!r}. Check the path.")


def _rate(text: str) -> float:
    """A rate as ffmpeg prints it: "29.97", "30", "90k"."""
    return float(text[:-1]) * 1000 if text.endswith("k") else float(text)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read a video's size, frame rate, duration and rotation from ffmpeg's header output (no frame is decoded)."""
    path = os.fspath(path)
    _check_file(path)
    log = _run_ffmpeg(["-i", path]).stderr.decode(errors="replace")  # no output given: ffmpeg prints the header
    lines = log.splitlines()
    stream = next((i for i, line in enumerate(lines) if re.match(r"\s*Stream #\d+:\d+.*: Video: ", line)), None)
    if stream is None:
        reason = "it has no video stream" if "Input #0" in log else _ffmpeg_error(log)
        raise ValueError(
            f"Could not decode {path!r} as a video ({reason}). Pass a video file that ffmpeg can read, e.g. an MP4."
        )
    line = lines[stream]
    size = re.search(r" (\d+)x(\d+)[, \[]", line)
    if size is None:
        raise ValueError(f"Could not decode {path!r} as a video (no frame size in {line.strip()!r}).")
    width, height = int(size.group(1)), int(size.group(2))
    sar = re.search(r"\[SAR (\d+):(\d+) ", line)
    pixel_aspect_ratio = (
        int(sar.group(1)) / int(sar.group(2)) if sar and int(sar.group(2)) and int(sar.group(1)) else 1.0
    )
    fps = re.search(r" ([\d.]+k?) fps", line)
    fps = _rate(fps.group(1)) if fps else None
    rotation = 0
    for side in lines[stream + 1 :]:
        if re.match(r"\s*Stream #", side):
            break
        match = re.search(r"rotation of (-?[\d.]+) degrees", side)
        if match:
            rotation = round(float(match.group(1))) % 360
    if rotation in (90, 270):  # ffmpeg transposes while decoding
        width, height, pixel_aspect_ratio = height, width, 1 / pixel_aspect_ratio
    duration = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", log)
    duration = (
        int(duration.group(1)) * 3600 + int(duration.group(2)) * 60 + float(duration.group(3)) if duration else None
    )
    codec = line.split(" Video: ", 1)[1].split()[0].rstrip(",")
    return VideoInfo(
        path, height=height, width=width, fps=fps or None, duration=duration, rotation=rotation,
        pixel_aspect_ratio=pixel_aspect_ratio, codec=codec,
    )


@dataclass(frozen=True)
class FrameIndex:
    """Presentation times (seconds from the file's start, ascending) of a video's frames, and which are keyframes."""

    times: np.ndarray
    keyframes: np.ndarray  # sorted frame numbers of the keyframes

    def __len__(self) -> int:
        return len(self.times)

    def keyframe_before(self, frame: int) -> int:
        """The last keyframe at or before `frame` (where a seek to `frame` starts decoding)."""
        position = np.searchsorted(self.keyframes, frame, side="right") - 1
        return int(self.keyframes[position]) if position >= 0 else 0

    def seek_time(self, frame: int) -> float:
        """A time that input seeking lands on exactly `frame`: halfway between it and the frame before."""
        return float((self.times[frame - 1] + self.times[frame]) / 2) if frame > 0 else 0.0


def index_frames(path: str | os.PathLike) -> FrameIndex | None:
    """
    List a video's frames from its packets (a stream copy into ffmpeg's `framecrc` muxer: nothing is decoded).

    Returns `None` when the timestamps cannot place every frame (missing or repeated), where only decoding from the
    start numbers frames reliably.
    """
    path = os.fspath(path)
    result = _run_ffmpeg(
        ["-v", "error", "-i", path, "-map", "0:v:0", "-c", "copy", "-f", "framecrc", "-"], subprocess.PIPE
    )
    if result.returncode != 0:
        raise ValueError(
            f"Could not read the packets of {path!r} ({_ffmpeg_error(result.stderr.decode(errors='replace'))})."
        )
    time_base, times, keys = None, [], []
    for line in result.stdout.decode(errors="replace").splitlines():
        if line.startswith("#tb 0:"):
            numerator, denominator = line.split(":", 1)[1].strip().split("/")
            time_base = int(numerator) / int(denominator)
        elif line and not line.startswith("#"):
            fields = [field.strip() for field in line.split(",")]
            flags = next((int(field.split("=")[1], 16) for field in fields[6:] if field.startswith("F=")), 1)
            if flags & 4:  # AV_PKT_FLAG_DISCARD: decoded only to prime the decoder (edit lists), never shown
                continue
            times.append(int(fields[2]))
            keys.append(bool(flags & 1))
    if time_base is None or not times or min(times) <= -(2**62):  # no packets, or AV_NOPTS_VALUE
        return None
    order = np.argsort(np.asarray(times), kind="stable")
    times = np.asarray(times, dtype=np.float64)[order] * time_base
    if np.any(np.diff(times) <= 0):
        return None
    keyframes = np.flatnonzero(np.asarray(keys)[order])
    return FrameIndex(times=times, keyframes=keyframes)


def count_frames(path: str | os.PathLike) -> int:
    """The exact number of frames of a video: from its packet list, or by decoding it when that is unusable."""
    index = index_frames(path)
    return len(index) if index is not None else _decode_count(os.fspath(path))


def _decode_count(path: str) -> int:
    """Count frames by decoding them all (bounded memory: nothing is kept), for files whose timestamps are unusable."""
    logger.warning(f"{path!r} has no usable frame timestamps: counting its frames by decoding the whole file.")
    arguments = [
        "-v",
        "verbose",
        "-nostats",
        "-i",
        path,
        "-map",
        "0:v:0",
        "-fps_mode",
        "passthrough",
        "-f",
        "null",
        "-",
    ]
    log = _run_ffmpeg(arguments).stderr.decode(errors="replace")
    encoded = re.findall(r"Output stream #\d+:\d+ \(video\): (\d+) frames? encoded", log)
    if not encoded:
        raise ValueError(f"Could not decode {path!r} as a video ({_ffmpeg_error(log)}).")
    return int(encoded[-1])
