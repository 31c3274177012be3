"""Clips generated with the ffmpeg binary imageio-ffmpeg ships, for tests and benchmarks of video reading.

Numbered clips draw each frame's number in binary (a row of black or white boxes near the centre), so a test can
tell which source frame a decoded frame is, after lossy encoding and after resizing. Long clips repeat an encoded
segment by stream copy (`-stream_loop`), so a 5-minute 1080p clip takes seconds to make; their frames are numbered
within the segment.
"""

import os
import subprocess

import imageio_ffmpeg
import numpy as np

from ..video_io import resize_geometry


NUMBER_BITS = 14  # frame numbers up to 16383 (9000 frames = 5 minutes at 30 fps)
_COLUMNS = 7


def _box_layout(width: int, height: int) -> tuple[int, int, int]:
    """Box side and the top-left corner of the 7 x 2 grid of number boxes, centred (it survives a centre crop)."""
    box = max(4, min(width // 10, height // 4))
    return box, (width - _COLUMNS * box) // 2, (height - 2 * box) // 2


def _number_filters(width: int, height: int) -> str:
    box, left, top = _box_layout(width, height)
    filters = []
    for bit in range(NUMBER_BITS):
        x, y = left + (bit % _COLUMNS) * box, top + (bit // _COLUMNS) * box
        filters.append(f"drawbox=x={x}:y={y}:w={box}:h={box}:color=black:t=fill")
        filters.append(f"drawbox=x={x}:y={y}:w={box}:h={box}:color=white:t=fill:enable='mod(floor(n/{1 << bit}),2)'")
    return ",".join(filters)


def frame_number(frame, source_size: tuple[int, int] | None = None, resize_mode: str = "crop") -> int:
    """
    The number drawn on a frame of a numbered clip (PIL image or `[H, W, 3]` array).

    `source_size` (width, height) is the clip's size when the frame was resized from it with `resize_mode`.
    """
    frame = np.asarray(frame)
    height, width = frame.shape[:2]
    source_width, source_height = source_size or (width, height)
    box, left, top = _box_layout(source_width, source_height)
    geometry = resize_geometry(source_height, source_width, height, width, resize_mode)
    scale_y, scale_x = geometry.scaled_height / source_height, geometry.scaled_width / source_width
    shift_y, shift_x = (-geometry.top, -geometry.left) if resize_mode == "crop" else (geometry.top, geometry.left)
    number = 0
    for bit in range(NUMBER_BITS):
        x = (left + (bit % _COLUMNS + 0.5) * box) * scale_x + shift_x
        y = (top + (bit // _COLUMNS + 0.5) * box) * scale_y + shift_y
        number |= int(frame[int(y), int(x)].mean() > 128) << bit
    return number


def _ffmpeg(*arguments: str):
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *arguments], check=True)


def write_numbered_clip(
    path: str | os.PathLike,
    num_frames: int,
    width: int = 128,
    height: int = 64,
    fps: int = 30,
    keyframe_interval: int = 25,
    background: str = "gray",
    variable_frame_rate: bool = False,
    preset: str = "veryfast",
) -> str:
    """
    An H.264 MP4 of `num_frames` numbered frames (`frame_number`), a keyframe every `keyframe_interval` frames at
    most, with B-frames (`preset="veryfast"`). `background` is an ffmpeg colour, or "testsrc2" for its moving test
    pattern (a realistic bitrate). `variable_frame_rate=True` shifts every third frame by 0.6 of a frame interval.
    """
    path = os.fspath(path)
    size = f"{width}x{height}"
    if background == "testsrc2":
        source = f"testsrc2=s={size}:r={fps}:d={num_frames / fps}"
    else:
        source = f"color=c={background}:s={size}:r={fps}:d={num_frames / fps}"
    chain = [source, _number_filters(width, height)]
    output = []
    if variable_frame_rate:
        chain.append(f"settb=1/1000,setpts='(N+0.6*eq(mod(N,3),2))/{fps}/TB'")
        output = ["-fps_mode", "vfr"]
    _ffmpeg(
        "-f", "lavfi", "-i", ",".join(chain), "-frames:v", str(num_frames), "-c:v", "libx264", "-preset", preset,
        "-g", str(keyframe_interval), "-pix_fmt", "yuv420p", *output, path,
    )  # fmt: skip
    return path


def write_long_clip(
    path: str | os.PathLike,
    seconds: float,
    width: int = 1920,
    height: int = 1080,
    fps: int = 30,
    segment_seconds: int = 2,
    keyframe_interval: int = 30,
    background: str = "gray",
) -> str:
    """
    A `seconds`-long numbered clip made of one encoded `segment_seconds` segment repeated by stream copy: frame `i`
    shows `i % (segment_seconds * fps)`. The segment is encoded with x264's ultrafast preset (no B-frames).
    """
    path = os.fspath(path)
    segment_frames = segment_seconds * fps
    segment = f"{path}.segment.mp4"
    write_numbered_clip(segment, segment_frames, width, height, fps, keyframe_interval, background, preset="ultrafast")
    try:
        repeats = -(-round(seconds * fps) // segment_frames)
        _ffmpeg("-stream_loop", str(repeats - 1), "-i", segment, "-c", "copy", path)
    finally:
        os.remove(segment)
    return path


def write_circle_clip(path: str | os.PathLike, width: int, height: int, num_frames: int = 9, fps: int = 8) -> str:
    """A clip of a white circle (diameter a third of the shorter side) centred on a gray background."""
    radius = min(width, height) / 6
    circle = f"geq=lum='if(lt(hypot(X-{width / 2},Y-{height / 2}),{radius}),235,100)':cb=128:cr=128"
    source = f"color=c=gray:s={width}x{height}:r={fps}:d={num_frames / fps}"
    _ffmpeg(
        "-f", "lavfi", "-i", f"{source},{circle}", "-frames:v", str(num_frames), "-c:v", "libx264", "-crf", "10",
        "-pix_fmt", "yuv420p", os.fspath(path),
    )  # fmt: skip
    return os.fspath(path)


def circle_aspect(frame, threshold: float = 170) -> float:
    """Width over height of the bright circle's bounding box in a frame (`[H, W, 3]` uint8, or PIL)."""
    rows, columns = np.nonzero(np.asarray(frame)[..., 0] > threshold)
    return (columns.max() - columns.min() + 1) / (rows.max() - rows.min() + 1)


# ------------------------------------------------------------------ long real-looking clips (no file needed)


def procedural_texture(height: int, width: int, seed: int = 0, octaves: int = 5) -> np.ndarray:
    """A colourful natural-looking image `[H, W, 3]` float32 in [0, 1]: fractal value noise (octaves of random grids,
    each twice as fine and half as strong, bilinearly upsampled), the same for the same seed on every machine."""
    import torch
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(seed)
    image = torch.zeros(1, 3, height, width, dtype=torch.float64)
    for octave in range(octaves):
        cells = 4 * 2**octave
        grid = torch.rand(1, 3, cells, cells, generator=generator, dtype=torch.float64)
        image += F.interpolate(grid, size=(height, width), mode="bilinear", align_corners=True) / 2**octave
    image = (image - image.amin(dim=(2, 3), keepdim=True)) / (image.amax(dim=(2, 3), keepdim=True) - image.amin(
        dim=(2, 3), keepdim=True))
    return image[0].permute(1, 2, 0).float().numpy()


def pan_over(image: np.ndarray, num_frames: int, size: int, crop: float = 0.5, zoom: float = 1.0) -> np.ndarray:
    """`[F, size, size, 3]` uint8: a square camera window (`crop` of the image's shorter side) panning steadily from
    the left edge to the right edge of `image` (`[H, W, 3]`, floats in [0, 1] or uint8) along its middle, its side
    shrinking by the factor `zoom` over the clip (a slow zoom in), bilinearly resampled (sub-pixel steps)."""
    import torch
    import torch.nn.functional as F

    image = np.asarray(image)
    image = image.astype(np.float32) / 255 if image.dtype == np.uint8 else image.astype(np.float32)
    height, width = image.shape[:2]
    frames = []
    source = torch.from_numpy(image).permute(2, 0, 1)[None]
    for index in range(num_frames):
        progress = index / max(num_frames - 1, 1)
        side = crop * min(height, width) / (1 + (zoom - 1) * progress)
        centre_x = side / 2 + progress * (width - side)
        # grid_sample's coordinates: -1 and 1 are the image's outer edges (align_corners=False)
        xs = (centre_x + (torch.arange(size) + 0.5 - size / 2) * side / size) / width * 2 - 1
        ys = (height / 2 + (torch.arange(size) + 0.5 - size / 2) * side / size) / height * 2 - 1
        grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1)[None]
        frames.append(F.grid_sample(source, grid.float(), mode="bilinear", align_corners=False)[0])
    video = torch.stack(frames).permute(0, 2, 3, 1).numpy()
    return np.clip(video * 255, 0, 255).round().astype(np.uint8)


def textured_pan_clip(num_frames: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """A long real-looking clip made without any file: a slow pan with a slight zoom over `procedural_texture`."""
    return pan_over(procedural_texture(4 * size, 8 * size, seed), num_frames, size, crop=0.8, zoom=1.25)


def panned_video_clip(path: str | os.PathLike, num_frames: int, size: int = 64) -> np.ndarray:
    """A clip made from a real video: its frames (an odd count, as `read_video` reads them) at the source's size,
    played forwards then backwards (ping-pong) until there are `num_frames`, seen through a square window panning from
    its left edge to its right edge, at `size` x `size`: the video's own motion plus a camera pan."""
    from ..cogvideox_ddim_video_io import read_video

    frames, _ = read_video(path, temporal_compression=1)
    frames = [np.asarray(frame) for frame in frames]
    cycle = frames + frames[-2:0:-1]
    frames = [cycle[index % len(cycle)] for index in range(num_frames)]
    height, width = frames[0].shape[:2]
    side = min(height, width)
    video = []
    for index, frame in enumerate(frames):
        left = round(index / max(num_frames - 1, 1) * (width - side))
        video.append(pan_over(frame[:, left : left + side], 1, size, crop=1.0)[0])
    return np.stack(video)
