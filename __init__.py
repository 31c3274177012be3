"""CogVideoX DDIM inversion: invert a real video and regenerate it under a new prompt with reference attention."""

import importlib


__version__ = "0.1.0"

# Public names load on first use, so that the command line (`--help`, `publish`) starts without importing diffusers.
_EXPORTS = {
    "CogVideoXDDIMInversionOutput": "cogvideox_ddim_output",
    "CogVideoXDDIMInversionPipeline": "pipeline_cogvideox_ddim_inversion",
    "CogVideoXRefAttnProcessor": "processors.reference_attention",
    "CogVideoXTextAttentionRecorder": "processors.text_attention",
    "GuidanceScaleCallback": "callbacks",
    "read_video": "video_io",
    "write_video": "video_io",
    "read_mask_video": "video_io",
    "write_mask_video": "video_io",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
