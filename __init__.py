"""CogVideoX DDIM inversion: invert a real video and regenerate it under a new prompt with reference attention."""

from .pipeline_cogvideox_ddim_inversion import CogVideoXDDIMInversionOutput, CogVideoXDDIMInversionPipeline
from .processors import CogVideoXRefAttnProcessor
from .video_io import read_video, write_video

__version__ = "0.1.0"

__all__ = [
    "CogVideoXDDIMInversionOutput",
    "CogVideoXDDIMInversionPipeline",
    "CogVideoXRefAttnProcessor",
    "read_video",
    "write_video",
]
